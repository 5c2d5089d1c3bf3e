"""GLUE fine-tuning (`config.task = "glue"`, one task per run) and the whole benchmark
(`run_all_tasks`, behind `eval_glue.py`). See `configs/glue.py` for every field.

One run (`run(config, workdir)`):
  1. tokenizer: `workdir/tokenizer` when resuming, else `config.tokenizer.path`, else the one
     in `config.init` (a workdir's `tokenizer/`, an HF directory's tokenizer.json/vocab.txt);
  2. data (`data/glue.py`): train, every dev set and every test set, padded to
     `data.max_seq_length` (truncations counted and logged);
  3. model: `config.init` with a fresh classifier (the source's classifier is kept when its
     label count matches), or a fresh `config.model`;
  4. optional teacher: its logits on the training set are computed once, before training, in
     inference mode, with the teacher's own tokenizer, and served with each batch as
     `teacher_logits` (cached in `workdir/teacher_logits.npz`), so the loop trains only the
     student's parameters and resuming does not need the teacher again;
  5. the generic loop: AdamW, `finetune.warmup_proportion` warmup then linear decay over
     `finetune.epochs` epochs, a checkpoint and a dev evaluation after every epoch. The best
     epoch so far (by task score, the mean of the task's metrics over its dev sets) is exported
     to `workdir/best/` in HF format with the tokenizer and `dev_results.json`;
  6. the best model predicts every test set: `workdir/predictions/<CoLA|MNLI-m|AX|...>.tsv` in
     the leaderboard format; `workdir/results.json` sums the run up.
A run restarted on its workdir resumes from the newest checkpoint; the best export survives.

The benchmark (`run_all_tasks`) runs each task (and each point of the optional sweep over
`eval_glue.learning_rates x batch_sizes x epochs`) in its own sub-workdir, keeps the run with
the best dev score per task, writes `dev_results.{json,md}` and `submission.zip` (the 11
leaderboard files; AX comes from the MNLI run). Finished runs are not repeated.
With `eval_glue.start_from_mnli`, MNLI runs first and every other task starts from its best
model (SqueezeBERT's recipe).

Files under the workdir are written by process 0 (the workdir may be on an object store,
`gs://...`); every process reads the best model back, so with several hosts the workdir must
be one they share (an object store or a shared file system).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import itertools
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from squeezemobile_jax import fileio
from squeezemobile_jax.data import WordPieceTokenizer, load_tokenizer, save_tokenizer
from squeezemobile_jax.data.batching import EpochBatches, eval_batches
from squeezemobile_jax.data.glue import (
    DIAGNOSTIC_METRICS,
    DataSource,
    GlueExamples,
    GlueTask,
    SplitSpec,
    encode_examples,
    find_in_glue_dir,
    get_task,
    load_split,
    parse_label,
    write_predictions,
    write_submission_zip,
)
from squeezemobile_jax.hub.hf import (
    CONFIG_NAME,
    from_hf_pretrained,
    save_hf_pretrained,
)
from squeezemobile_jax.models import build_model, with_layer_list
from squeezemobile_jax.models.config import RUNTIME_FIELDS
from squeezemobile_jax.tasks.common import (
    TOKENIZER_DIR,
    is_hf_directory,
    is_workdir,
    load_pretrained,
    model_config_from_section,
    write_model_spec,
)
from squeezemobile_jax.tasks.glue_metrics import (
    compute_metrics,
    dev_table_markdown,
    glue_average,
    task_score,
)
from squeezemobile_jax.training import (
    Task,
    global_batch,
    inference_jit,
    make_mesh,
    maybe_initialize_distributed,
    to_host,
    train_and_evaluate,
)

log = logging.getLogger(__name__)

HEAD = "sequence_classification"
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
BEST_DIR = "best"
BEST_RESULTS = "dev_results.json"
PREDICTIONS_DIR = "predictions"
RESULTS_FILE = "results.json"
HISTORY_FILE = "dev_history.jsonl"
TEACHER_CACHE = "teacher_logits.npz"


# ------------------------------------------------------------------------------ losses
def soft_cross_entropy(student: jax.Array, teacher: jax.Array, temperature: float) -> jax.Array:
    """Per-example T^2 * H(softmax(teacher / T), softmax(student / T)). [B, C] -> [B]."""
    target = jax.nn.softmax(teacher / temperature, axis=-1)
    log_probs = jax.nn.log_softmax(student / temperature, axis=-1)
    return -(temperature**2) * jnp.sum(target * log_probs, axis=-1)


def finetune_loss(
    logits: jax.Array,
    batch: Mapping[str, jax.Array],
    *,
    regression: bool,
    distill_weight: float = 0.0,
    temperature: float = 1.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean loss over the batch and scalar metrics. logits [B, C] (C = 1 for regression).

    Classification: cross-entropy to `labels` [B] (int); regression: squared error to
    `labels` [B] (float). With `teacher_logits` [B, C] in the batch and distill_weight w > 0:
    (1 - w) * that + w * (soft cross-entropy at `temperature`, or squared error to the
    teacher's score for regression).
    """
    logits = logits.astype(jnp.float32)
    labels = batch["labels"]
    if regression:
        hard = jnp.mean(jnp.square(logits[:, 0] - labels.astype(jnp.float32)))
        metrics = {"mse": hard}
    else:
        hard = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
        accuracy = jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))
        metrics = {"cross_entropy": hard, "accuracy": accuracy}
    if "teacher_logits" not in batch or distill_weight <= 0.0:
        return hard, metrics
    teacher = batch["teacher_logits"].astype(jnp.float32)
    if regression:
        soft = jnp.mean(jnp.square(logits - teacher))
    else:
        soft = jnp.mean(soft_cross_entropy(logits, teacher, temperature))
    metrics["distill_loss"] = soft
    return (1.0 - distill_weight) * hard + distill_weight * soft, metrics


