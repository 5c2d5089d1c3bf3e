"""Independent references for the tests: transformers' PyTorch models, float64 NumPy attention,
and the inputs both sides share."""

from __future__ import annotations

import numpy as np
import torch
import transformers

from squeezemobile_jax.hub.convert import load_hf_state_dict
from squeezemobile_jax.hub.hf import architecture_name
from squeezemobile_jax.models import EncoderConfig, build_model

torch.set_grad_enabled(False)


def hf_config(config: EncoderConfig):
    """transformers' config object for our config."""
    fields = config.to_hf_dict()
    fields.pop("model_type")
    cls = {
        "squeezebert": transformers.SqueezeBertConfig,
        "mobilebert": transformers.MobileBertConfig,
    }[config.model_type]
    return cls(**fields)


def hf_model(config: EncoderConfig, head: str, seed: int = 0):
    """A transformers model with every parameter randomised (biases and norm scales included,
    so a wrong mapping cannot hide behind zero/one initial values), in eval mode."""
    torch.manual_seed(seed)
    cls = getattr(transformers, architecture_name(config, head))
    hf_cfg = hf_config(config)
    hf_cfg._attn_implementation = "eager"  # attention maps need the eager path
    model = cls(hf_cfg).eval()
    g = torch.Generator().manual_seed(seed + 1)
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=g)
        if name.endswith(("LayerNorm.weight", "layernorm.weight")):
            p.copy_(1.0 + 0.1 * noise)
        elif name.endswith("bias"):
            p.copy_(0.05 * noise)
        else:
            p.copy_(0.05 * noise)
    if config.model_type == "mobilebert":
        # HF builds two of MobileBERT's LayerNorms with PyTorch's default eps (1e-5) instead of
        # config.layer_norm_eps; the original TF model uses one epsilon everywhere, as we do.
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.eps = config.layer_norm_eps
    return model


def state_dict_numpy(model) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}


def ours_from_hf(config: EncoderConfig, head: str, reference, extra=None):
    """Our model with the reference's weights (and `extra` tensors) loaded."""
    ours = build_model(config, head)
    report = load_hf_state_dict(ours, {**state_dict_numpy(reference), **(extra or {})})
    return ours, report


def padded_batch(vocab_size: int, lengths=(12, 9, 5), seed: int = 0):
    """Right-padded input_ids, attention_mask and two-segment token_type_ids: [B, T] int32."""
    rng = np.random.default_rng(seed)
    b, t = len(lengths), max(lengths)
    ids = rng.integers(5, vocab_size, size=(b, t)).astype(np.int32)
    mask = np.zeros((b, t), np.int32)
    types = np.zeros((b, t), np.int32)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
        types[i, n // 2 : n] = 1
    ids[mask == 0] = 0
    return ids, mask, types


def mask_with_holes(mask):
    """The padded batch's mask with kept tokens that do not come first: row 0 loses two
    middle tokens, row 1 is left-padded (its tokens moved to the end), row 2 stays."""
    holes = mask.copy()
    holes[0, 3:5] = 0
    holes[1] = np.roll(mask[1], mask.shape[1] - int(mask[1].sum()))
    return holes


def torch_inputs(ids, mask, types):
    return dict(
        input_ids=torch.from_numpy(ids).long(),
        attention_mask=torch.from_numpy(mask).long(),
        token_type_ids=torch.from_numpy(types).long(),
    )


def numpy_attention(q, k, v, mask):
    """Masked softmax attention in float64: q, k, v [B, T, N, D], mask [B, T]."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    scores = np.einsum("bqnd,bknd->bnqk", q, k) / np.sqrt(q.shape[-1])
    scores = np.where(mask[:, None, None, :] > 0, scores, -np.inf)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    return np.einsum("bnqk,bknd->bqnd", probs, v)
