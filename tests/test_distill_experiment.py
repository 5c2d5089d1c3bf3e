"""scripts/distill_experiment.py in its few-step smoke mode: teacher, distilled student and
from-scratch baseline run through the command-line entry points and end in the table."""

from __future__ import annotations

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_experiment_script_smoke(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    out = subprocess.run(
        [sys.executable, "scripts/distill_experiment.py", "--workdir", str(tmp_path), "--smoke"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ")]
    assert len(rows) == 4, out.stdout  # header + teacher, distilled, scratch
    steps = [row.split("|")[3].strip() for row in rows[1:]]
    assert steps == ["8", "12", "12"], rows
    for name in ("teacher", "distilled", "scratch"):
        assert os.path.isfile(tmp_path / name / "model.json"), name
    assert "Stage 2 (pretraining distillation)" in out.stderr
