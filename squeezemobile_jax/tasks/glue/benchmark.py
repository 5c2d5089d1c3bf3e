"""The whole GLUE benchmark: every task (and sweep point) in its own sub-workdir, the dev
table and the submission zip (behind `eval_glue.py`).
"""

from __future__ import annotations

import copy
import itertools
import logging
import os
from collections.abc import Mapping
from typing import Any

import jax
import ml_collections

from squeezemobile_jax import fileio
from squeezemobile_jax.tasks.glue.metrics import dev_table_markdown, glue_average, task_score
from squeezemobile_jax.tasks.glue.pipeline import BEST_DIR, RESULTS_FILE, run
from squeezemobile_jax.tasks.glue.specs import get_task
from squeezemobile_jax.tasks.glue.submission import write_submission_zip
from squeezemobile_jax.training import maybe_initialize_distributed

log = logging.getLogger(__name__)


def sweep_points(config: ml_collections.ConfigDict) -> list[dict[str, Any]]:
    """Every (learning_rate, batch_size, epochs) of the sweep; one point without a sweep."""
    bench = config.eval_glue
    lrs = tuple(bench.get("learning_rates") or ()) or (float(config.optimizer.learning_rate),)
    batches = tuple(bench.get("batch_sizes") or ()) or (int(config.finetune.batch_size),)
    epochs = tuple(bench.get("epochs") or ()) or (int(config.finetune.epochs),)
    return [
        {"learning_rate": float(lr), "batch_size": int(b), "epochs": int(e)}
        for lr, b, e in itertools.product(lrs, batches, epochs)
    ]


def _point_name(point: Mapping[str, Any]) -> str:
    return f"lr{point['learning_rate']:g}_bs{point['batch_size']}_ep{point['epochs']}"


def _task_config(
    config: ml_collections.ConfigDict, task: str, point: Mapping[str, Any], init: str
) -> ml_collections.ConfigDict:
    c = copy.deepcopy(config)
    with c.unlocked():
        c.data.task_name = task
        c.optimizer.learning_rate = point["learning_rate"]
        c.finetune.batch_size = point["batch_size"]
        c.finetune.epochs = point["epochs"]
        c.init = init
    return c


def _run_once(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """`run`, unless `workdir` already holds a finished run's results."""
    done = os.path.join(workdir, RESULTS_FILE)
    if fileio.exists(done):
        summary = fileio.read_json(done)
        if summary.get("complete"):
            log.info("%s: finished earlier, reusing its results", workdir)
            return summary
    return run(config, workdir)


def run_all_tasks(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Fine-tunes on every task of `eval_glue.tasks`, writes the dev table and the submission.

    Returns {"dev": rows of the table, "submission": zip path, "missing": leaderboard files
    not produced, "stopped": True if a run stopped early}.
    """
    maybe_initialize_distributed(config)
    tasks = [get_task(t).name for t in config.eval_glue.tasks]
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"eval_glue.tasks lists a task twice: {list(config.eval_glue.tasks)}")
    from_mnli = bool(config.eval_glue.get("start_from_mnli"))
    if from_mnli:
        if "mnli" not in tasks:
            raise ValueError("eval_glue.start_from_mnli needs mnli in eval_glue.tasks")
        tasks.remove("mnli")
        tasks.insert(0, "mnli")
    points = sweep_points(config)
    rows, files, chosen, diagnostic = [], {}, {}, {}
    for name in tasks:
        init = config.get("init") or ""
        if from_mnli and name != "mnli":
            init = os.path.join(chosen["mnli"], BEST_DIR)
        runs = []
        for point in points:
            sub = os.path.join(workdir, name, _point_name(point)) if len(points) > 1 else None
            run_dir = sub or os.path.join(workdir, name)
            summary = _run_once(_task_config(config, name, point, init), run_dir)
            if not summary.get("complete"):
                log.warning("%s stopped early; run eval_glue.py again to resume", run_dir)
                return {"dev": rows, "submission": None, "missing": [], "stopped": True}
            runs.append((summary["best"]["score"], run_dir, summary))
        score, run_dir, summary = max(runs, key=lambda r: r[0])
        chosen[name] = run_dir
        hp = summary["hyperparameters"]
        hp_text = f"lr {hp['learning_rate']:g}, batch {hp['batch_size']}, epochs {hp['epochs']}"
        for set_name, metrics in summary["best"]["sets"].items():
            rows.append(
                {
                    "name": set_name,
                    "task": name,
                    "metrics": metrics,
                    "score": task_score(metrics),
                    "hyperparameters": hp_text,
                    "best_epoch": summary["best"]["epoch"],
                    "workdir": run_dir,
                    "majority_baseline": summary["majority_baseline"].get(set_name),
                }
            )
        for set_name, rel in summary["predictions"].items():
            files[set_name] = os.path.join(run_dir, rel)
        diagnostic.update(summary.get("diagnostic") or {})
    table = dev_table_markdown(rows)
    for set_name, metrics in diagnostic.items():
        table += f"\n{set_name} diagnostic, R3 of the MNLI model: {100 * metrics['mcc']:.1f}\n"
    zip_path = os.path.join(workdir, "submission.zip")
    missing: list[str] = []
    if jax.process_index() == 0:
        scores = {r["name"]: r["score"] for r in rows}
        fileio.write_json(
            os.path.join(workdir, "dev_results.json"),
            {
                "tasks": rows,
                "glue_average": glue_average(scores),
                "glue_average_without_wnli": glue_average(scores, include_wnli=False),
                "average_note": "task score = mean of its metrics; MNLI = mean of m and mm",
                "diagnostic": diagnostic,
            },
        )
        fileio.write_bytes(os.path.join(workdir, "dev_results.md"), table.encode())
        missing = write_submission_zip(zip_path, files)
    log.info("GLUE dev results:\n%s", table)
    return {"dev": rows, "submission": zip_path, "missing": missing, "stopped": False}
