"""The classifier to fine-tune (from `config.init` or fresh) and its HF-format export."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any

import jax
import ml_collections
from flax import nnx

from squeezemobile_jax import fileio
from squeezemobile_jax.data import WordPieceTokenizer
from squeezemobile_jax.hub.hf import CONFIG_NAME, save_hf_pretrained
from squeezemobile_jax.models import build_model
from squeezemobile_jax.models.config import RUNTIME_FIELDS
from squeezemobile_jax.tasks.common import load_pretrained, model_config_from_section
from squeezemobile_jax.tasks.glue.specs import GlueTask
from squeezemobile_jax.training import to_host

HEAD = "sequence_classification"
BEST_RESULTS = "dev_results.json"


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


def runtime_overrides(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The set `config.model` fields that change how a loaded model runs (dtype, remat, ...)."""
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
    fileio.write_json(os.path.join(tmp, BEST_RESULTS), info)
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
