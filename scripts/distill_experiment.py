"""Distillation against training from scratch, on the built-in corpus (CPU, minutes).

    python scripts/distill_experiment.py --workdir workdirs/distill_experiment

1. pretrains the tiny IB-BERT teacher with train.py (configs/ib_bert_quickstart.py);
2. distills the tiny MobileBERT-shaped student from it with distill.py: progressive
   layer-wise transfer, then pretraining distillation (configs/distill_quickstart.py);
3. trains the same student from scratch with MLM + NSP for as many steps, on the teacher's
   vocabulary, with train.py (configs/distill_quickstart.py:scratch);

then prints the held-out metrics of all three as a Markdown table (all three are evaluated
on the same held-out documents, which the teacher never trained on). Each run resumes, or is
skipped once finished, when the script is started again on the same workdir. `--smoke`
runs a few steps of each (a check that the pipeline works, not an experiment).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Smoke runs skip the periodic evaluations and measuring a matmul peak for MFU.
SMOKE_TRAIN = ["--config.train.eval_every=0", "--config.train.peak_flops_per_device=1e12"]
SMOKE_TEACHER = ["--config.train.num_steps=8", *SMOKE_TRAIN]
SMOKE_DISTILL = [
    "--config.distill.stage1.steps_per_layer=2",
    "--config.distill.stage2.num_steps=4",
    *SMOKE_TRAIN,
]
SMOKE_STUDENT_STEPS = 12  # 4 layers x 2 + 4


def run(entry: str, config: str, workdir: str, *overrides: str) -> float:
    """Runs `python entry --config config --workdir workdir overrides`; returns seconds."""
    cmd = [sys.executable, entry, "--config", config, "--workdir", workdir, *overrides]
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True)
    return time.perf_counter() - start


def final_eval(workdir: str) -> dict[str, float]:
    """The last evaluation logged in `workdir`/metrics.jsonl."""
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    evals = [r for r in rows if "eval/mlm_accuracy" in r]
    if not evals:
        raise RuntimeError(f"{workdir}: no evaluation in metrics.jsonl")
    return evals[-1]


def parameter_count(workdir: str) -> int:
    from flax import nnx

    from squeezemobile_jax.models import build_model
    from squeezemobile_jax.tasks.common import num_params, read_model_spec

    config, head = read_model_spec(workdir)
    return num_params(nnx.eval_shape(lambda: build_model(config, head)))


def table(rows: list[tuple[str, str, float]]) -> str:
    """Markdown table of (name, workdir, seconds) runs."""
    lines = [
        "| model | parameters | steps | held-out MLM acc. | MLM loss | NSP acc. | wall time |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, workdir, seconds in rows:
        ev = final_eval(workdir)
        lines.append(
            f"| {name} | {parameter_count(workdir) / 1e6:.2f}M | {ev['step']} | "
            f"{ev['eval/mlm_accuracy']:.4f} | {ev['eval/mlm_loss']:.3f} | "
            f"{ev['eval/nsp_accuracy']:.3f} | {seconds / 60:.1f} min |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="workdirs/distill_experiment")
    parser.add_argument("--smoke", action="store_true", help="a few steps of each run")
    args = parser.parse_args()
    root = os.path.abspath(args.workdir)
    teacher, distilled, scratch = (
        os.path.join(root, n) for n in ("teacher", "distilled", "scratch")
    )

    sys.path.insert(0, REPO)
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "distill_quickstart", os.path.join(REPO, "configs", "distill_quickstart.py")
    )
    quickstart = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quickstart)
    student_steps = quickstart.NUM_LAYERS * quickstart.STEPS_PER_LAYER + quickstart.STAGE2_STEPS
    if args.smoke:
        student_steps = SMOKE_STUDENT_STEPS

    smoke = args.smoke
    times = {
        "teacher": run(
            "train.py",
            "configs/ib_bert_quickstart.py",
            teacher,
            *(SMOKE_TEACHER if smoke else []),
        ),
        "distilled": run(
            "distill.py",
            "configs/distill_quickstart.py",
            distilled,
            f"--config.teacher={teacher}",
            *(SMOKE_DISTILL if smoke else []),
        ),
        "scratch": run(
            "train.py",
            "configs/distill_quickstart.py:scratch",
            scratch,
            f"--config.tokenizer.path={os.path.join(teacher, 'tokenizer')}",
            f"--config.train.num_steps={student_steps}",
            *(SMOKE_TRAIN if smoke else []),
        ),
    }
    print()
    print(
        table(
            [
                ("IB-BERT teacher (train.py)", teacher, times["teacher"]),
                ("student, distilled (distill.py)", distilled, times["distilled"]),
                ("student, from scratch (train.py)", scratch, times["scratch"]),
            ]
        )
    )


if __name__ == "__main__":
    main()
