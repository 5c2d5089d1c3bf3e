"""Device-count / process-count invariance and exact resume, in subprocesses.

Each run is ``python tests/toy_task.py`` with its own CPU device count
(``XLA_FLAGS`` must be set before JAX starts, hence the subprocesses).
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 20


def _env(devices: int) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _cmd(workdir, *args) -> list[str]:
    return [
        sys.executable,
        os.path.join(REPO, "tests", "toy_task.py"),
        "--workdir",
        str(workdir),
        *map(str, args),
    ]


def _run(workdir, devices: int, *args, timeout: float = 180) -> subprocess.CompletedProcess:
    out = subprocess.run(
        _cmd(workdir, *args), env=_env(devices), capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, out.stderr[-4000:]
    return out


def _losses(workdir) -> dict[int, float]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    return {r["step"]: r["loss"] for r in rows}  # later lines win (resumed runs)


def _params(path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_device_and_process_count_do_not_change_the_run(tmp_path):
    common = ["--steps", STEPS, "--batch", 16, "--ckpt_every", 10, "--dropout", 0.2]
    runs = {}
    for name, devices, extra in [("1dev", 1, []), ("4dev", 4, []), ("4dev_fsdp", 4, ["--fsdp"])]:
        _run(tmp_path / name, devices, *common, *extra, "--save_params", tmp_path / f"{name}.npz")
        runs[name] = (_losses(tmp_path / name), _params(tmp_path / f"{name}.npz"))

    # Two processes with two devices each, talking over a local coordinator. FSDP spreads
    # the parameters over both processes, so saving them gathers across processes.
    port = _free_port()
    procs = [
        subprocess.Popen(
            _cmd(
                tmp_path / "2x2",
                *common,
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num_processes",
                2,
                "--process_id",
                i,
                "--save_params",
                tmp_path / "2x2.npz",
                "--fsdp",
            ),
            env=_env(2),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err[-4000:]
    runs["2x2"] = (_losses(tmp_path / "2x2"), _params(tmp_path / "2x2.npz"))

    ref_losses, ref_params = runs["4dev"]
    assert sorted(ref_losses) == list(range(1, STEPS + 1))
    curve = [ref_losses[s] for s in range(1, STEPS + 1)]
    assert np.mean(curve[-5:]) < 0.8 * np.mean(curve[:5])  # it actually trains
    for name in ("1dev", "4dev_fsdp", "2x2"):
        losses, params = runs[name]
        assert sorted(losses) == sorted(ref_losses), name
        for s in ref_losses:
            np.testing.assert_allclose(losses[s], ref_losses[s], rtol=1e-5, err_msg=f"{name} {s}")
        assert params.keys() == ref_params.keys()
        for k in ref_params:
            np.testing.assert_allclose(
                params[k], ref_params[k], rtol=1e-5, atol=1e-6, err_msg=f"{name} {k}"
            )


def test_resume_after_sigkill_is_bitwise_exact(tmp_path):
    common = ["--steps", 12, "--batch", 8, "--ckpt_every", 3, "--dropout", 0.2]
    _run(tmp_path / "straight", 1, *common, "--save_params", tmp_path / "straight.npz")

    kill_after = random.Random().randint(4, 9)  # logged step; a checkpoint (3) exists by then
    workdir = tmp_path / "killed"
    proc = subprocess.Popen(
        _cmd(workdir, *common, "--sleep", 0.25),
        env=_env(1),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if (
                os.path.exists(workdir / "metrics.jsonl")
                and max(_losses(workdir), default=0) >= kill_after
            ):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    resumed = _run(workdir, 1, *common, "--save_params", tmp_path / "resumed.npz")
    assert "Resuming from step" in resumed.stderr, f"killed after step {kill_after}"

    want, got = _params(tmp_path / "straight.npz"), _params(tmp_path / "resumed.npz")
    assert got.keys() == want.keys()
    for k in want:
        assert np.array_equal(got[k], want[k]), f"{k} differs (killed after step {kill_after})"
