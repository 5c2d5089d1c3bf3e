"""Parameter name and layout mapping between our NNX models and HF PyTorch state dicts.

Our layer parameters are stacked on a leading layer axis; HF stores one tensor per layer
(`encoder.layers.{i}` for SqueezeBERT, `encoder.layer.{i}` for MobileBERT). Layouts:
Dense kernel [in, out] <-> Linear weight [out, in]; GroupedDense kernel [G, in/G, out/G] <->
Conv1d weight [out, in/G, 1]; MobileBERT's extra MLM columns [V, H-E] <-> [H-E, V].
Pure NumPy: no torch needed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import jax.numpy as jnp
import numpy as np
from flax import nnx

from squeezemobile_jax.models.config import EncoderConfig, MobileBertConfig, SqueezeBertConfig

# HF keys that hold no parameters of their own (tied copies, buffers).
IGNORED_HF_KEYS = re.compile(r"(^|\.)(position_ids|cls\.predictions\.decoder\.(weight|bias))$")

# (our path regex, HF key template): paths are relative to `backbone` for the trunk.
_SQUEEZEBERT_TRUNK = [
    (r"layers\.(query|key|value)\.(kernel|bias)", r"encoder.layers.{i}.attention.\1.\2"),
    (
        r"layers\.(post_attention|intermediate|output)\.(kernel|bias)",
        r"encoder.layers.{i}.\1.conv1d.\2",
    ),
    (r"layers\.(post_attention|output)_norm\.(scale|bias)", r"encoder.layers.{i}.\1.layernorm.\2"),
]
_MOBILEBERT_TRUNK = [
    (
        r"embeddings\.embedding_transformation\.(kernel|bias)",
        r"embeddings.embedding_transformation.\1",
    ),
    (
        r"layers\.bottleneck_(input|attention)\.(kernel|bias)",
        r"encoder.layer.{i}.bottleneck.\1.dense.\2",
    ),
    (
        r"layers\.bottleneck_(input|attention)_norm\.(scale|bias)",
        r"encoder.layer.{i}.bottleneck.\1.LayerNorm.\2",
    ),
    (r"layers\.(query|key|value)\.(kernel|bias)", r"encoder.layer.{i}.attention.self.\1.\2"),
    (r"layers\.attention_output\.(kernel|bias)", r"encoder.layer.{i}.attention.output.dense.\1"),
    (
        r"layers\.attention_output_norm\.(scale|bias)",
        r"encoder.layer.{i}.attention.output.LayerNorm.\1",
    ),
    (r"layers\.output_bottleneck\.(kernel|bias)", r"encoder.layer.{i}.output.bottleneck.dense.\1"),
    (
        r"layers\.output_bottleneck_norm\.(scale|bias)",
        r"encoder.layer.{i}.output.bottleneck.LayerNorm.\1",
    ),
    # Stacked FFNs: all but the last are `ffn.k`, the last is `intermediate` / `output`.
    (r"layers\.ffn\.LAST\.intermediate\.(kernel|bias)", r"encoder.layer.{i}.intermediate.dense.\1"),
    (r"layers\.ffn\.LAST\.output\.(kernel|bias)", r"encoder.layer.{i}.output.dense.\1"),
    (r"layers\.ffn\.LAST\.norm\.(scale|bias)", r"encoder.layer.{i}.output.LayerNorm.\1"),
    (
        r"layers\.ffn\.(\d+)\.intermediate\.(kernel|bias)",
        r"encoder.layer.{i}.ffn.\1.intermediate.dense.\2",
    ),
    (r"layers\.ffn\.(\d+)\.output\.(kernel|bias)", r"encoder.layer.{i}.ffn.\1.output.dense.\2"),
    (r"layers\.ffn\.(\d+)\.norm\.(scale|bias)", r"encoder.layer.{i}.ffn.\1.output.LayerNorm.\2"),
]
_COMMON_TRUNK = [
    (
        r"embeddings\.(word|position|token_type)_embeddings\.embedding",
        r"embeddings.\1_embeddings.weight",
    ),
    (r"embeddings\.norm\.(scale|bias)", r"embeddings.LayerNorm.\1"),
    (r"pooler\.dense\.(kernel|bias)", r"pooler.dense.\1"),
]
_HEADS = [
    (r"mlm\.transform\.(kernel|bias)", r"cls.predictions.transform.dense.\1"),
    (r"mlm\.transform_norm\.(scale|bias)", r"cls.predictions.transform.LayerNorm.\1"),
    (r"mlm\.extra_output_weights", r"cls.predictions.dense.weight"),
    (r"mlm\.bias", r"cls.predictions.bias"),
    (r"seq_relationship\.(kernel|bias)", r"cls.seq_relationship.\1"),
    (r"(classifier|qa_outputs)\.(kernel|bias)", r"\1.\2"),
]


def hf_prefix(config: EncoderConfig) -> str:
    """HF's `base_model_prefix`: where task models keep the trunk."""
    return "transformer" if isinstance(config, SqueezeBertConfig) else "mobilebert"


