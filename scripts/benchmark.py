"""Speed of our JAX models beside HF transformers' PyTorch models, in one run on one machine.

For each model it measures, after warm-up, the median over repeated runs of:
  * inference latency of the trunk at batch 1 and 32, length 128 (ours run as our
    prediction and evaluation steps run it: `inference_jit` over `with_layer_list`'s view);
  * pretraining step throughput (tokens/s): a full MLM + NSP step with AdamW, forward,
    backward and update. Ours computes MLM logits only at the masked positions (as BERT's
    original code); HF's classes compute them at every position, which is what its users get;
  * the same for our program's matmuls alone (`matmuls_alone`): a bound on what any program
    made of those matmuls can reach on XLA's matmul kernels, and its ratio to the peer a
    ceiling on ours;
  * compile time of our jitted step, peak memory (resident set of the measuring process) and
    model-FLOPs utilisation against a peak this run measures itself (a large matmul in the
    step's dtype; on a device with a known datasheet peak, MFU against that too);
  * how many cuDNN fused-attention calls the compiled step makes (0 off GPUs, or where
    attention needs its maps or dropout).
  * on a CPU, how many cores each framework keeps busy while timed (process CPU time over
    wall time, spin-waiting threads included): XLA:CPU runs some ops, attention's batched
    matmuls among them, on one core.
Ours runs its stacked layers in `lax.scan` and/or unrolled (`--layers`); each mode gets its
own rows. `--dtype bfloat16` computes in bfloat16 (float32 parameters) and measures ours only;
`--attention-dropout 0` lets the training step take the fused attention path on GPUs.
Every measurement runs in its own subprocess, so frameworks and models do not share threads,
caches or memory; with `--rounds N` each runs N times, ours and the peer's taking turns, and
the figures are medians across rounds (a shared machine drifts over minutes). Ours runs as
our entry points run it, with the host allocator in keep mode
(`squeezemobile_jax.cpu_tuning`); the peer runs twice, with glibc's default allocator (as HF
users run it) and in keep mode (it helps PyTorch too), and ratios are taken against the faster
of the two. Ratios are printed ours/peer (above 1: we are faster). The markdown table, with
the command that made it, goes to stdout and optionally to a file.

    python scripts/benchmark.py --models squeezebert,bert-base,mobilebert,ib-bert \
        --inference-batches 1,32 --layers scan,unrolled --output BENCHMARKS.md
    python scripts/benchmark.py --models ib-bert --dtype bfloat16 --attention-dropout 0 \
        --batch 32 --length 512 --inference-batches 32     # the teacher on an accelerator
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from squeezemobile_jax.cpu_tuning import HOST_MALLOC_ENV, configure_host_malloc  # noqa: E402

configure_host_malloc()  # the mode the parent chose for this worker, before JAX starts

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from squeezemobile_jax.cpu_tuning import inference_jit  # noqa: E402
from squeezemobile_jax.models import build_model, get_model_config, with_layer_list  # noqa: E402
from squeezemobile_jax.models.config import PRESETS  # noqa: E402
from squeezemobile_jax.models.flops import (  # noqa: E402
    dot_general_equations,
    training_flops_per_example,
)
from squeezemobile_jax.training.metric_writer import (  # noqa: E402
    measured_peak_flops,
    peak_flops_per_device,
)

MODELS = {  # benchmark name -> preset
    "squeezebert": "squeezebert-uncased",
    "bert-base": "bert-base-uncased",
    "mobilebert": "mobilebert-uncased",
    "ib-bert": "ib-bert-large",
}


LAYER_MODES = {"scan": "scanned layers", "unrolled": "unrolled layers"}
MATMULS_ALONE = "matmuls alone (bound)"  # the rows of `matmuls_alone`
FUSED_ATTENTION_CALL = 'custom_call_target="__cudnn$fmha'  # cuDNN's fused attention kernels
NOTES_HEADING = "## Reading the figures"  # a hand-written section of --output, kept on reruns


@dataclass
class Row:
    """One metric; `peer` is the peer's figure with glibc's default allocator and
    `peer_keep` with the allocator in keep mode (None where not measured)."""

    model: str
    metric: str
    ours: float
    peer: float | None
    unit: str
    higher_is_better: bool
    peer_keep: float | None = None
    compared: bool = True  # whether the last column shows the ours/peer ratio

    @property
    def best_peer(self) -> float | None:
        figures = [x for x in (self.peer, self.peer_keep) if x is not None]
        if not figures:
            return None
        return max(figures) if self.higher_is_better else min(figures)

    @property
    def speedup(self) -> float | None:
        peer = self.best_peer
        if peer is None or not self.compared:
            return None
        return self.ours / peer if self.higher_is_better else peer / self.ours


class Timing(NamedTuple):
    """`seconds`: median wall time of one run; `cores_busy`: CPU time of the whole process
    (every thread, spinning ones too) over wall time across the timed runs."""

    seconds: float
    cores_busy: float


def median_time(fn: Callable[[], object], repeats: int, warmup: int) -> Timing:
    """Times `fn()` over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    times = []
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    busy = (time.process_time() - cpu_start) / (time.perf_counter() - wall_start)
    return Timing(statistics.median(times), busy)


