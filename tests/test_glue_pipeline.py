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


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["JAX_PLATFORMS"] = "cpu"
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
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
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
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
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


def test_sweep_points_and_their_run_directories(tmp_path):
    fixture = write_glue_fixture(tmp_path / "data", tasks=("rte",))
    config = tiny_config(fixture, "rte", epochs=3, batch_size=16)
    config.optimizer.learning_rate = 5e-4
    assert glue.sweep_points(config) == [
        {"learning_rate": 5e-4, "batch_size": 16, "epochs": 3}
    ]  # no sweep: the single configured point
    config.eval_glue.learning_rates = (1e-4, 2e-4)
    config.eval_glue.batch_sizes = (8, 32)
    points = glue.sweep_points(config)
    assert len(points) == 4 and {p["epochs"] for p in points} == {3}
    assert {(p["learning_rate"], p["batch_size"]) for p in points} == {
        (1e-4, 8), (1e-4, 32), (2e-4, 8), (2e-4, 32)
    }  # fmt: skip


def test_learns_a_fixture_task_and_maps_string_labels_back(tmp_path, monkeypatch):
    # The run directory takes the object-store code path (no appends, no renames, files
    # staged through local copies), as a gs:// workdir would.
    from squeezemobile_jax import fileio

    monkeypatch.setattr(fileio, "is_remote", lambda path: "remote_run" in str(path))
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
    result = glue.run(config, str(tmp_path / "remote_run"))

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
        lines = (tmp_path / "remote_run" / "predictions" / f"{name}.tsv").read_text().splitlines()
        by_index = dict(line.split("\t") for line in lines[1:])
        predicted = [by_index[str(i)] for i in fixture.test_index[name]]
        agreement = np.mean([p == g for p, g in zip(predicted, fixture.test_gold[name])])
        assert agreement == pytest.approx(result["best"]["sets"][name]["accuracy"])
    # AX is predicted by the MNLI model; with labels it is scored by R3, the K-class MCC.
    # Reference: R3 = cov(X, Y) / sqrt(cov(X, X) cov(Y, Y)) over one-hot matrices.
    lines = (tmp_path / "remote_run" / "predictions" / "AX.tsv").read_text().splitlines()[1:]
    by_index = dict(line.split("\t") for line in lines)
    names = ["entailment", "neutral", "contradiction"]
    x = np.eye(3)[[names.index(by_index[str(i)]) for i in fixture.test_index["AX"]]]
    y = np.eye(3)[[names.index(g) for g in fixture.dev_gold["MNLI-m"]]]

    def cov(a, b):
        return np.sum((a - a.mean(0)) * (b - b.mean(0)))

    r3 = cov(x, y) / np.sqrt(cov(x, x) * cov(y, y))
    assert result["diagnostic"]["AX"]["mcc"] == pytest.approx(r3) and r3 > 0.5


def _tiny_hf_squeezebert(directory: Path, vocab: Path, num_labels: int, seed: int, **extra):
    """A random tiny SqueezeBERT classifier saved by transformers, with our vocab.txt."""
    import shutil

    import torch
    from transformers import SqueezeBertConfig, SqueezeBertForSequenceClassification

    torch.manual_seed(seed)
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
        **extra,
    )
    model = SqueezeBertForSequenceClassification(config).eval()
    model.save_pretrained(directory)
    shutil.copy(vocab, directory / "vocab.txt")
    return model


def _hf_logits(model, tokenizer, pairs, length: int) -> np.ndarray:
    """transformers logits [N, C] for (a, b) pairs encoded by our tokenizer, one at a time."""
    import torch

    rows = []
    for e in tokenizer.encode_batch([a for a, _ in pairs], [b for _, b in pairs], length):
        with torch.no_grad():
            out = model(**{k: torch.tensor([v]) for k, v in e.items()})
        rows.append(out.logits[0].numpy())
    return np.stack(rows)


def _mnli_pairs(path: Path) -> list[tuple[str, str]]:
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:]]
    return [(r[8], r[9]) for r in rows]  # sentence1, sentence2 of the GLUE MNLI files