def _rules(config: EncoderConfig) -> list[tuple[str, str]]:
    family = _SQUEEZEBERT_TRUNK if isinstance(config, SqueezeBertConfig) else _MOBILEBERT_TRUNK
    return family + _COMMON_TRUNK


def _hf_template(path: str, config: EncoderConfig, is_task_model: bool) -> str:
    """HF key for our dotted param path; `{i}` stands for the layer index of stacked params."""
    if isinstance(config, MobileBertConfig):
        last = str(config.num_feedforward_networks - 1)
        path = re.sub(rf"^((?:backbone\.)?layers\.ffn)\.{last}\.", r"\1.LAST.", path)
    trunk_path = path.removeprefix("backbone.") if is_task_model else path
    if not is_task_model or path.startswith("backbone."):
        for pattern, template in _rules(config):
            if re.fullmatch(pattern, trunk_path):
                key = _torch_leaf(re.sub(pattern, template, trunk_path))
                return f"{hf_prefix(config)}.{key}" if is_task_model else key
    else:
        for pattern, template in _HEADS:
            if re.fullmatch(pattern, path):
                return _torch_leaf(re.sub(pattern, template, path))
    raise KeyError(f"no HF name for parameter {path!r}")


def _torch_leaf(key: str) -> str:
    """Our leaf names (kernel, scale) to PyTorch's (weight)."""
    return re.sub(r"\.(kernel|scale)$", ".weight", key)


def _to_hf_layout(path: str, value: np.ndarray) -> np.ndarray:
    """One (unstacked) parameter from our layout to HF's."""
    if path.endswith("extra_output_weights"):
        return value.T
    if path.endswith("kernel"):
        if value.ndim == 3:  # GroupedDense [G, in/G, out/G] -> Conv1d [out, in/G, 1]
            g, cin, cout = value.shape
            return value.transpose(0, 2, 1).reshape(g * cout, cin)[..., None]
        return value.T
    return value


def _from_hf_layout(path: str, value: np.ndarray, ours_shape: tuple[int, ...]) -> np.ndarray:
    """One HF tensor to our (unstacked) layout with shape `ours_shape`."""
    if path.endswith("extra_output_weights"):
        return value.T
    if path.endswith("kernel"):
        if len(ours_shape) == 3:
            g, cin, cout = ours_shape
            return value.reshape(g, cout, cin).transpose(0, 2, 1)
        return value.T
    return value


def _is_stacked(path: str) -> bool:
    return path.startswith(("layers.", "backbone.layers."))


def _flat_params(model: nnx.Module) -> Iterator[tuple[str, nnx.Variable]]:
    for keys, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        yield ".".join(str(k) for k in keys), var


def _layer_keys(template: str, path: str, num_layers: int) -> list[str]:
    if _is_stacked(path):
        return [template.replace("{i}", str(i)) for i in range(num_layers)]
    return [template]


