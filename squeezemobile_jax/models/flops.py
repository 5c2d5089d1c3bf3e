"""Model FLOPs (matmuls only, 2 per multiply-add), for MFU and benchmarks, and the matmuls of a
traced program (`dot_general_equations`)."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import jax.extend
from flax import nnx

from squeezemobile_jax.models.config import EncoderConfig, MobileBertConfig
from squeezemobile_jax.models.heads import build_model


@functools.lru_cache(maxsize=32)
def _dense_weights(config: EncoderConfig) -> tuple[int, int]:
    """(matmul weights per layer, matmul weights in the embeddings) of the trunk."""
    model = nnx.eval_shape(lambda: build_model(config))

    def kernels(module) -> int:
        return sum(
            x.size
            for path, x in nnx.to_flat_state(nnx.state(module, nnx.Param))
            if path[-1] == "kernel"
        )

    return kernels(model.layers) // config.num_hidden_layers, kernels(model.embeddings)


def forward_flops_per_example(config: EncoderConfig, seq_len: int, mlm_positions: int) -> float:
    """Trunk + MLM head (at `mlm_positions` positions) + NSP forward FLOPs for one sequence."""
    per_layer, embedding = _dense_weights(config)
    width = config.true_hidden_size if isinstance(config, MobileBertConfig) else config.hidden_size
    attention = 2 * 2 * seq_len * seq_len * width  # QK^T and probs @ V
    trunk = config.num_hidden_layers * (2 * seq_len * per_layer + attention)
    trunk += 2 * seq_len * embedding
    h = config.hidden_size
    mlm = 2 * mlm_positions * (h * h + config.vocab_size * h)
    # MobileBERT's students pool without the dense layer (classifier_activation False).
    pooler = 0 if isinstance(config, MobileBertConfig) and not config.classifier_activation else h
    pooler_nsp = 2 * (pooler * h + 2 * h)
    return float(trunk + mlm + pooler_nsp)


def training_flops_per_example(config: EncoderConfig, seq_len: int, mlm_positions: int) -> float:
    """Forward + backward (3x forward) FLOPs of one pretraining example."""
    return 3.0 * forward_flops_per_example(config, seq_len, mlm_positions)


def dot_general_equations(
    jaxpr: jax.extend.core.Jaxpr, times: int = 1
) -> Iterator[tuple[jax.extend.core.JaxprEqn, int]]:
    """The matmuls of `jaxpr` in program order: each `dot_general` equation of it and of its
    sub-jaxprs (jit, scan, remat and custom-derivative bodies), with how many times one call
    runs it (a scan body's equations `length` times; other sub-jaxprs count once)."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            yield eqn, times
        repeats = eqn.params.get("length", 1) if eqn.primitive.name == "scan" else 1
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            yield from dot_general_equations(sub, times * repeats)
