"""Pieces every task shares: the `model` config section, building or initialising a model,
the run's tokenizer, and what a run writes into its workdir besides the loop's own files.

A workdir of `train.py` / `distill.py` holds `model.json` (the model config and head), the
tokenizer under `tokenizer/`, and orbax checkpoints under `checkpoints/`. `load_pretrained`
accepts such a workdir or an HF `save_pretrained` directory.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
import types
import typing
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx
from ml_collections import config_dict

from squeezemobile_jax import fileio
from squeezemobile_jax.data.tokenizer import WordPieceTokenizer, load_tokenizer, save_tokenizer
from squeezemobile_jax.hub.hf import CONFIG_NAME, from_hf_pretrained, head_of
from squeezemobile_jax.models import (
    PRESETS,
    EncoderConfig,
    build_model,
    config_from_dict,
    get_model_config,
)

log = logging.getLogger(__name__)

MODEL_SPEC_NAME = "model.json"
CHECKPOINT_DIR = "checkpoints"
TOKENIZER_DIR = "tokenizer"


# ------------------------------------------------------------------ the `model` section
def _field_type(cls: type, field: dataclasses.Field) -> type:
    hint = typing.get_type_hints(cls)[field.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = args[0]
    return hint


def model_section(preset: str, **fields: Any) -> ml_collections.ConfigDict:
    """A `config.model` section: `preset` plus every model field as an overridable placeholder.

    A field left at None takes the preset's value, so `--config.model.num_hidden_layers=4`
    works from the command line for any field of the preset's config class.
    """
    if preset not in PRESETS:
        raise ValueError(f"model preset {preset!r} is unknown; available: {sorted(PRESETS)}")
    cls = PRESETS[preset][0]
    section = ml_collections.ConfigDict()
    section.preset = preset
    for field in dataclasses.fields(cls):
        section[field.name] = config_dict.placeholder(_field_type(cls, field))
    for name, value in fields.items():
        if name not in section:
            raise ValueError(f"config.model.{name}: not a field of {cls.__name__}")
        section[name] = value
    return section


def model_config_from_section(section: ml_collections.ConfigDict, **defaults: Any) -> EncoderConfig:
    """The model config a `model_section` describes. `defaults` fill fields left at None
    (e.g. the tokenizer's vocab_size) before the preset's own values."""
    overrides = {k: v for k, v in section.items() if k != "preset" and v is not None}
    for name, value in defaults.items():
        overrides.setdefault(name, value)
    try:
        return get_model_config(section.preset, **overrides)
    except (TypeError, ValueError) as e:
        raise ValueError(f"config.model: {e}") from e


# ------------------------------------------------------------------------- workdir files
def write_model_spec(workdir: str, config: EncoderConfig, head: str) -> None:
    """Records which model a run trains, so `load_pretrained(workdir)` can rebuild it."""
    if jax.process_index() != 0:
        return
    spec = {"head": head, "config": config.to_dict()}
    fileio.write_text(fileio.join(workdir, MODEL_SPEC_NAME), json.dumps(spec, indent=2))


def read_model_spec(workdir: str) -> tuple[EncoderConfig, str]:
    path = fileio.join(workdir, MODEL_SPEC_NAME)
    spec = json.loads(fileio.read_text(path))
    try:
        return config_from_dict(spec["config"]), spec["head"]
    except (KeyError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from e


def is_workdir(path: str) -> bool:
    return fileio.exists(fileio.join(path, MODEL_SPEC_NAME))


def is_hf_directory(path: str) -> bool:
    return os.path.isfile(os.path.join(path, CONFIG_NAME)) and not is_workdir(path)


# ------------------------------------------------------------------------ initialisation
def copy_matching_params(
    source: nnx.Module,
    target: nnx.Module,
    *,
    keep: Callable[[tuple[Any, ...]], bool] | None = None,
) -> dict[str, list[str]]:
    """Copies every parameter present in both models with the same path and shape.

    `keep(path)` marks target parameters to leave as they are. Returns {"copied": [...],
    "fresh": [...], "skipped_shape": [...]} ('/'-joined paths of `target`; kept and absent
    parameters are "fresh").
    """
    src = dict(nnx.to_flat_state(nnx.state(source, nnx.Param)))
    report: dict[str, list[str]] = {"copied": [], "fresh": [], "skipped_shape": []}
    for path, var in nnx.to_flat_state(nnx.state(target, nnx.Param)):
        name = "/".join(str(p) for p in path)
        if path not in src or (keep is not None and keep(path)):
            report["fresh"].append(name)
        elif src[path].shape != var.shape:
            report["skipped_shape"].append(name)
        else:
            var[...] = src[path][...]
            report["copied"].append(name)
    return report


def load_workdir_model(workdir: str, step: int | None = None) -> nnx.Module:
    """The model a `train.py`/`distill.py` workdir trains, with its latest (or `step`) params."""
    from squeezemobile_jax.training.checkpoint import restore_params

    config, head = read_model_spec(workdir)
    model = nnx.eval_shape(lambda: build_model(config, head))  # shapes only: nothing to init
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
        nnx.state(model, nnx.Param),
    )
    restored = restore_params(fileio.join(workdir, CHECKPOINT_DIR), target, step=step)
    nnx.update(model, restored)
    return model


def load_pretrained(
    init: str, head: str, *, seed: int = 0, step: int | None = None, **config_overrides: Any
) -> nnx.Module:
    """A `head` model initialised from a workdir or an HF directory.

    Parameters that exist in the source with the same shape are copied (the trunk, and the
    head when it matches); the rest keep a fresh initialisation and are logged.
    `config_overrides` change model config fields (e.g. `num_labels`, `compute_dtype`).
    """
    if is_hf_directory(init):
        return from_hf_pretrained(init, head, seed=seed, **config_overrides)
    if not is_workdir(init):
        raise FileNotFoundError(
            f"init={init!r}: neither a workdir (no {MODEL_SPEC_NAME}) nor an HF directory "
            f"(no {CONFIG_NAME})"
        )
    source = load_workdir_model(init, step)
    config = source.config.replace(**config_overrides)
    if head == head_of(source) and config == source.config:
        return source
    target = build_model(config, head, seed=seed)
    report = copy_matching_params(source, target)
    if report["fresh"] or report["skipped_shape"]:
        log.info(
            "init from %s: %d parameters copied, fresh: %s, shape changed: %s",
            init,
            len(report["copied"]),
            report["fresh"],
            report["skipped_shape"],
        )
    return target


def num_params(model: nnx.Module) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, nnx.Param))))


def tokenizer_of(
    init: str | None, path: str | None = None, required: bool = True
) -> WordPieceTokenizer | None:
    """`path` when given, else the tokenizer stored with the model directory `init` (a
    workdir's `tokenizer/`, or an HF directory's tokenizer.json / vocab.txt); when there is
    none, a ValueError saying what to set (or None when not `required`)."""
    if path:
        return load_tokenizer(path)
    if init:
        for candidate in (fileio.join(init, TOKENIZER_DIR), init):
            names = ("tokenizer.json", "vocab.txt")
            if any(fileio.exists(fileio.join(candidate, name)) for name in names):
                with fileio.local_copy(candidate) as local:
                    return load_tokenizer(local)
    if not required:
        return None
    raise ValueError(
        f"no tokenizer: set config.tokenizer.path (vocab.txt / tokenizer.json), or init a "
        f"model directory that holds one (init={init!r})"
    )


def workdir_tokenizer(workdir: str, make: Callable[[], WordPieceTokenizer]) -> WordPieceTokenizer:
    """The tokenizer saved in `workdir/tokenizer` (a resumed run), else `make()`, saved there
    by process 0 (uploaded when the workdir is on an object store)."""
    saved = fileio.join(workdir, TOKENIZER_DIR)
    if fileio.exists(saved):
        with fileio.local_copy(saved) as local:
            return load_tokenizer(local)
    tokenizer = make()
    if jax.process_index() == 0:
        with tempfile.TemporaryDirectory() as tmp:
            fileio.upload_dir(save_tokenizer(tokenizer, tmp, TOKENIZER_DIR), saved)
    return tokenizer
