"""Reading and writing HF `save_pretrained` directories (config.json + weights).

Loading reads `model.safetensors` (or a sharded `model.safetensors.index.json`) with NumPy,
so torch is not needed; a `pytorch_model.bin` needs torch and says so if it is missing.
Half-precision tensors are upcast to float32.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import numpy as np
from flax import nnx

from squeezemobile_jax.hub.convert import load_hf_state_dict, to_hf_state_dict
from squeezemobile_jax.models.config import EncoderConfig, MobileBertConfig, config_from_dict
from squeezemobile_jax.models.heads import HEADS, build_model

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
SAFETENSORS_NAME = "model.safetensors"
SAFETENSORS_INDEX_NAME = "model.safetensors.index.json"
PYTORCH_NAME = "pytorch_model.bin"

# HF class-name suffix <-> our head name.
ARCHITECTURE_SUFFIXES = {
    "Model": "base",
    "ForPreTraining": "pretraining",
    "ForMaskedLM": "masked_lm",
    "ForNextSentencePrediction": "next_sentence",
    "ForSequenceClassification": "sequence_classification",
    "ForMultipleChoice": "multiple_choice",
    "ForTokenClassification": "token_classification",
    "ForQuestionAnswering": "question_answering",
}
_CLASS_PREFIX = {"squeezebert": "SqueezeBert", "mobilebert": "MobileBert"}
# HF has no SqueezeBERT pretraining or NSP class; the published checkpoint is a masked LM
# that also carries the SOP head.
_SQUEEZEBERT_FALLBACK = {"pretraining": "masked_lm", "next_sentence": "masked_lm"}


def head_from_architectures(architectures: list[str] | None) -> str:
    """Our head name for the first HF architecture name (`base` when there is none)."""
    if not architectures:
        return "base"
    name = architectures[0]
    for suffix, head in sorted(ARCHITECTURE_SUFFIXES.items(), key=lambda kv: -len(kv[0])):
        if name.endswith(suffix):
            return head
    raise ValueError(f"architectures: unsupported HF class {name!r}; pass head= explicitly")


def architecture_name(config: EncoderConfig, head: str) -> str:
    """The HF class name transformers should build for our `head`."""
    if config.model_type == "squeezebert":
        head = _SQUEEZEBERT_FALLBACK.get(head, head)
    suffix = {v: k for k, v in ARCHITECTURE_SUFFIXES.items()}[head]
    return _CLASS_PREFIX[config.model_type] + suffix


def head_of(model: nnx.Module) -> str:
    """The `HEADS` name of a model instance."""
    for name, cls in HEADS.items():
        if type(model) is cls:
            return name
    return "base"


def read_config(path: str) -> dict[str, Any]:
    file = os.path.join(path, CONFIG_NAME)
    if not os.path.isfile(file):
        raise FileNotFoundError(f"{file}: no config.json; is {path!r} an HF model directory?")
    with open(file, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{file}:{e.lineno}: invalid JSON ({e.msg})") from e


def read_weights(path: str) -> tuple[dict[str, np.ndarray], str]:
    """All tensors of an HF directory as float32 NumPy arrays, and the file they came from."""
    from safetensors.numpy import load_file

    single = os.path.join(path, SAFETENSORS_NAME)
    index = os.path.join(path, SAFETENSORS_INDEX_NAME)
    if os.path.isfile(single):
        tensors, source = load_file(single), single
    elif os.path.isfile(index):
        with open(index, encoding="utf-8") as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        tensors = {}
        for shard in shards:
            tensors.update(load_file(os.path.join(path, shard)))
        source = index
    elif os.path.isfile(os.path.join(path, PYTORCH_NAME)):
        source = os.path.join(path, PYTORCH_NAME)
        try:
            import torch
        except ImportError as e:
            raise ImportError(
                f"{source}: reading a PyTorch .bin file needs torch (pip install torch), or "
                "convert it to model.safetensors first"
            ) from e
        state = torch.load(source, map_location="cpu", weights_only=True)
        tensors = {k: v.float().numpy() for k, v in state.items()}
    else:
        raise FileNotFoundError(
            f"{path}: no {SAFETENSORS_NAME}, {SAFETENSORS_INDEX_NAME} or {PYTORCH_NAME}"
        )
    return {k: np.asarray(v, dtype=np.float32) for k, v in tensors.items()}, source


def from_hf_pretrained(
    path: str, head: str | None = None, *, seed: int = 0, **config_overrides: Any
) -> nnx.Module:
    """Loads an HF directory into our model.

    `head` defaults to the one named by config.json's `architectures`. Parameters the file
    lacks (e.g. a new classifier) keep their fresh initialisation and are logged, like HF.
    `config_overrides` set model config fields (e.g. `num_labels=3`, `scan_layers=True`).
    """
    raw = read_config(path)
    config = config_from_dict({**raw, **config_overrides}, strict=False)
    head = head or head_from_architectures(raw.get("architectures"))
    model = build_model(config, head, seed=seed)
    tensors, source = read_weights(path)
    load_hf_state_dict(model, tensors, source=source, warn=log.warning)
    return model


def save_hf_pretrained(model: nnx.Module, path: str) -> None:
    """Writes config.json + model.safetensors that transformers' `from_pretrained` loads."""
    from safetensors.numpy import save_file

    config: EncoderConfig = model.config
    if (
        isinstance(config, MobileBertConfig)
        and config.use_bottleneck
        and (
            config.attention_input_sizes[0] == config.hidden_size
            and config.hidden_size != config.true_hidden_size
        )
    ):
        log.warning(
            "%s: Q/K read the %d-wide block input (the IB-BERT teacher); transformers' "
            "MobileBertModel cannot build this, only this library can load the export",
            path,
            config.hidden_size,
        )
    os.makedirs(path, exist_ok=True)
    hf_config = config.to_hf_dict()
    hf_config["architectures"] = [architecture_name(config, head_of(model))]
    hf_config["tie_word_embeddings"] = True
    with open(os.path.join(path, CONFIG_NAME), "w", encoding="utf-8") as f:
        json.dump(hf_config, f, indent=2, sort_keys=True)
    save_file(to_hf_state_dict(model), os.path.join(path, SAFETENSORS_NAME), {"format": "pt"})
