"""What each stage minimises, written on the student-with-teacher model, and the held-out
evaluation: stage 1's gated layer-wise transfer, stage 2's pretraining distillation (plus
every layer's transfer terms for the auxiliary strategy). The loss math is in `losses`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from squeezemobile_jax.data import PretrainingLoader
from squeezemobile_jax.models import with_layer_list
from squeezemobile_jax.tasks.distill import losses
from squeezemobile_jax.tasks.distill.model import StudentWithTeacher
from squeezemobile_jax.tasks.distill.schedule import DistillPlan, layer_gates, layer_lr_scales
from squeezemobile_jax.tasks.pretrain import (
    masked_lm_terms,
    next_sentence_terms,
    pretraining_metrics,
)
from squeezemobile_jax.training import summed_metrics

Batch = Mapping[str, jax.Array]


def _encode_both(model: StudentWithTeacher, batch: Batch) -> tuple[Any, Any]:
    """Trunks of student and teacher, deterministic, with hidden states and scores."""
    args = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    kw = dict(deterministic=True, output_hidden_states=True, output_attention_scores=True)
    return model.backbone(*args, **kw), model.teacher.backbone(*args, **kw)


def _layer_terms(student_enc: Any, teacher_enc: Any, mask: jax.Array) -> dict[str, jax.Array]:
    return losses.layer_transfer_terms(
        teacher_enc.hidden_states[1:],
        student_enc.hidden_states[1:],
        teacher_enc.attention_scores,
        student_enc.attention_scores,
        mask,
    )


def per_layer_metrics(terms: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """{"fmt/layer_01": ..., "at/layer_01": ...}: every term of every layer (1-based)."""
    return {
        f"{name}/layer_{i + 1:02d}": values[i]
        for name, values in terms.items()
        for i in range(values.shape[0])
    }


def make_stage1_loss(plan: DistillPlan, factors: Mapping[str, float]) -> Callable:
    """loss_fn(model, batch, rng, step) of layer-wise knowledge transfer."""

    def loss_fn(model: StudentWithTeacher, batch: Batch, rng: jax.Array, *, step: jax.Array):
        del rng  # the student has no dropout here, the teacher never
        student, teacher = _encode_both(model, batch)
        terms = _layer_terms(student, teacher, batch["attention_mask"])
        gates = layer_gates(step, plan)
        loss = losses.layer_transfer_loss(terms, gates, factors)
        gated = jnp.maximum(jnp.sum(gates), 1.0)  # no layer is gated at step 0
        active = {k: jnp.sum(gates * v) / gated for k, v in terms.items()}
        phase = jnp.asarray(0.0)
        if plan.strategy == "progressive":
            phase = (jnp.minimum(step // plan.steps_per_layer, plan.num_layers - 1) + 1) * 1.0
        metrics = {
            "loss": loss,
            "stage": jnp.asarray(1.0),
            "phase": phase,
            "layer_lr_scale": jnp.max(layer_lr_scales(step, plan)),
            **active,
            **per_layer_metrics(terms),
        }
        return loss, metrics

    return loss_fn


def make_stage2_loss(
    plan: DistillPlan, factors: Mapping[str, float], stage2: Mapping[str, Any]
) -> Callable:
    """loss_fn(model, batch, rng, step) of pretraining distillation (+ transfer if AKT)."""
    auxiliary = plan.strategy == "auxiliary"
    dropout = bool(stage2["student_dropout"])

    def loss_fn(model: StudentWithTeacher, batch: Batch, rng: jax.Array, *, step: jax.Array):
        args = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        kw = dict(
            masked_lm_positions=batch["masked_lm_positions"],
            output_hidden_states=auxiliary,
            output_attention_scores=auxiliary,
        )
        student = model(*args, deterministic=not dropout, dropout_rng=rng, **kw)
        teacher = model.teacher(*args, deterministic=True, **kw)
        sums = {
            **masked_lm_terms(student.prediction_logits, batch),
            **next_sentence_terms(student.seq_relationship_logits, batch["next_sentence_labels"]),
            **losses.distillation_mlm_terms(
                student.prediction_logits,
                teacher.prediction_logits,
                batch,
                alpha=float(stage2["alpha"]),
                temperature=float(stage2["temperature"]),
            ),
        }
        metrics = {**pretraining_metrics(sums), **_distillation_metrics(sums)}
        loss = metrics["pd_mlm_loss"] + metrics["nsp_loss"]
        if auxiliary:
            terms = _layer_terms(student.encoder, teacher.encoder, batch["attention_mask"])
            kt = losses.layer_transfer_loss(terms, layer_gates(step, plan), factors)
            loss = loss + kt
            metrics.update(kt_loss=kt, **per_layer_metrics(terms))
        metrics.update(loss=loss, stage=jnp.asarray(2.0), phase=jnp.asarray(0.0))
        return loss, metrics

    return loss_fn


def _distillation_metrics(sums: Mapping[str, Any]) -> dict[str, Any]:
    n = jnp.maximum(sums["mlm_count"], 1.0)
    return {
        "pd_mlm_loss": sums["pd_nll"] / n,
        "kd_loss": sums["kd_nll"] / n,
        "teacher_mlm_accuracy": sums["teacher_correct"] / n,
    }


def make_eval_fn(loader: PretrainingLoader, stage2: Mapping[str, Any]) -> Callable:
    """eval_fn(model, mesh, step): the student's MLM/NSP metrics on the held-out split, the
    teacher's MLM accuracy, and every layer's transfer terms (token-weighted means)."""

    def sums_fn(model: StudentWithTeacher, batch: Batch) -> dict[str, jax.Array]:
        args = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        kw = dict(
            masked_lm_positions=batch["masked_lm_positions"],
            deterministic=True,
            output_hidden_states=True,
            output_attention_scores=True,
        )
        student, teacher = model(*args, **kw), model.teacher(*args, **kw)
        tokens = jnp.sum(losses.token_weights(batch["attention_mask"]))
        terms = _layer_terms(student.encoder, teacher.encoder, batch["attention_mask"])
        return {
            **masked_lm_terms(student.prediction_logits, batch),
            **next_sentence_terms(student.seq_relationship_logits, batch["next_sentence_labels"]),
            **losses.distillation_mlm_terms(
                student.prediction_logits,
                teacher.prediction_logits,
                batch,
                alpha=float(stage2["alpha"]),
                temperature=float(stage2["temperature"]),
            ),
            **{k: v * tokens for k, v in per_layer_metrics(terms).items()},
            "tokens": tokens,
        }

    evaluate = summed_metrics(sums_fn)

    def eval_fn(model: nnx.Module, mesh: jax.sharding.Mesh, step: int) -> dict[str, float]:
        sums = evaluate(with_layer_list(model), loader.eval_batches(), mesh)
        if not sums:
            return {}
        out = {**pretraining_metrics(sums), **_distillation_metrics(sums)}
        tokens = max(sums["tokens"], 1.0)
        out.update({k: v / tokens for k, v in sums.items() if "/layer_" in k})
        return {k: float(v) for k, v in out.items()}

    return eval_fn
