"""SQuAD fine-tuning end to end on the learnable fixture (test_squad_support): a tiny model
trained from scratch for a few hundred CPU steps must answer far better than chance; the run
writes the prediction files the evaluation script scores the same way."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_squad_support import make_squad_json, write_squad_json, write_vocab

from configs.squad import get_config
from squeezemobile_jax.tasks import run_task
from squeezemobile_jax.tasks.squad.metrics import evaluate_files

ROOT = Path(__file__).resolve().parents[1]
STEPS = 150

# Small windows so that contexts (about 40-60 tokens) span two or three of them.
OVERRIDES = {
    "data.max_seq_length": 48,
    "data.doc_stride": 16,
    "data.max_query_length": 8,
    "train.batch_size": 32,
    "train.num_steps": STEPS,
    "train.log_every": 50,
    "train.peak_flops_per_device": 1e11,  # skip measuring a CPU peak for MFU
    "optimizer.learning_rate": 3e-3,
    "checkpoint.every_steps": 0,
    "eval.batch_size": 64,
}


def _data(tmp_path: Path, version_2: bool) -> dict[str, str]:
    train = make_squad_json(200, seed=1, version_2=version_2)
    dev = make_squad_json(100, seed=2, version_2=version_2)
    return {
        "tokenizer.path": str(write_vocab(tmp_path / "vocab")),
        "data.train_file": str(write_squad_json(tmp_path / "train.json", train)),
        "data.eval_file": str(write_squad_json(tmp_path / "dev.json", dev)),
    }


def _set(config, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        config = config[p]
    config[leaf] = value


def _qids(path: str) -> set[str]:
    data = json.loads(Path(path).read_text())
    return {qa["id"] for a in data["data"] for p in a["paragraphs"] for qa in p["qas"]}


def _check_outputs(workdir: Path, files: dict[str, str], version_2: bool) -> dict:
    qids = _qids(files["data.eval_file"])
    predictions = json.loads((workdir / "predictions.json").read_text())
    nbest = json.loads((workdir / "nbest_predictions.json").read_text())
    assert set(predictions) == set(nbest) == qids
    for qid, entries in nbest.items():
        assert 1 <= len(entries) <= 21
        assert sum(e["probability"] for e in entries) == pytest.approx(1.0)
        assert predictions[qid] in {e["text"] for e in entries}
    null_odds_path = workdir / "null_odds.json"
    assert null_odds_path.exists() == version_2
    if version_2:
        null_odds = json.loads(null_odds_path.read_text())
        assert set(null_odds) == qids
        # Threshold 0.0: no answer exactly when the null score beats the best span.
        assert all((predictions[q] == "") == (null_odds[q] > 0.0) for q in qids)
    results = json.loads((workdir / "eval_results.json").read_text())
    rescored = evaluate_files(
        files["data.eval_file"],
        workdir / "predictions.json",
        null_odds_path if version_2 else None,
    )
    assert rescored == {k: v for k, v in results.items() if k != "step"}
    assert (workdir / "model.json").exists() and (workdir / "tokenizer" / "vocab.txt").exists()
    return results


def test_v11_from_scratch_learns_resumes_and_inits(tmp_path: Path) -> None:
    files = _data(tmp_path, version_2=False)
    config = get_config("model=squeezebert-test,version=1.1")
    for key, value in {**OVERRIDES, **files}.items():
        _set(config, key, value)
    workdir = tmp_path / "run"
    result = run_task(config, str(workdir))
    print("SQuAD v1.1 fixture:", result)
    assert result["step"] == STEPS and result["total"] == 100
    # Chance: one span among ~1,000 candidates per question.
    assert result["exact"] >= 70.0 and result["f1"] >= 75.0
    assert _check_outputs(workdir, files, version_2=False)["exact"] == result["exact"]

    # Restarting a finished run trains nothing and evaluates the final checkpoint again.
    lines = (workdir / "metrics.jsonl").read_text().count("\n")
    again = run_task(config, str(workdir))
    assert again == result
    new_lines = (workdir / "metrics.jsonl").read_text().splitlines()[lines:]
    assert not any('"loss"' in line for line in new_lines)

    # A new run initialised from that workdir (its tokenizer and weights) with a zero
    # learning rate predicts exactly what the finished run predicted.
    config.init, config.tokenizer.path = str(workdir), ""
    config.train.num_steps, config.optimizer.learning_rate = 1, 0.0
    tuned = run_task(config, str(tmp_path / "from_init"))
    assert {k: v for k, v in tuned.items() if k != "step"} == {
        k: v for k, v in result.items() if k != "step"
    }
    assert (tmp_path / "from_init" / "predictions.json").read_text() == (
        workdir / "predictions.json"
    ).read_text()


def test_v20_through_train_py(tmp_path: Path) -> None:
    files = _data(tmp_path, version_2=True)
    workdir = tmp_path / "run"
    flags = [f"--config.{k}={v}" for k, v in {**OVERRIDES, **files}.items()]
    cmd = [
        sys.executable,
        "train.py",
        "--config",
        "configs/squad.py:model=squeezebert-test,version=2.0",
        "--config.init=",
        f"--workdir={workdir}",
        *flags,
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = _check_outputs(workdir, files, version_2=True)
    print("SQuAD v2.0 fixture:", result)
    assert result["step"] == STEPS and result["total"] == 100
    # Always answering "" would give NoAns 100 / HasAns 0 (about 50 overall).
    assert result["exact"] >= 75.0 and result["f1"] >= 75.0
    assert result["HasAns_exact"] >= 60.0 and result["NoAns_exact"] >= 60.0
    assert {"best_exact", "best_f1", "best_f1_thresh"} <= set(result)
    assert result["best_f1"] >= result["f1"]


def test_config_arguments_and_missing_tokenizer(tmp_path: Path) -> None:
    config = get_config("model=mobilebert-test,version=2.0")
    assert config.task == "squad" and config.version == "2.0"
    assert config.model.preset == "mobilebert-test"
    assert (config.data.max_seq_length, config.data.doc_stride) == (384, 128)
    assert config.data.max_query_length == 64
    assert (config.postprocess.n_best_size, config.postprocess.max_answer_length) == (20, 30)
    assert config.optimizer.name == "adamw" and config.optimizer.learning_rate == 3e-3
    mobilebert = get_config("model=mobilebert")
    assert mobilebert.model.preset == "mobilebert-uncased" and mobilebert.version == "1.1"
    assert mobilebert.optimizer.learning_rate == 4e-5 and mobilebert.train.num_epochs == 5.0
    with pytest.raises(ValueError, match="version='3.0'"):
        get_config("model=mobilebert-test,version=3.0")
    with pytest.raises(ValueError, match="expected model=NAME"):
        get_config("size=big")
    with pytest.raises(ValueError, match="no tokenizer: set config.tokenizer.path"):
        run_task(config, str(tmp_path / "run"))
    config.init = str(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="neither a train.py/distill.py workdir"):
        run_task(config, str(tmp_path / "run"))