def synthetic_batch(vocab_size: int, batch: int, length: int, predictions: int, seed: int = 0):
    """A right-padded pretraining batch (NumPy), like the data pipeline produces."""
    rng = np.random.default_rng(seed)
    low = min(1000, vocab_size // 2)  # ordinary word pieces, past the special tokens
    ids = rng.integers(low, max(low + 1, vocab_size - 10), size=(batch, length)).astype(np.int32)
    mask = np.ones((batch, length), np.int32)
    mask[batch // 2 :, length - length // 8 :] = 0
    types = np.zeros((batch, length), np.int32)
    types[:, length // 2 :] = 1
    positions = np.stack(
        [
            np.sort(rng.choice(np.arange(1, length - length // 8), predictions, replace=False))
            for _ in range(batch)
        ]
    ).astype(np.int32)
    labels = np.take_along_axis(ids, positions, axis=1)
    return dict(
        input_ids=ids,
        attention_mask=mask,
        token_type_ids=types,
        masked_lm_positions=positions,
        masked_lm_ids=labels,
        masked_lm_weights=np.ones_like(positions, np.float32),
        next_sentence_labels=(np.arange(batch) % 2).astype(np.int32),
    )


# ------------------------------------------------------------------------------- ours
def ours_inference_program(config, batch: dict) -> tuple[Callable, tuple]:
    """Our trunk's forward pass as `inference_jit` compiles it, and its arguments."""
    graphdef, state = nnx.split(with_layer_list(build_model(config)))

    @inference_jit
    def forward(state, ids, mask, types):
        return nnx.merge(graphdef, state)(ids, mask, types).last_hidden_state

    args = [jnp.asarray(batch[k]) for k in ("input_ids", "attention_mask", "token_type_ids")]
    return forward, (state, *args)


def ours_inference(config, batch: dict, repeats: int, warmup: int) -> Timing:
    forward, args = ours_inference_program(config, batch)
    return median_time(lambda: forward(*args).block_until_ready(), repeats, warmup)


def ours_train_program(config, batch: dict) -> tuple[Callable, tuple]:
    """Our full MLM + NSP AdamW step (jitted, parameters and optimizer state donated) and its
    arguments (params, opt_state, batch, rng)."""
    model = build_model(config, "pretraining")
    graphdef, params = nnx.split(model, nnx.Param)
    tx = optax.adamw(1e-4, eps=1e-6, weight_decay=0.01)
    opt_state = tx.init(params)

    def loss_fn(params, batch, rng):
        out = nnx.merge(graphdef, params)(
            batch["input_ids"],
            batch["attention_mask"],
            batch["token_type_ids"],
            masked_lm_positions=batch["masked_lm_positions"],
            deterministic=False,
            dropout_rng=rng,
        )
        logp = jax.nn.log_softmax(out.prediction_logits)
        nll = -jnp.take_along_axis(logp, batch["masked_lm_ids"][..., None], axis=-1)[..., 0]
        w = batch["masked_lm_weights"]
        mlm = jnp.sum(nll * w) / jnp.maximum(jnp.sum(w), 1.0)
        nsp = optax.softmax_cross_entropy_with_integer_labels(
            out.seq_relationship_logits, batch["next_sentence_labels"]
        ).mean()
        return mlm + nsp

    @jax.jit(donate_argnums=(0, 1))
    def step(params, opt_state, batch, rng):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch, rng)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    device_batch = {k: jnp.asarray(v) for k, v in batch.items()}
    return step, (params, opt_state, device_batch, jax.random.key(0))


def ours_train_step(config, batch: dict, repeats: int, warmup: int) -> tuple[Timing, float, int]:
    """(step timing, compile seconds, cuDNN fused-attention calls in the compiled program) of
    a full MLM + NSP AdamW step."""
    step, (params, opt_state, device_batch, rng) = ours_train_program(config, batch)
    start = time.perf_counter()
    compiled = step.lower(params, opt_state, device_batch, rng).compile()
    compile_s = time.perf_counter() - start
    state = [params, opt_state]

    def run():
        state[0], state[1], loss = compiled(state[0], state[1], device_batch, rng)
        loss.block_until_ready()

    fused_calls = compiled.as_text().count(FUSED_ATTENTION_CALL)
    return median_time(run, repeats, warmup), compile_s, fused_calls


def matmuls_alone(program: Callable, args: tuple, jit: Callable) -> Callable[[], jax.Array]:
    """A program, compiled with `jit`, that runs only the matmuls of the jitted `program(*args)`:
    every `dot_general` that program executes (a scan body's once per iteration), on random
    operands of their shapes, with nothing in between. Its time is what the program would
    take if all but its matmuls cost nothing: a bound on any program made of those matmuls on
    XLA's kernels (a slightly generous one: with no data flow between them, XLA may overlap
    independent matmuls). Each matmul gets its own copy of its smaller operand, so that XLA
    cannot merge identical products, and keeps one element of its product, behind an
    optimisation barrier so that the product is still computed in full.
    """
    equations = [
        eqn
        for eqn, times in dot_general_equations(program.trace(*args).jaxpr.jaxpr)
        for _ in range(times)
    ]
    key = jax.random.key(0)
    shared: dict[tuple, jax.Array] = {}  # the larger operands, one array per shape

    def random_array(aval, reuse: bool) -> jax.Array:
        nonlocal key
        if reuse and (aval.shape, aval.dtype) in shared:
            return shared[(aval.shape, aval.dtype)]
        key, sub = jax.random.split(key)
        x = jax.random.normal(sub, aval.shape, aval.dtype)
        if reuse:
            shared[(aval.shape, aval.dtype)] = x
        return x

    operands = []
    for eqn in equations:
        lhs, rhs = (v.aval for v in eqn.invars)
        fresh_lhs = lhs.size <= rhs.size
        operands.append((random_array(lhs, not fresh_lhs), random_array(rhs, fresh_lhs)))

    @jit
    def run(operands):
        firsts = []
        for eqn, (lhs, rhs) in zip(equations, operands, strict=True):
            product = jax.lax.optimization_barrier(
                jax.lax.dot_general_p.bind(lhs, rhs, **eqn.params)
            )
            firsts.append(product.reshape(-1)[0].astype(jnp.float32))
        return jnp.stack(firsts)

    return lambda: run(operands).block_until_ready()


def ours_matmuls_alone(config, batch: dict, measure: str, repeats: int, warmup: int) -> Timing:
    """`matmuls_alone` of our inference forward pass or training step."""
    if measure == "inference":
        run = matmuls_alone(*ours_inference_program(config, batch), inference_jit)
    else:
        run = matmuls_alone(*ours_train_program(config, batch), jax.jit)
    return median_time(run, repeats, warmup)


# ------------------------------------------------------------------------------- peer
def hf_model(config, head: str):
    import transformers

    from squeezemobile_jax.hub.hf import architecture_name

    fields = config.to_hf_dict()
    fields.pop("model_type")
    cls = {
        "squeezebert": transformers.SqueezeBertConfig,
        "mobilebert": transformers.MobileBertConfig,
    }
    hf_config = cls[config.model_type](**fields)
    return getattr(transformers, architecture_name(config, head))(hf_config)


def hf_inference(config, batch: dict, repeats: int, warmup: int) -> Timing:
    import torch

    model = hf_model(config, "base").eval()
    inputs = {
        k: torch.from_numpy(batch[k]).long()
        for k in ("input_ids", "attention_mask", "token_type_ids")
    }

    def run():
        with torch.inference_mode():
            model(**inputs)

    return median_time(run, repeats, warmup)


def hf_train_step(config, batch: dict, repeats: int, warmup: int) -> Timing:
    """A full MLM + NSP AdamW step the way an HF user writes it (MLM logits everywhere)."""
    import torch

    model = hf_model(config, "pretraining").train()
    nsp_head = None
    if config.model_type == "squeezebert":  # HF has no SqueezeBERT pretraining class
        nsp_head = torch.nn.Linear(config.hidden_size, 2)
    params = list(model.parameters()) + (list(nsp_head.parameters()) if nsp_head else [])
    opt = torch.optim.AdamW(params, lr=1e-4, eps=1e-6, weight_decay=0.01)
    t = {k: torch.from_numpy(v).long() for k, v in batch.items() if k != "masked_lm_weights"}
    labels = torch.full_like(t["input_ids"], -100)
    labels.scatter_(1, t["masked_lm_positions"], t["masked_lm_ids"])
    inputs = {k: t[k] for k in ("input_ids", "attention_mask", "token_type_ids")}

    def run():
        opt.zero_grad(set_to_none=True)
        if nsp_head is None:
            out = model(**inputs, labels=labels, next_sentence_label=t["next_sentence_labels"])
            loss = out.loss
        else:
            trunk = model.transformer(**inputs)
            logits = model.cls(trunk.last_hidden_state)
            mlm = torch.nn.functional.cross_entropy(
                logits.view(-1, logits.shape[-1]), labels.view(-1), ignore_index=-100
            )
            nsp = torch.nn.functional.cross_entropy(
                nsp_head(trunk.pooler_output), t["next_sentence_labels"]
            )
            loss = mlm + nsp
        loss.backward()
        opt.step()

    return median_time(run, repeats, warmup)


# ------------------------------------------------------------------------------- workers
def peak_rss_mb() -> float:
    """Peak resident memory of this process (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_worker(args: argparse.Namespace) -> dict:
    """One measurement in this process as JSON on stdout: {value (seconds), cores_busy,
    peak_mb} and, for our training step, compile_s, flops and fused_attention_calls."""
    overrides = {"scan_layers": args.layers == "scan", "compute_dtype": args.dtype}
    if args.attention_dropout is not None:
        overrides["attention_probs_dropout_prob"] = args.attention_dropout
    config = get_model_config(MODELS.get(args.model, args.model), **overrides)
    if args.measure == "peak":  # accelerators need a bigger matmul to reach their peak
        device = jax.devices()[0]
        size = 2048 if device.platform == "cpu" else 8192
        return {
            "value": measured_peak_flops(size, dtype=args.dtype),
            "datasheet": peak_flops_per_device() or 0.0,  # bfloat16 dense, known accelerators
            "device": f"{device.platform} ({device.device_kind})",
        }
    b = args.batch
    batch = synthetic_batch(config.vocab_size, b, args.length, args.predictions)
    out: dict = {}
    if args.framework == "matmuls":
        timing = ours_matmuls_alone(config, batch, args.measure, args.repeats, args.warmup)
    elif args.measure == "inference":
        fn = ours_inference if args.framework == "ours" else hf_inference
        timing = fn(config, batch, args.repeats, args.warmup)
    elif args.framework == "ours":
        timing, out["compile_s"], out["fused_attention_calls"] = ours_train_step(
            config, batch, args.repeats, args.warmup
        )
        out["flops"] = training_flops_per_example(config, args.length, args.predictions) * b
    else:
        timing = hf_train_step(config, batch, args.repeats, args.warmup)
    out["value"], out["cores_busy"] = timing
    out["peak_mb"] = peak_rss_mb()
    return out


def measure(args: argparse.Namespace, malloc: str = "keep", **worker: object) -> dict:
    """Runs one worker subprocess (host allocator mode `malloc`) and returns its JSON result."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker"]
    for key in ("length", "predictions", "repeats", "warmup", "dtype", "attention_dropout"):
        if getattr(args, key) is not None:
            cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    for key, value in worker.items():
        cmd += [f"--{key}", str(value)]
    env = dict(os.environ, **{HOST_MALLOC_ENV: malloc})
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark worker {worker} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_interleaved(args: argparse.Namespace, specs: dict[str, dict]) -> dict[str, dict]:
    """Runs every worker in `specs` (name -> `measure` keywords) `args.rounds` times,
    round-robin, so that slow drifts of the machine hit all of them alike; returns per name
    the median of each figure across rounds."""
    results: dict[str, list[dict]] = {name: [] for name in specs}
    for _ in range(args.rounds):
        for name, spec in specs.items():
            results[name].append(measure(args, **spec))
    return {
        name: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        for name, runs in results.items()
    }


def worker_specs(modes: list[str], with_peer: bool, **worker: object) -> dict[str, dict]:
    """Ours in each layer mode, our program's matmuls alone (`matmuls_alone`; both layer modes
    run the same matmuls), and the peer with glibc's default allocator and in keep mode."""
    specs = {mode: dict(framework="ours", layers=mode, **worker) for mode in modes}
    specs["matmuls"] = dict(framework="matmuls", layers="scan", **worker)
    if with_peer:
        specs["peer"] = dict(malloc="default", framework="hf", **worker)
        specs["peer_keep"] = dict(malloc="keep", framework="hf", **worker)
    return specs


def figure(result: dict | None, key: str, convert: Callable[[float], float] = float):
    return None if result is None else convert(result[key])


def timing_row(
    model: str, metric: str, results: dict[str, dict], worker: str, tokens: int | None = None
) -> Row:
    """`worker`'s median time in `results` beside the peer's: as a latency in ms or, given
    the `tokens` a run processes, as a throughput in tokens/s."""
    if tokens is None:
        unit, higher_is_better = "ms", False

        def convert(seconds: float) -> float:
            return 1e3 * seconds
    else:
        unit, higher_is_better = "tok/s", True

        def convert(seconds: float) -> float:
            return tokens / seconds

    return Row(
        model,
        metric,
        convert(results[worker]["value"]),
        figure(results.get("peer"), "value", convert),
        unit,
        higher_is_better,
        figure(results.get("peer_keep"), "value", convert),
    )


def cores_busy_row(model: str, metric: str, results: dict[str, dict], mode: str) -> Row:
    """Cores kept busy while timing (`Timing.cores_busy`), ours in `mode` beside the peer's;
    no ratio: CPU time also counts threads spinning while they wait (PyTorch's OpenMP threads
    do), so it bounds the cores doing work from above."""
    return Row(
        model,
        metric,
        results[mode]["cores_busy"],
        figure(results.get("peer"), "cores_busy"),
        "cores",
        True,
        figure(results.get("peer_keep"), "cores_busy"),
        compared=False,
    )


# ------------------------------------------------------------------------------- main
def markdown(rows: list[Row], command: str, args: argparse.Namespace, peak: dict) -> str:
    import torch

    def cell(x: float | None, unit: str) -> str:
        return "-" if x is None else f"{x:,.4g} {unit}"

    lines = [
        "| model | metric | ours (JAX) | HF PyTorch | HF PyTorch, keep-mode allocator "
        "| speed-up ours/faster peer |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        speedup = "-" if r.speedup is None else f"{r.speedup:.2f}x"
        lines.append(
            f"| {r.model} | {r.metric} | {cell(r.ours, r.unit)} | {cell(r.peer, r.unit)} "
            f"| {cell(r.peer_keep, r.unit)} | {speedup} |"
        )
    attention_dropout = (
        "" if args.attention_dropout is None else f" (attention dropout {args.attention_dropout})"
    )
    header = (
        f"Command: `{command}`\n\n"
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, JAX {jax.__version__} on "
        f"{peak['device']}, PyTorch {torch.__version__} "
        f"({torch.get_num_threads()} threads); measured {args.dtype} matmul peak "
        f"{peak['value'] / 1e9:.1f} GFLOP/s. Training: batch {args.batch}, length {args.length}, "
        f"{args.predictions} masked positions, AdamW, dropout on{attention_dropout}; inference: "
        f"the trunk at length {args.length} (ours compiled with `inference_jit`, as our "
        f"prediction and evaluation steps). Ours computes in {args.dtype}, the peer in "
        f"float32; medians of {args.repeats} runs after {args.warmup} warm-up runs, each "
        f"measurement in its own process; {args.rounds} round(s) of processes, ours and the "
        "peer's taking turns, and the median across rounds. Ours runs with the host allocator "
        "in keep mode, as our entry points run it; the peer with glibc's default allocator and "
        "in keep mode.\n\n"
    )
    return header + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="squeezebert,bert-base,mobilebert,ib-bert")
    parser.add_argument("--batch", type=int, default=8, help="training batch size")
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--predictions", type=int, default=20, help="masked positions per row")
    parser.add_argument(
        "--inference-batches", default="1,32", help="comma list, e.g. 1,32 ('' for none)"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="worker processes per measurement, run round-robin with the peer's; figures are "
        "medians across rounds",
    )
    parser.add_argument(
        "--layers",
        default="scan",
        help="comma list of how our stacked layers run: scan (lax.scan, scan_layers=True) "
        "and/or unrolled (scan_layers=False); each is measured",
    )
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "bfloat16"),
        help="our compute dtype (parameters stay float32); bfloat16 measures ours only",
    )
    parser.add_argument(
        "--attention-dropout",
        type=float,
        help="attention_probs_dropout_prob for our models (default: the preset's); 0 lets "
        "GPU training steps use fused attention",
    )
    parser.add_argument("--no-peer", action="store_true", help="skip HF PyTorch")
    parser.add_argument(
        "--output",
        help=f"also write the markdown tables here (a '{NOTES_HEADING}' section already in "
        "the file is kept below them)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--framework", help=argparse.SUPPRESS)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(args)))
        return
    command = "python scripts/benchmark.py " + " ".join(argv if argv is not None else sys.argv[1:])

    models = args.models.split(",")
    unknown = [name for name in models if name not in MODELS and name not in PRESETS]
    if unknown:
        parser.error(f"--models: unknown {unknown}; choose from {sorted(MODELS)} or a preset")
    modes = args.layers.split(",")
    if any(m not in LAYER_MODES for m in modes):
        parser.error(f"--layers: expected a comma list of {list(LAYER_MODES)}, got {args.layers!r}")
    try:
        inference_batches = [int(x) for x in args.inference_batches.split(",") if x]
    except ValueError:
        parser.error(
            "--inference-batches: expected a comma list of integers, got "
            f"{args.inference_batches!r}"
        )
    if args.rounds < 1:
        parser.error(f"--rounds: expected at least 1, got {args.rounds}")

    # Measured in a worker, like everything else: this process never claims the device.
    peak = measure(args, model="bert-base", framework="ours", measure="peak", batch=1)
    rows: list[Row] = []

    def add(row: Row) -> None:
        rows.append(row)
        print(row, flush=True)

    def label(metric: str, mode: str) -> str:
        return f"{metric}, {LAYER_MODES[mode]}"

    # Host CPU time per wall second: on a CPU, how much of the machine each framework used.
    on_cpu = peak["device"].startswith("cpu")

    for name in models:
        with_peer = (
            not args.no_peer
            and args.dtype == "float32"  # the peer runs float32 on the host
            and not MODELS.get(name, name).startswith("ib-bert")  # HF cannot build IB-BERT
        )
        for b in inference_batches:
            kw = dict(model=name, measure="inference", batch=b)
            results = measure_interleaved(args, worker_specs(modes, with_peer, **kw))
            for mode in modes:
                add(timing_row(name, label(f"inference latency b={b}", mode), results, mode))
                if on_cpu:
                    add(
                        cores_busy_row(
                            name, label(f"inference CPU cores busy b={b}", mode), results, mode
                        )
                    )
            add(timing_row(name, f"inference latency b={b}, {MATMULS_ALONE}", results, "matmuls"))
        tokens = args.batch * args.length
        kw = dict(model=name, measure="train", batch=args.batch)
        results = measure_interleaved(args, worker_specs(modes, with_peer, **kw))
        peer, peer_keep = results.get("peer"), results.get("peer_keep")
        for mode in modes:
            ours = results[mode]
            add(timing_row(name, label("train step throughput", mode), results, mode, tokens))
            if on_cpu:
                add(cores_busy_row(name, label("train step CPU cores busy", mode), results, mode))
            mfu = 100 * ours["flops"] / ours["value"] / peak["value"]
            add(Row(name, label("train step MFU", mode), mfu, None, "%", True))
            if peak["datasheet"]:
                mfu = 100 * ours["flops"] / ours["value"] / peak["datasheet"]
                add(Row(name, label("train step MFU, datasheet peak", mode), mfu, None, "%", True))
            calls = ours["fused_attention_calls"]
            add(
                Row(
                    name,
                    label("train step fused attention calls", mode),
                    calls,
                    None,
                    "calls",
                    True,
                )
            )
            add(
                Row(
                    name,
                    label("train step peak memory", mode),
                    ours["peak_mb"],
                    figure(peer, "peak_mb"),
                    "MB",
                    False,
                    figure(peer_keep, "peak_mb"),
                )
            )
            compile_s = ours["compile_s"]
            add(Row(name, label("train step compile time", mode), compile_s, None, "s", False))
        metric = f"train step throughput, {MATMULS_ALONE}"
        add(timing_row(name, metric, results, "matmuls", tokens))

    by_name = {(r.model, r.metric): r for r in rows}
    for b in inference_batches:
        for mode in modes:
            metric = label(f"inference latency b={b}", mode)
            squeeze = by_name.get(("squeezebert", metric))
            base = by_name.get(("bert-base", metric))
            if squeeze and base:
                add(Row("squeezebert vs our bert-base", metric, squeeze.ours, None, "ms", False))
                rows[-1].peer = base.ours
    table = markdown(rows, command, args, peak)
    table += (
        "\nThe `squeezebert vs our bert-base` rows compare two of our models (the peer column is"
        " our BERT-base: SqueezeBERT with all groups 1).\n"
    )
    print(table)
    if args.output:
        write_output(args.output, table)


def write_output(path: str, table: str) -> None:
    """Writes the tables to `path`, keeping a `## Reading the figures` section already there
    (notes written by hand about the figures; update them with the new run)."""
    notes = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        at = text.find("\n" + NOTES_HEADING)
        notes = text[at:] if at >= 0 else ""
    with open(path, "w", encoding="utf-8") as f:
        f.write("# Benchmarks\n\n" + table + notes)


if __name__ == "__main__":
    main()