def test_starts_from_an_hf_directory_distills_and_exports_for_transformers(tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification

    from squeezemobile_jax.data import load_tokenizer

    fixture = write_glue_fixture(tmp_path / "data", tasks=("mnli",), n_train=32, n_dev=16)
    init_dir, teacher_dir = tmp_path / "hf_init", tmp_path / "hf_teacher"
    source = _tiny_hf_squeezebert(init_dir, fixture.vocab, 3, seed=0)
    # The teacher uses BERT's MNLI label order; ours (HF datasets') is entailment, neutral,
    # contradiction, so its columns must be reordered (1, 2, 0).
    bert_order = {0: "contradiction", 1: "entailment", 2: "neutral"}
    teacher = _tiny_hf_squeezebert(teacher_dir, fixture.vocab, 3, seed=1, id2label=bert_order)

    # The trunk comes from the HF file, also when the label count differs (fresh classifier).
    model = glue.init_classifier(str(init_dir), 2)
    assert model.config.num_labels == 2
    ids = np.array([[2, 10, 11, 12, 3, 0], [2, 20, 3, 21, 22, 3]], np.int32)
    mask = (ids != 0).astype(np.int32)
    ours = model(ids, mask, None, deterministic=True).encoder.pooler_output
    with torch.no_grad():
        theirs = source.transformer(
            torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask)
        ).pooler_output.numpy()
    np.testing.assert_allclose(np.asarray(ours), theirs, atol=1e-5)

    config = tiny_config(fixture, "mnli", epochs=2, batch_size=16)
    config.init = str(init_dir)
    config.tokenizer.path = ""  # taken from the HF directory
    config.distill.teacher = str(teacher_dir)
    config.distill.weight = 0.5
    config.distill.temperature = 2.0
    workdir = tmp_path / "run"
    result = glue.run(config, str(workdir))
    assert result["complete"] and result["best"]["step"] in (2, 4)

    # Distillation: the teacher's logits on the training set, in our label order.
    train_pairs = _mnli_pairs(fixture.root / "MNLI" / "train.tsv")
    reference = _hf_logits(teacher, load_tokenizer(teacher_dir), train_pairs, 32)[:, [1, 2, 0]]
    with np.load(workdir / "teacher_logits.npz") as cached:
        np.testing.assert_allclose(cached["logits"], reference, atol=1e-5)
    logged = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert any("distill_loss" in entry for entry in logged)  # the loss used the teacher

    # The best epoch is an HF directory transformers loads; it predicts what our run wrote.
    best = workdir / "best"
    hf_config = json.loads((best / "config.json").read_text())
    assert hf_config["id2label"] == {"0": "entailment", "1": "neutral", "2": "contradiction"}
    exported = AutoModelForSequenceClassification.from_pretrained(best).eval()
    lines = (workdir / "predictions" / "MNLI-m.tsv").read_text().splitlines()[1:]
    assert [int(line.split("\t")[0]) for line in lines] == fixture.test_index["MNLI-m"]
    pairs = _mnli_pairs(fixture.root / "MNLI" / "test_matched.tsv")
    logits = _hf_logits(exported, load_tokenizer(best), pairs, 32)
    top2 = np.sort(logits, axis=-1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-4
    expected = np.array([hf_config["id2label"][str(i)] for i in np.argmax(logits, -1)])
    written = np.array([line.split("\t")[1] for line in lines])
    np.testing.assert_array_equal(written[clear], expected[clear])
    assert clear.sum() >= len(clear) - 1

    # Resuming: lose the last epoch (its checkpoint and outputs) and the teacher itself; the
    # run restarts from epoch 1's checkpoint, uses the cached teacher logits, and ends where
    # the uninterrupted run ended.
    import shutil

    shutil.rmtree(workdir / "checkpoints" / "4")
    shutil.rmtree(teacher_dir)
    (workdir / "results.json").unlink()
    predictions = (workdir / "predictions" / "MNLI-m.tsv").read_text()
    (workdir / "predictions" / "MNLI-m.tsv").unlink()
    resumed = glue.run(config, str(workdir))
    assert resumed["complete"] and resumed["step"] == 4
    assert resumed["best"] == result["best"]
    assert (workdir / "predictions" / "MNLI-m.tsv").read_text() == predictions
    history = (workdir / "dev_history.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in history] == [2, 4, 4]
