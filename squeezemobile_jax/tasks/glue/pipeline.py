"""One GLUE fine-tuning run (see the package docstring for its steps)."""

from __future__ import annotations

import copy
import json
import logging
import os
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx

from squeezemobile_jax import fileio
from squeezemobile_jax.data import WordPieceTokenizer
from squeezemobile_jax.data.batching import EpochBatches
from squeezemobile_jax.hub.hf import from_hf_pretrained
from squeezemobile_jax.tasks.common import tokenizer_of, workdir_tokenizer, write_model_spec
from squeezemobile_jax.tasks.glue.encoding import load_task_data
from squeezemobile_jax.tasks.glue.losses import make_loss_fn
from squeezemobile_jax.tasks.glue.metrics import compute_metrics
from squeezemobile_jax.tasks.glue.model import (
    BEST_RESULTS,
    HEAD,
    build_classifier,
    export_model,
    runtime_overrides,
)
from squeezemobile_jax.tasks.glue.predict import (
    eval_batch_size,
    evaluate_dev,
    logits_to_predictions,
    majority_baseline,
    predict_logits,
    predict_test_sets,
)
from squeezemobile_jax.tasks.glue.specs import DIAGNOSTIC_METRICS, get_task
from squeezemobile_jax.tasks.glue.teacher import teacher_logits
from squeezemobile_jax.training import (
    Task,
    make_mesh,
    maybe_initialize_distributed,
    train_and_evaluate,
)

log = logging.getLogger(__name__)

BEST_DIR = "best"
RESULTS_FILE = "results.json"
HISTORY_FILE = "dev_history.jsonl"


def build_tokenizer(config: ml_collections.ConfigDict, workdir: str) -> WordPieceTokenizer:
    """The run's tokenizer: the workdir's (resuming), else `config.tokenizer.path`, else the
    one stored with `config.init` (saved to `workdir/tokenizer`)."""
    path = config.tokenizer.get("path") or None
    return workdir_tokenizer(workdir, lambda: tokenizer_of(config.init, path))


def _epoch_plan(config: ml_collections.ConfigDict, num_train: int) -> tuple[int, int, int]:
    """(steps per epoch, total steps, warmup steps)."""
    batch = int(config.finetune.batch_size)
    steps_per_epoch = num_train // batch
    if steps_per_epoch < 1:
        raise ValueError(
            f"{num_train} training examples cannot fill one batch of finetune.batch_size={batch}"
        )
    total = steps_per_epoch * int(config.finetune.epochs)
    warmup = int(round(float(config.finetune.warmup_proportion) * total))
    return steps_per_epoch, total, warmup


def _run_config(config: ml_collections.ConfigDict, steps_per_epoch: int, total: int, warmup: int):
    run_config = copy.deepcopy(config)
    with run_config.unlocked():
        run_config.train.num_steps = total
        run_config.train.eval_every = steps_per_epoch
        run_config.train.eval_at_end = True
        run_config.checkpoint.every_steps = steps_per_epoch
        run_config.optimizer.schedule.warmup_steps = warmup
    return run_config