def make_loss_fn(regression: bool, distill_weight: float, temperature: float):
    """`loss_fn(model, batch, rng)` for the loop (dropout on, drawn from `rng`)."""

    def loss_fn(model: nnx.Module, batch: Mapping[str, jax.Array], rng: jax.Array):
        out = model(*(batch[k] for k in MODEL_INPUTS), deterministic=False, dropout_rng=rng)
        return finetune_loss(
            out.logits,
            batch,
            regression=regression,
            distill_weight=distill_weight,
            temperature=temperature,
        )

    return loss_fn


# ---------------------------------------------------------------------------- predicting
@inference_jit(static_argnums=0)
def _logits(graphdef: nnx.GraphDef, state: nnx.State, batch: Mapping[str, jax.Array]):
    model = nnx.merge(graphdef, state)
    return model(*(batch[k] for k in MODEL_INPUTS), deterministic=True).logits


def eval_batch_size(requested: int) -> int:
    """`requested` rounded up to a multiple of the device count (batches split evenly)."""
    devices = jax.device_count()
    return max(devices, -(-int(requested) // devices) * devices)


def predict_logits(
    model: nnx.Module, arrays: Mapping[str, np.ndarray], batch_size: int, mesh: jax.sharding.Mesh
) -> np.ndarray:
    """Logits [N, num_labels] (float32) of every example of `arrays`, in order.

    `arrays` holds MODEL_INPUTS [N, L]; every process passes the same arrays and gets all rows.
    """
    inputs = {k: arrays[k] for k in MODEL_INPUTS}
    n = len(inputs["input_ids"])
    graphdef, state = nnx.split(with_layer_list(model))
    outputs = []
    for host_batch in eval_batches(inputs, batch_size):
        batch = {k: host_batch[k] for k in MODEL_INPUTS}
        outputs.append(_logits(graphdef, state, global_batch(batch, mesh)))
    logits = np.concatenate([to_host(x) for x in outputs])  # row i of batch b = b*size + i
    return logits[:n].astype(np.float32)


def logits_to_predictions(logits: np.ndarray, regression: bool) -> np.ndarray:
    """[N, C] logits -> [N] label ids, or [N] scores for regression."""
    return logits[:, 0] if regression else np.argmax(logits, axis=-1)


# --------------------------------------------------------------------------- data sets
@dataclasses.dataclass
class EncodedSplit:
    """One split: its spec, its rows and their encoded arrays (`encode_examples`)."""

    split: SplitSpec
    examples: GlueExamples
    arrays: dict[str, np.ndarray]

    @property
    def name(self) -> str:
        return self.split.name


def data_source(config: ml_collections.ConfigDict) -> DataSource:
    data = config.data
    files = {k: v for k, v in (data.get("files") or {}).items() if v}
    return DataSource(
        files=files,
        glue_dir=data.get("glue_dir") or None,
        hub_id=data.get("hub_id") or "nyu-mll/glue",
        bad_rows=data.get("bad_rows", "skip"),
        cache_dir=data.get("cache_dir") or None,
    )


def _encode(
    examples: GlueExamples, tokenizer: WordPieceTokenizer, length: int, stats: dict
) -> dict[str, np.ndarray]:
    arrays, truncated = encode_examples(examples, tokenizer, length)
    stats["examples"][examples.split.key] = len(examples)
    stats["skipped_rows"][examples.split.key] = examples.skipped
    stats["truncated"][examples.split.key] = truncated
    if "labels" in arrays:
        labels = arrays["labels"]
        arrays["labels"] = labels.astype(np.float32 if labels.dtype.kind == "f" else np.int32)
    return arrays


def load_task_data(
    config: ml_collections.ConfigDict, task: GlueTask, tokenizer: WordPieceTokenizer
) -> tuple[EncodedSplit, list[EncodedSplit], list[EncodedSplit], EncodedSplit | None, dict]:
    """(train set, dev sets, test sets, labeled diagnostic or None, counts: examples /
    skipped rows / truncated per split)."""
    source = data_source(config)
    length = int(config.data.max_seq_length)
    stats: dict[str, dict[str, int]] = {"examples": {}, "skipped_rows": {}, "truncated": {}}
    examples = load_split(source, task, task.train)
    train = EncodedSplit(task.train, examples, _encode(examples, tokenizer, length, stats))
    dev, test = [], []
    for split in task.dev:
        examples = load_split(source, task, split)
        dev.append(EncodedSplit(split, examples, _encode(examples, tokenizer, length, stats)))
    for split in task.test:
        examples = load_split(source, task, split, required=False)
        if examples is not None:
            test.append(EncodedSplit(split, examples, _encode(examples, tokenizer, length, stats)))
    diagnostic = None
    split = task.diagnostic
    if split is not None and (
        source.files.get(split.key)
        or (source.glue_dir and find_in_glue_dir(source.glue_dir, split))
    ):
        examples = load_split(source, task, split)
        diagnostic = EncodedSplit(split, examples, _encode(examples, tokenizer, length, stats))
    return train, dev, test, diagnostic, stats


def majority_baseline(train_labels: np.ndarray, dev: list[EncodedSplit], task: GlueTask) -> dict:
    """Dev metrics of always predicting the most frequent training label (classification)."""
    if task.is_regression:
        return {}
    majority = int(np.bincount(train_labels, minlength=task.num_labels).argmax())
    out = {}
    for s in dev:
        gold = s.arrays["labels"]
        out[s.name] = compute_metrics(task.metrics, np.full_like(gold, majority), gold)
    return out


def evaluate_dev(
    model: nnx.Module, task: GlueTask, dev: list[EncodedSplit], batch_size: int, mesh
) -> dict[str, Any]:
    """{"score": mean task score over the dev sets, "sets": {name: {metric: value}}}."""
    sets = {}
    for s in dev:
        logits = predict_logits(model, s.arrays, batch_size, mesh)
        predictions = logits_to_predictions(logits, task.is_regression)
        sets[s.name] = compute_metrics(task.metrics, predictions, s.arrays["labels"])
    return {"score": float(np.mean([task_score(m) for m in sets.values()])), "sets": sets}


# ---------------------------------------------------------------------------- tokenizer
@contextlib.contextmanager
def _local_copy(path: str) -> Iterator[str]:
    """`path` itself when local; a temporary local copy of its files (removed after) when not."""
    local = fileio.local_dir(path)
    try:
        yield local
    finally:
        if local != os.fspath(path):
            shutil.rmtree(local, ignore_errors=True)


def build_tokenizer(config: ml_collections.ConfigDict, workdir: str) -> WordPieceTokenizer:
    """The run's tokenizer (see the module docstring), saved to `workdir/tokenizer`."""
    saved = os.path.join(workdir, TOKENIZER_DIR)
    if fileio.exists(saved):
        with _local_copy(saved) as local:
            return load_tokenizer(local)
    tokenizer = tokenizer_of(config.init, config.tokenizer.get("path") or None)
    if jax.process_index() == 0:
        with tempfile.TemporaryDirectory() as tmp:
            fileio.upload_dir(save_tokenizer(tokenizer, tmp, TOKENIZER_DIR), saved)
    return tokenizer


def tokenizer_of(init: str | None, path: str | None = None) -> WordPieceTokenizer:
    """`path` when given, else the tokenizer stored with the model directory `init`."""
    if path:
        return load_tokenizer(path)
    if init:
        for candidate in (os.path.join(init, TOKENIZER_DIR), init):
            names = ("tokenizer.json", "vocab.txt")
            if any(fileio.exists(os.path.join(candidate, name)) for name in names):
                with _local_copy(candidate) as local:
                    return load_tokenizer(local)
    raise ValueError(
        f"no tokenizer: set config.tokenizer.path (vocab.txt / tokenizer.json), or init a "
        f"model directory that holds one (init={init!r})"
    )


# -------------------------------------------------------------------------------- models
def init_classifier(
    init: str, num_labels: int, *, seed: int = 0, **config_overrides: Any
) -> nnx.Module:
    """A `sequence_classification` model with `num_labels` outputs initialised from `init`:
    the trunk, and the classifier when the label counts agree (else a fresh one)."""
    return load_pretrained(init, HEAD, seed=seed, num_labels=num_labels, **config_overrides)


def build_classifier(config: ml_collections.ConfigDict, task: GlueTask, vocab_size: int):
    """The model to fine-tune: from `config.init`, or fresh from `config.model`."""
    problem = "regression" if task.is_regression else "single_label_classification"
    overrides = {
        k: v
        for k, v in config.model.items()
        if k not in ("preset", "num_labels", "problem_type") and v is not None
    }
    if config.get("init"):
        model = init_classifier(
            config.init, task.num_labels, seed=int(config.seed), problem_type=problem, **overrides
        )
    else:
        model_config = model_config_from_section(config.model, vocab_size=vocab_size).replace(
            num_labels=task.num_labels, problem_type=problem
        )
        model = build_model(model_config, HEAD, seed=int(config.seed))
    if model.config.vocab_size < vocab_size:
        raise ValueError(
            f"the tokenizer has {vocab_size} tokens but the model only {model.config.vocab_size} "
            "embeddings; use the tokenizer the model was trained with (config.tokenizer.path)"
        )
    if model.config.max_position_embeddings < int(config.data.max_seq_length):
        raise ValueError(
            f"data.max_seq_length={config.data.max_seq_length} exceeds the model's "
            f"max_position_embeddings={model.config.max_position_embeddings}"
        )
    return model


def _runtime_overrides(config: ml_collections.ConfigDict) -> dict[str, Any]:
    return {k: config.model[k] for k in RUNTIME_FIELDS if config.model.get(k) is not None}


def _host_params(model: nnx.Module) -> nnx.Module:
    """A copy of `model` whose parameters are host NumPy arrays (gathered across processes)."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return nnx.merge(graphdef, jax.tree.map(to_host, params), rest)


def export_model(
    model: nnx.Module,
    directory: str,
    task: GlueTask,
    tokenizer: WordPieceTokenizer,
    info: Mapping[str, Any],
) -> None:
    """Writes an HF directory (config.json with the task's label names, weights, tokenizer)
    plus `dev_results.json` = `info`. A local `directory` is replaced atomically; on an object
    store the files are uploaded. Call on every process (parameters are gathered)."""
    host_model = _host_params(model)
    if jax.process_index() != 0:
        return
    remote = fileio.is_remote(directory)
    tmp = tempfile.mkdtemp(prefix="glue-best-") if remote else directory.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_hf_pretrained(host_model, tmp)
    if task.label_names:
        config_path = os.path.join(tmp, CONFIG_NAME)
        with open(config_path, encoding="utf-8") as f:
            hf_config = json.load(f)
        hf_config["id2label"] = {str(i): n for i, n in enumerate(task.label_names)}
        hf_config["label2id"] = {n: i for i, n in enumerate(task.label_names)}
        with open(config_path, "w", encoding="utf-8") as f:
            json.dump(hf_config, f, indent=2, sort_keys=True)
    tokenizer.save(tmp)
    _write_json(os.path.join(tmp, BEST_RESULTS), info)
    if remote:
        fileio.upload_dir(tmp, directory)
        shutil.rmtree(tmp, ignore_errors=True)
        return
    old = directory.rstrip("/") + ".old"
    shutil.rmtree(old, ignore_errors=True)
    if os.path.isdir(directory):
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)


def _write_json(path: str, data: Any) -> None:
    fileio.write_bytes(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def _read_json(path: str) -> Any:
    return json.loads(fileio.read_text(path))


# -------------------------------------------------------------------------------- teacher
def teacher_label_order(teacher_dir: str, task: GlueTask) -> np.ndarray:
    """[num_labels] column of the teacher's logits for each of our label ids.

    Read from an HF teacher's `id2label` when its names are the task's labels (GLUE strings or
    HF names); otherwise the teacher is assumed to use our order.
    """
    identity = np.arange(task.num_labels)
    config_path = os.path.join(teacher_dir, CONFIG_NAME)
    if task.is_regression or not fileio.exists(config_path):
        return identity
    id2label = json.loads(fileio.read_text(config_path)).get("id2label") or {}
    names = [id2label.get(str(i)) for i in range(len(id2label))]
    try:
        ours = [parse_label(task, n) for n in names]
    except ValueError:
        return identity
    if sorted(ours) != list(identity):
        return identity
    order = np.empty(task.num_labels, np.int64)
    order[ours] = np.arange(task.num_labels)  # teacher column j holds our label ours[j]
    return order


def teacher_logits(
    config: ml_collections.ConfigDict,
    task: GlueTask,
    train: GlueExamples,
    tokenizer: WordPieceTokenizer,
    workdir: str,
    mesh: jax.sharding.Mesh,
) -> np.ndarray | None:
    """The teacher's logits on every training example [N, C] in our label order, or None.

    Computed once with the teacher's own tokenizer (else the student's) and cached in the
    workdir; the teacher is `distill.teacher` with "{task}" replaced by the task name.
    """
    teacher_dir = (config.distill.get("teacher") or "").replace("{task}", task.name)
    if not teacher_dir or float(config.distill.weight) <= 0.0:
        return None
    cache = os.path.join(workdir, TEACHER_CACHE)
    if fileio.exists(cache):
        with np.load(io.BytesIO(fileio.read_bytes(cache))) as saved:
            if str(saved["teacher"]) == teacher_dir and len(saved["logits"]) == len(train):
                return saved["logits"]
    if not (is_workdir(teacher_dir) or is_hf_directory(teacher_dir)):
        raise FileNotFoundError(f"distill.teacher={teacher_dir!r}: not a workdir or HF directory")
    teacher = load_pretrained(teacher_dir, HEAD, **_runtime_overrides(config))
    if teacher.config.num_labels != task.num_labels:
        raise ValueError(
            f"distill.teacher={teacher_dir!r} has {teacher.config.num_labels} outputs; "
            f"{task.name} needs {task.num_labels} (use a teacher fine-tuned on {task.name})"
        )
    try:
        teacher_tokenizer = tokenizer_of(teacher_dir)
    except ValueError:
        teacher_tokenizer = tokenizer
    length = min(int(config.data.max_seq_length), teacher.config.max_position_embeddings)
    arrays, _ = encode_examples(train, teacher_tokenizer, length)
    log.info("Teacher %s: logits on %d training examples", teacher_dir, len(train))
    batch = eval_batch_size(config.data.eval_batch_size)
    logits = predict_logits(teacher, arrays, batch, mesh)
    logits = logits[:, teacher_label_order(teacher_dir, task)]
    if jax.process_index() == 0:
        buffer = io.BytesIO()
        np.savez(buffer, logits=logits, teacher=np.asarray(teacher_dir))
        fileio.write_bytes(cache, buffer.getvalue())
    return logits


# ---------------------------------------------------------------------------------- run
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
    best = _read_json(best_file) if fileio.exists(best_file) else None

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
    with _local_copy(best_dir) as local:
        best_model = from_hf_pretrained(local, HEAD, **_runtime_overrides(config))
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
        _write_json(os.path.join(workdir, RESULTS_FILE), summary)
    log.info("%s: best dev score %.4f at step %d", task.display, best["score"], best["step"])
    return summary


def predict_test_sets(
    model: nnx.Module,
    task: GlueTask,
    test: list[EncodedSplit],
    batch_size: int,
    mesh: jax.sharding.Mesh,
    workdir: str,
) -> dict[str, str]:
    """Writes `workdir/predictions/<name>.tsv` per test set; {name: path relative to workdir}."""
    out = {}
    for s in test:
        logits = predict_logits(model, s.arrays, batch_size, mesh)
        predictions = logits_to_predictions(logits, task.is_regression)
        rel = os.path.join(PREDICTIONS_DIR, f"{s.name}.tsv")
        if jax.process_index() == 0:
            write_predictions(os.path.join(workdir, rel), task, s.examples.index, predictions)
        out[s.name] = rel
    return out


# ------------------------------------------------------------------------- the benchmark
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
        summary = _read_json(done)
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
        _write_json(
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
