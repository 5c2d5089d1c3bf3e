"""GLUE fine-tuning end to end on tiny models: the eval_glue.py benchmark and its submission
zip, learning a fixture task, string labels in the submission, and starting from an HF
directory saved by transformers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from test_glue_data import write_glue_fixture

from squeezemobile_jax.tasks import glue

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "configs" / "glue.py")
# The leaderboard's files and the label strings each may contain (GLUE submission format).
EXPECTED_LABELS = {
    "CoLA": {"0", "1"},
    "SST-2": {"0", "1"},
    "MRPC": {"0", "1"},
    "QQP": {"0", "1"},
    "WNLI": {"0", "1"},
    "QNLI": {"entailment", "not_entailment"},
    "RTE": {"entailment", "not_entailment"},
    "MNLI-m": {"entailment", "neutral", "contradiction"},
    "MNLI-mm": {"entailment", "neutral", "contradiction"},
    "AX": {"entailment", "neutral", "contradiction"},
    "STS-B": None,  # a float in [0, 5] with 3 decimals
}
DEV_SETS = {"CoLA", "SST-2", "MRPC", "STS-B", "QQP", "MNLI-m", "MNLI-mm", "QNLI", "RTE", "WNLI"}


def check_submission(zip_path: Path, test_index: dict[str, list[int]]) -> dict[str, list[str]]:
    """Validates a GLUE submission zip file by file; returns {name: predictions}."""
    predictions = {}
    with zipfile.ZipFile(zip_path) as zf:
        assert sorted(zf.namelist()) == sorted(f"{name}.tsv" for name in EXPECTED_LABELS)
        for name, labels in EXPECTED_LABELS.items():
            text = zf.read(f"{name}.tsv").decode("utf-8")
            assert text.endswith("\n") and "\r" not in text
            lines = text[:-1].split("\n")
            assert lines[0] == "index\tprediction", name
            rows = [line.split("\t") for line in lines[1:]]
            assert all(len(r) == 2 for r in rows), name
            assert len(rows) == len(test_index[name]), name
            assert [int(r[0]) for r in rows] == test_index[name], name  # test-file order
            values = [r[1] for r in rows]
            if labels is None:
                assert all(re.fullmatch(r"\d\.\d{3}", v) for v in values), values
                assert all(0.0 <= float(v) <= 5.0 for v in values)
            else:
                assert set(values) <= labels, (name, set(values))
            predictions[name] = values
    return predictions


def _env(cache_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["JAX_PLATFORMS"] = "cpu"
    # Tasks with the same shapes compile the same step: let the process reuse it.
    env["JAX_COMPILATION_CACHE_DIR"] = str(cache_dir)
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env["HF_HUB_OFFLINE"] = "1"
    return env


def test_eval_glue_writes_a_valid_submission_and_dev_table(tmp_path):
    fixture = write_glue_fixture(tmp_path / "glue_data", n_train=32, n_dev=16, n_test=12)
    workdir = tmp_path / "bench"
    cmd = [
        sys.executable,
        str(REPO / "eval_glue.py"),
        f"--config={CONFIG}:model=squeezebert-test",
        f"--config.data.glue_dir={fixture.root}",
        f"--config.tokenizer.path={fixture.vocab}",
        "--config.data.max_seq_length=32",
        "--config.data.eval_batch_size=16",
        "--config.data.cache_dir=" + str(tmp_path / "hf_cache"),
        "--config.finetune.epochs=1",
        "--config.model.hidden_dropout_prob=0.0",
        "--config.model.attention_probs_dropout_prob=0.0",
        "--config.checkpoint.async_save=False",
        "--config.eval_glue.start_from_mnli=True",
        f"--workdir={workdir}",
    ]
    proc = subprocess.run(cmd, env=_env(tmp_path / "xla_cache"), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]

    check_submission(workdir / "submission.zip", fixture.test_index)
    table = json.loads((workdir / "dev_results.json").read_text())
    assert {row["name"] for row in table["tasks"]} == DEV_SETS
    for row in table["tasks"]:
        assert set(row["metrics"]) == {
            "CoLA": {"mcc"},
            "MRPC": {"accuracy", "f1"},
            "QQP": {"accuracy", "f1"},
            "STS-B": {"pearson", "spearman"},
        }.get(row["name"], {"accuracy"})
    assert isinstance(table["glue_average"], float)
    markdown = (workdir / "dev_results.md").read_text()
    assert "GLUE average" in markdown and "| MNLI-mm |" in markdown
    # Each task has its own resumable run directory with its best model in HF format.
    for task in ("cola", "mnli", "stsb"):
        assert (workdir / task / "best" / "config.json").is_file()
        assert (workdir / task / "checkpoints").is_dir()
    stsb = json.loads((workdir / "stsb" / "best" / "config.json").read_text())
    assert stsb["problem_type"] == "regression" and len(stsb["id2label"]) == 1
    # start_from_mnli: every other task starts from the MNLI run's best model.
    rte = json.loads((workdir / "rte" / "results.json").read_text())
    assert rte["init"] == str(workdir / "mnli" / "best")
    assert set(table["diagnostic"]["AX"]) == {"mcc"} and "AX diagnostic" in markdown

    # A second invocation finds every run finished and only rebuilds the outputs.
    (workdir / "submission.zip").unlink()
    proc = subprocess.run(cmd, env=_env(tmp_path / "xla_cache"), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stderr.count("finished earlier, reusing its results") == 9
    check_submission(workdir / "submission.zip", fixture.test_index)


def tiny_config(fixture, task: str, **finetune):
    import importlib.util

    spec = importlib.util.spec_from_file_location("glue_config", CONFIG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(f"model=squeezebert-test,task={task}")
    config.data.glue_dir = str(fixture.root)
    config.tokenizer.path = str(fixture.vocab)
    config.data.max_seq_length = 32
    config.data.eval_batch_size = 32
    config.model.hidden_dropout_prob = 0.0
    config.model.attention_probs_dropout_prob = 0.0
    config.checkpoint.async_save = False
    config.train.log_every = 1000
    for key, value in finetune.items():
        config.finetune[key] = value
    return config


def test_learns_a_fixture_task_and_maps_string_labels_back(tmp_path):
    # MNLI labels are strings; classes are imbalanced (50/30/20), so the majority is ~50%.
    fixture = write_glue_fixture(
        tmp_path / "data",
        tasks=("mnli",),
        n_train=256,
        n_dev=64,
        weights={"mnli": [0.5, 0.3, 0.2]},
        test_is_dev=True,
    )
    config = tiny_config(fixture, "mnli", epochs=16, batch_size=16)
    config.optimizer.learning_rate = 1e-3
    result = glue.run(config, str(tmp_path / "run"))

    gold = fixture.dev_gold["MNLI-m"]
    majority = Counter(gold).most_common(1)[0][1] / len(gold)
    accuracy = result["best"]["sets"]["MNLI-m"]["accuracy"]
    print(f"MNLI fixture: dev accuracy {accuracy:.3f} vs majority baseline {majority:.3f}")
    assert accuracy >= majority + 0.2
    assert result["majority_baseline"]["MNLI-m"]["accuracy"] == pytest.approx(majority)

    # The test sets repeat the dev texts: the submission's strings are the gold strings
    # exactly as often as the dev accuracy says, so ids were mapped back through the same
    # label list (a wrong mapping would agree far less often).
    for name in ("MNLI-m", "MNLI-mm"):
        lines = (tmp_path / "run" / "predictions" / f"{name}.tsv").read_text().splitlines()
        by_index = dict(line.split("\t") for line in lines[1:])
        predicted = [by_index[str(i)] for i in fixture.test_index[name]]
        agreement = np.mean([p == g for p, g in zip(predicted, fixture.test_gold[name])])
        assert agreement == pytest.approx(result["best"]["sets"][name]["accuracy"])
    # AX is predicted by the MNLI model; with labels it is scored by R3, the K-class MCC.
    # Reference: R3 = cov(X, Y) / sqrt(cov(X, X) cov(Y, Y)) over one-hot matrices.
    lines = (tmp_path / "run" / "predictions" / "AX.tsv").read_text().splitlines()[1:]
    by_index = dict(line.split("\t") for line in lines)
    names = ["entailment", "neutral", "contradiction"]
    x = np.eye(3)[[names.index(by_index[str(i)]) for i in fixture.test_index["AX"]]]
    y = np.eye(3)[[names.index(g) for g in fixture.dev_gold["MNLI-m"]]]

    def cov(a, b):
        return np.sum((a - a.mean(0)) * (b - b.mean(0)))

    r3 = cov(x, y) / np.sqrt(cov(x, x) * cov(y, y))
    assert result["diagnostic"]["AX"]["mcc"] == pytest.approx(r3) and r3 > 0.5


def _tiny_hf_squeezebert(directory: Path, vocab: Path, num_labels: int):
    import shutil

    import torch
    from transformers import SqueezeBertConfig, SqueezeBertForSequenceClassification

    torch.manual_seed(0)
    config = SqueezeBertConfig(
        vocab_size=len(vocab.read_text().split("\n")) - 1,
        hidden_size=32,
        embedding_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        q_groups=2,
        k_groups=2,
        v_groups=2,
        post_attention_groups=1,
        intermediate_groups=2,
        output_groups=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=num_labels,
    )
    model = SqueezeBertForSequenceClassification(config).eval()
    model.save_pretrained(directory)
    shutil.copy(vocab, directory / "vocab.txt")
    return model


def test_starts_from_an_hf_directory_and_exports_what_transformers_loads(tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification

    fixture = write_glue_fixture(tmp_path / "data", tasks=("mrpc",), n_train=64, n_dev=16)
    hf_dir = tmp_path / "hf_mnli"
    # A 3-label (MNLI-like) classifier checkpoint fine-tuned on a 2-label task.
    source = _tiny_hf_squeezebert(hf_dir, fixture.vocab, num_labels=3)

    model = glue.init_classifier(str(hf_dir), 2)
    assert model.config.num_labels == 2
    ids = np.array([[2, 10, 11, 12, 3, 0], [2, 20, 3, 21, 22, 3]], np.int32)
    mask = (ids != 0).astype(np.int32)
    ours = model(ids, mask, None, deterministic=True).encoder.pooler_output
    with torch.no_grad():
        theirs = source.transformer(
            torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask)
        ).pooler_output.numpy()
    np.testing.assert_allclose(np.asarray(ours), theirs, atol=1e-5)  # the trunk was loaded

    config = tiny_config(fixture, "mrpc", epochs=2, batch_size=16)
    config.init = str(hf_dir)
    config.tokenizer.path = ""  # taken from the HF directory
    workdir = tmp_path / "run"
    result = glue.run(config, str(workdir))
    assert result["complete"] and result["best"]["step"] in (4, 8)

    best = workdir / "best"
    hf_config = json.loads((best / "config.json").read_text())
    assert hf_config["id2label"] == {"0": "not_equivalent", "1": "equivalent"}
    exported = AutoModelForSequenceClassification.from_pretrained(best).eval()
    lines = (workdir / "predictions" / "MRPC.tsv").read_text().splitlines()[1:]
    assert [int(line.split("\t")[0]) for line in lines] == fixture.test_index["MRPC"]

    # transformers, on the exported model, predicts what our run wrote for the test set.
    from squeezemobile_jax.data import load_tokenizer

    tokenizer = load_tokenizer(best)
    test_rows = (fixture.root / "MRPC" / "test.tsv").read_text().splitlines()[1:]
    pairs = [(r.split("\t")[3], r.split("\t")[4]) for r in test_rows]
    encoded = tokenizer.encode_batch([a for a, _ in pairs], [b for _, b in pairs], 32)
    logits = []
    for e in encoded:
        with torch.no_grad():
            out = exported(
                input_ids=torch.tensor([e["input_ids"]]),
                token_type_ids=torch.tensor([e["token_type_ids"]]),
                attention_mask=torch.tensor([e["attention_mask"]]),
            )
        logits.append(out.logits[0].numpy())
    logits = np.stack(logits)
    clear = np.abs(logits[:, 1] - logits[:, 0]) > 1e-4
    expected = np.where(np.argmax(logits, -1) == 1, "1", "0")
    written = np.array([line.split("\t")[1] for line in lines])
    np.testing.assert_array_equal(written[clear], expected[clear])
    assert clear.sum() >= len(clear) - 1