def _hyperparameters(config: ml_collections.ConfigDict) -> dict[str, Any]:
    return {
        "learning_rate": float(config.optimizer.learning_rate),
        "batch_size": int(config.finetune.batch_size),
        "epochs": int(config.finetune.epochs),
    }


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Fine-tunes on `config.data.task_name` in `workdir` (see the module docstring).

    Returns the run summary also written to `workdir/results.json` (`complete` is False when
    the run stopped early, e.g. on preemption; run it again to resume).
    """
    maybe_initialize_distributed(config)
    task = get_task(config.data.task_name)
    tokenizer = build_tokenizer(config, workdir)
    train, dev, test, diagnostic, stats = load_task_data(config, task, tokenizer)
    num_train = len(train.examples)
    steps_per_epoch, total, warmup = _epoch_plan(config, num_train)
    run_config = _run_config(config, steps_per_epoch, total, warmup)
    mesh = make_mesh()
    batch_size = eval_batch_size(config.data.eval_batch_size)

    train_rows = {k: v for k, v in train.arrays.items() if k != "example_id"}
    teacher = teacher_logits(config, task, train.examples, tokenizer, workdir, mesh)
    if teacher is not None:
        train_rows["teacher_logits"] = teacher

    model = build_classifier(config, task, tokenizer.vocab_size)
    write_model_spec(workdir, model.config, HEAD)
    baseline = majority_baseline(train.arrays["labels"], dev, task)
    log.info(
        "%s: %d training examples, %d steps (%d per epoch, %d warmup), dev sets %s, test sets %s",
        task.display,
        num_train,
        total,
        steps_per_epoch,
        warmup,
        [s.name for s in dev],
        [s.name for s in test],
    )

    best_dir = os.path.join(workdir, BEST_DIR)
    interrupted = best_dir + ".old"  # left by a run stopped inside `export_model`
    if (
        not fileio.is_remote(best_dir)
        and not os.path.isdir(best_dir)
        and os.path.isdir(interrupted)
    ):
        os.replace(interrupted, best_dir)
    best_file = os.path.join(best_dir, BEST_RESULTS)
    best = fileio.read_json(best_file) if fileio.exists(best_file) else None

    def eval_fn(model: nnx.Module, mesh: jax.sharding.Mesh, step: int) -> dict[str, float]:
        nonlocal best
        result = evaluate_dev(model, task, dev, batch_size, mesh)
        epoch = step / steps_per_epoch
        entry = {"step": step, "epoch": epoch, **result}
        if jax.process_index() == 0:
            history = fileio.AppendOnlyFile(os.path.join(workdir, HISTORY_FILE))
            history.write(json.dumps(entry, sort_keys=True) + "\n")
            history.close()
        improved = best is None or result["score"] > best["score"]
        log.info(
            "%s dev after epoch %.2f: score %.4f %s%s",
            task.display,
            epoch,
            result["score"],
            result["sets"],
            " (best so far; exported)" if improved else "",
        )
        if improved:
            best = {**entry, "task": task.name, "hyperparameters": _hyperparameters(config)}
            export_model(model, best_dir, task, tokenizer, best)
        flat = {"score": result["score"]}
        for name, metrics in result["sets"].items():
            flat.update({f"{name}/{k}": v for k, v in metrics.items()})
        return flat

    loop_task = Task(
        loss_fn=make_loss_fn(
            task.is_regression, float(config.distill.weight), float(config.distill.temperature)
        ),
        eval_fn=eval_fn,
        count_fn=lambda b: {
            "examples": float(len(b["input_ids"])),
            "tokens": float(np.sum(b["attention_mask"])),
        },
    )
    batches = EpochBatches(train_rows, int(config.finetune.batch_size), seed=int(config.seed))
    result = train_and_evaluate(run_config, workdir, loop_task, model, batches.iterator)
    summary: dict[str, Any] = {
        "task": task.name,
        "complete": not result.preempted,
        "step": result.step,
        "num_steps": total,
        "steps_per_epoch": steps_per_epoch,
        "hyperparameters": _hyperparameters(config),
        "init": config.get("init") or "",
        "teacher": (config.distill.get("teacher") or "").replace("{task}", task.name),
        "data": stats,
        "majority_baseline": baseline,
    }
    if result.preempted:
        return summary
    if best is None:  # no evaluation ran (e.g. resumed at the last step without best/)
        eval_fn(result.model, mesh, result.step)
    with fileio.local_copy(best_dir) as local:
        best_model = from_hf_pretrained(local, HEAD, **runtime_overrides(config))
    summary["best"] = best
    summary["predictions"] = predict_test_sets(best_model, task, test, batch_size, mesh, workdir)
    if diagnostic is not None:  # AX with labels: R3 of the MNLI model's predictions
        logits = predict_logits(best_model, diagnostic.arrays, batch_size, mesh)
        predictions = logits_to_predictions(logits, task.is_regression)
        summary["diagnostic"] = {
            diagnostic.name: compute_metrics(
                DIAGNOSTIC_METRICS, predictions, diagnostic.arrays["labels"]
            )
        }
        log.info("AX diagnostic: %s", summary["diagnostic"])
    if jax.process_index() == 0:
        fileio.write_json(os.path.join(workdir, RESULTS_FILE), summary)
    log.info("%s: best dev score %.4f at step %d", task.display, best["score"], best["step"])
    return summary
