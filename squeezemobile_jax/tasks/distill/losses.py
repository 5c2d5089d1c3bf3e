"""MobileBERT's distillation losses: pure functions, computed in float32.

Layer-wise knowledge transfer (stage 1). For each layer l = 1..L, averaged over the real
(unpadded) tokens t of the batch, with T_l, S_l the teacher's and the student's block outputs
[B, T, H] and A^T_l, A^S_l their masked pre-softmax attention scores [B, N, T, T]:

    feature map  FMT_l = mean_t mean_h (LN(T_l) - LN(S_l))^2     LN: layer norm without params
    attention    AT_l  = mean_t mean_n -sum_k softmax(A^T_l)_k log softmax(A^S_l)_k
    mean         MM_l  = mean_t (mu(T_l) - mu(S_l))^2            mu: mean over the H features
    variance     VM_l  = mean_t |var(T_l) - var(S_l)|            var: variance over H

The keys k of the attention term run over real tokens only. The attention term is the
cross-entropy of the original code (KL divergence plus the teacher's entropy, a constant),
and every term compares layer l of the student with layer l of the teacher (not with the
statistics of all teacher layers, a slip of the TF1 code). Unlike the TF code, padding
positions are left out of every average; with full-length packed sequences the two agree.
`layer_transfer_loss` weights the terms: sum_k factor_k / L * sum_l gate_l * term_k,l.

Pretraining distillation (stage 2), at the P masked positions with weights w [B, P]:
the target is alpha * onehot(label) + (1 - alpha) * softmax(teacher_logits / temperature),
the loss the weighted mean of its cross-entropy with the student's softmax.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

Array = jax.Array

LAYER_TERMS = ("fmt", "at", "mean", "var")
LN_EPS = 1e-12  # epsilon of the TF layer norm the original applies to both sides


def token_weights(attention_mask: Array) -> Array:
    """attention_mask [B, T] (1 = real token) -> float32 weights [B, T]."""
    return (attention_mask > 0).astype(jnp.float32)


def masked_token_mean(values: Array, weights: Array) -> Array:
    """values [L, B, T], weights [B, T] -> [L]: weighted mean over the tokens of each layer."""
    total = jnp.sum(values * weights[None], axis=(1, 2))
    return total / jnp.maximum(jnp.sum(weights), 1.0)


def parameter_free_layer_norm(x: Array, eps: float = LN_EPS) -> Array:
    """(x - mean) / sqrt(var + eps) over the last axis, in float32."""
    x = x.astype(jnp.float32)
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps)


def feature_map_transfer(teacher: Array, student: Array, attention_mask: Array) -> Array:
    """FMT per layer. teacher, student: [L, B, T, H] block outputs; mask [B, T] -> [L]."""
    diff = parameter_free_layer_norm(teacher) - parameter_free_layer_norm(student)
    return masked_token_mean(jnp.mean(jnp.square(diff), axis=-1), token_weights(attention_mask))


def attention_transfer(teacher: Array, student: Array, attention_mask: Array) -> Array:
    """AT per layer. teacher, student: [L, B, N, T, T] masked pre-softmax scores -> [L]."""
    keys = (attention_mask > 0)[None, :, None, None, :]  # [1, B, 1, 1, T]
    p_teacher = jax.nn.softmax(teacher.astype(jnp.float32), axis=-1)
    log_p_student = jax.nn.log_softmax(student.astype(jnp.float32), axis=-1)
    ce = -jnp.sum(jnp.where(keys, p_teacher * log_p_student, 0.0), axis=-1)  # [L, B, N, T]
    return masked_token_mean(jnp.mean(ce, axis=2), token_weights(attention_mask))


def _moments(x: Array) -> tuple[Array, Array]:
    x = x.astype(jnp.float32)
    mean = jnp.mean(x, axis=-1)
    return mean, jnp.mean(jnp.square(x - mean[..., None]), axis=-1)


def mean_matching(teacher: Array, student: Array, attention_mask: Array) -> Array:
    """MM per layer: squared gap of the per-token feature means. [L, B, T, H] -> [L]."""
    gap = _moments(teacher)[0] - _moments(student)[0]
    return masked_token_mean(jnp.square(gap), token_weights(attention_mask))


def variance_matching(teacher: Array, student: Array, attention_mask: Array) -> Array:
    """VM per layer: absolute gap of the per-token feature variances. [L, B, T, H] -> [L]."""
    gap = _moments(teacher)[1] - _moments(student)[1]
    return masked_token_mean(jnp.abs(gap), token_weights(attention_mask))


def layer_transfer_terms(
    teacher_hidden: Array,
    student_hidden: Array,
    teacher_scores: Array,
    student_scores: Array,
    attention_mask: Array,
) -> dict[str, Array]:
    """All four terms per layer: {"fmt", "at", "mean", "var"} -> [L] each.

    hidden: [L, B, T, H] block outputs (the embedding output left out); scores:
    [L, B, N, T, T]; attention_mask: [B, T].
    """
    teacher_hidden = jax.lax.stop_gradient(teacher_hidden)
    teacher_scores = jax.lax.stop_gradient(teacher_scores)
    return {
        "fmt": feature_map_transfer(teacher_hidden, student_hidden, attention_mask),
        "at": attention_transfer(teacher_scores, student_scores, attention_mask),
        "mean": mean_matching(teacher_hidden, student_hidden, attention_mask),
        "var": variance_matching(teacher_hidden, student_hidden, attention_mask),
    }


def layer_transfer_loss(
    terms: Mapping[str, Array], gates: Array, factors: Mapping[str, float]
) -> Array:
    """sum over terms k of factor_k / L * sum_l gates_l * terms[k]_l. gates: [L] (0 or 1)."""
    num_layers = gates.shape[0]
    total = jnp.zeros((), jnp.float32)
    for name in LAYER_TERMS:
        factor = float(factors.get(name, 0.0))
        if factor:
            total = total + factor / num_layers * jnp.sum(gates * terms[name])
    return total


def distillation_mlm_terms(
    student_logits: Array,
    teacher_logits: Array,
    batch: Mapping[str, Array],
    *,
    alpha: float,
    temperature: float = 1.0,
) -> dict[str, Array]:
    """Weighted sums at the masked positions. logits [B, P, V]; batch: masked_lm_ids,
    masked_lm_weights [B, P].

    pd_nll: cross-entropy with alpha * onehot + (1 - alpha) * softmax(teacher / temperature);
    kd_nll: cross-entropy with the teacher's softmax alone; teacher_correct: teacher top-1 hits.
    Divide by sum(masked_lm_weights) for means.
    """
    weights = batch["masked_lm_weights"].astype(jnp.float32)
    labels = batch["masked_lm_ids"]
    teacher_logits = jax.lax.stop_gradient(teacher_logits.astype(jnp.float32))
    soft = jax.nn.softmax(teacher_logits / temperature, axis=-1)
    onehot = jax.nn.one_hot(labels, student_logits.shape[-1], dtype=jnp.float32)
    target = alpha * onehot + (1.0 - alpha) * soft
    log_p = jax.nn.log_softmax(student_logits.astype(jnp.float32), axis=-1)
    teacher_hit = (jnp.argmax(teacher_logits, -1) == labels).astype(jnp.float32)
    return {
        "pd_nll": jnp.sum(-jnp.sum(target * log_p, axis=-1) * weights),
        "kd_nll": jnp.sum(-jnp.sum(soft * log_p, axis=-1) * weights),
        "teacher_correct": jnp.sum(teacher_hit * weights),
    }