def to_hf_state_dict(model: nnx.Module) -> dict[str, np.ndarray]:
    """Our model's parameters as an HF state dict (float32 NumPy arrays)."""
    config, is_task = _config_of(model)
    out: dict[str, np.ndarray] = {}
    for path, var in _flat_params(model):
        value = np.asarray(var[...], dtype=np.float32)
        keys = _layer_keys(_hf_template(path, config, is_task), path, config.num_hidden_layers)
        slices = list(value) if _is_stacked(path) else [value]
        for key, piece in zip(keys, slices, strict=True):
            out[key] = np.ascontiguousarray(_to_hf_layout(path, piece))
    return out


def load_hf_state_dict(
    model: nnx.Module,
    state_dict: dict[str, np.ndarray],
    *,
    source: str = "state dict",
    warn: Callable[[str], None] | None = None,
) -> dict[str, list[str]]:
    """Copies HF tensors into `model` in place (upcast to float32).

    Raises ValueError naming the key when a trunk tensor does not fit. Returns
    `{"missing": [...], "unexpected": [...], "mismatched": [...]}`: our parameters the file
    lacks (left as initialised, e.g. a fresh classifier), HF keys we do not use, and head
    tensors of another shape (e.g. another label count), which stay initialised.
    """
    config, is_task = _config_of(model)
    state = dict(state_dict)
    if is_task and not any(k.startswith(hf_prefix(config) + ".") for k in state):
        # A bare-trunk checkpoint (HF's *Model) loaded into a task model.
        state = {f"{hf_prefix(config)}.{k}": v for k, v in state.items()}
    if not is_task:
        prefix = hf_prefix(config) + "."
        state = {k.removeprefix(prefix): v for k, v in state.items()}
    used: set[str] = set()
    missing: list[str] = []
    mismatched: list[str] = []
    for path, var in _flat_params(model):
        keys = _layer_keys(_hf_template(path, config, is_task), path, config.num_hidden_layers)
        if not all(k in state for k in keys):
            missing.extend(k for k in keys if k not in state)
            continue
        inner_shape = var.shape[1:] if _is_stacked(path) else var.shape
        pieces = []
        for key in keys:
            piece = _from_hf_layout(path, np.asarray(state[key], dtype=np.float32), inner_shape)
            if piece.shape != tuple(inner_shape) and is_task and not path.startswith("backbone."):
                # A task head of another size (e.g. an MNLI classifier for a binary task)
                # stays freshly initialised, like HF's ignore_mismatched_sizes.
                mismatched.append(key)
                break
            if piece.shape != tuple(inner_shape):
                raise ValueError(
                    f"{source}: {key} has shape {tuple(np.shape(state[key]))}, which does not fit "
                    f"parameter {path} of shape {tuple(inner_shape)}; does config.json match?"
                )
            pieces.append(piece)
            used.add(key)
        if len(pieces) < len(keys):
            continue
        var[...] = jnp.asarray(np.stack(pieces) if _is_stacked(path) else pieces[0])
    unexpected = sorted(
        k for k in state if k not in used and k not in mismatched and not IGNORED_HF_KEYS.search(k)
    )
    if warn is not None:
        if missing:
            warn(
                f"{source}: {len(missing)} parameter(s) not in the file, left initialised: "
                f"{missing[:8]}"
            )
        if unexpected:
            warn(f"{source}: {len(unexpected)} tensor(s) not used: {unexpected[:8]}")
        if mismatched:
            warn(f"{source}: head tensor(s) of another shape left initialised: {mismatched}")
    return {"missing": missing, "unexpected": unexpected, "mismatched": mismatched}


def _config_of(model: nnx.Module) -> tuple[EncoderConfig, bool]:
    """(config, whether `model` is a task model holding the trunk as `backbone`)."""
    return model.config, hasattr(model, "backbone")
