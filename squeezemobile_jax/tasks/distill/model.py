"""The student and its teacher as one module, and what the student takes from the teacher.

`StudentWithTeacher` *is* the student's pretraining model (calling it runs the student) and
holds the teacher as its `teacher` attribute. Training with `TRAINABLE` as the loop's filter
trains the student's parameters only; the teacher's are part of the loop's frozen state, so
they stay bitwise fixed and are not checkpointed. The trainable tree has the plain student's
paths (backbone/..., mlm/..., seq_relationship/...), so a distillation workdir is read like
a `train.py` workdir (`load_pretrained(workdir, head)`).

`init_student_from_teacher` copies, as the original's `init_embedding=True`, every student
parameter outside the transformer blocks whose path and shape match the teacher's: the
embedding tables and projection, the pooler, the MLM head and the NSP classifier. The
embedding norm is copied only when both models use the same normalization type. A teacher
LayerNorm's scale and bias act on normalised vectors; in a student NoNorm they would scale
raw embeddings instead, so the original leaves the student's NoNorm at identity (the TF2
re-implementation copies it; `copy_mismatched_embedding_norm=True` does that).
"""

from __future__ import annotations

import logging

import ml_collections
from flax import nnx

from squeezemobile_jax.models import EncoderConfig, PreTrainingModel, build_model
from squeezemobile_jax.tasks.common import (
    copy_matching_params,
    load_pretrained,
    model_config_from_section,
)
from squeezemobile_jax.tasks.pretrain import HEAD

log = logging.getLogger(__name__)

TRAINABLE = nnx.All(nnx.Param, nnx.Not(nnx.PathContains("teacher")))
EMBEDDING_NORM = ("backbone", "embeddings", "norm")
BLOCKS = ("backbone", "layers")


class StudentWithTeacher(PreTrainingModel):
    """The student pretraining model (its own submodules, no copies) plus a `teacher`."""

    def __init__(self, student: PreTrainingModel, teacher: PreTrainingModel):
        # Adopt the student's modules instead of initialising new ones.
        self.config = student.config
        self.backbone = student.backbone
        self.classifier_dropout = student.classifier_dropout
        self.mlm = student.mlm
        self.seq_relationship = student.seq_relationship
        self.teacher = teacher


def check_compatible(teacher: EncoderConfig, student: EncoderConfig) -> None:
    """Layer-to-layer transfer needs equal layer counts, heads, widths and vocabularies."""
    for field in ("num_hidden_layers", "num_attention_heads", "hidden_size", "vocab_size"):
        t, s = getattr(teacher, field), getattr(student, field)
        if t != s:
            raise ValueError(
                f"config.model.{field}={s} but the teacher has {field}={t}; layer-wise "
                "distillation maps student layer l to teacher layer l and needs them equal"
            )


def _norm_type(config: EncoderConfig) -> str:
    return getattr(config, "normalization_type", "layer_norm")


def init_student_from_teacher(
    student: PreTrainingModel,
    teacher: PreTrainingModel,
    *,
    copy_mismatched_embedding_norm: bool = False,
) -> dict[str, list[str]]:
    """Copies the teacher's non-block parameters into `student` (see the module docstring).

    Returns {"copied", "fresh", "skipped_shape"}: '/'-joined student parameter paths.
    """
    same_norm = _norm_type(teacher.config) == _norm_type(student.config)

    def keep(path: tuple) -> bool:
        norm_skipped = tuple(path[:3]) == EMBEDDING_NORM and not (
            same_norm or copy_mismatched_embedding_norm
        )
        return tuple(path[:2]) == BLOCKS or norm_skipped

    report = copy_matching_params(teacher, student, keep=keep)
    log.info(
        "Student initialised from the teacher: %d parameters copied; kept: %d (blocks and %s); "
        "shape differs: %s",
        len(report["copied"]),
        len(report["fresh"]),
        [k for k in report["fresh"] if not k.startswith("backbone/layers/")] or "nothing else",
        report["skipped_shape"] or "none",
    )
    return report


def load_teacher(config: ml_collections.ConfigDict) -> nnx.Module:
    """The teacher's pretraining model from `config.teacher` (workdir or HF directory)."""
    if not config.get("teacher"):
        raise ValueError(
            "config.teacher is not set: give the teacher's train.py workdir or HF directory, "
            "e.g. --config.teacher=workdirs/ib_bert"
        )
    overrides = {}
    if config.distill.get("teacher_compute_dtype"):
        overrides["compute_dtype"] = config.distill.teacher_compute_dtype
    return load_pretrained(config.teacher, HEAD, seed=int(config.seed), **overrides)


def build_student_with_teacher(
    config: ml_collections.ConfigDict, teacher: nnx.Module, vocab_size: int
) -> StudentWithTeacher:
    """A fresh student from `config.model`, initialised from the teacher, holding it."""
    student_config = model_config_from_section(config.model, vocab_size=vocab_size)
    check_compatible(teacher.config, student_config)
    student = build_model(student_config, HEAD, seed=int(config.seed))
    init_student_from_teacher(
        student,
        teacher,
        copy_mismatched_embedding_norm=bool(config.distill.copy_mismatched_embedding_norm),
    )
    return StudentWithTeacher(student, teacher)
