"""MobileBERT distillation (`config.task = "distill"`): layer-wise knowledge transfer from a
teacher, then pretraining distillation, in one resumable run.

    python distill.py --config configs/mobilebert_distill.py --config.teacher=DIR --workdir W

The teacher (`config.teacher`: a `train.py` workdir or an HF directory) runs in inference
mode (no dropout, no gradients, `distill.teacher_compute_dtype`) on the student's batch.
Stages, phases and learning-rate scales are described in `schedule`, the loss math in
`losses`, what each stage minimises in `objectives`, what the student takes from the teacher
in `model`, the config fields in `config` and the stage-by-stage run in `pipeline`.

  stage 1  sum of the layer-wise transfer losses (no MLM/NSP), student dropout off;
           LAMB at `distill.stage1.learning_rate`, constant, times each layer's scale;
           embeddings and heads (copied from the teacher) fixed.
  stage 2  alpha * MLM + (1 - alpha) * KD on the masked positions (one cross-entropy with
           the mixed target) + NSP on the student; everything trainable; `config.optimizer`
           (LAMB, warmup + linear decay over stage 2). The auxiliary strategy adds the
           transfer losses of every layer here. The temperature divides the teacher's
           logits (the original multiplies the teacher's last hidden states before its MLM
           head instead; both are the identity at its value of 1).

One loop call per stage, over one global step counter; `train.num_steps` is derived (leave
it unset). At the stage boundary the optimizer is rebuilt: its moments restart from zero
and the stage-2 schedule counts from the first stage-2 step (`schedule.restart_at`),
a pure function of the step, so the run resumes exactly anywhere. Every checkpoint's
metadata holds the stage and phase of its last step and the plan; a restart on the same
workdir checks the plan and goes on at the same stage, phase (layer) and step.

The workdir reads like a `train.py` workdir of the student (`model.json`, `tokenizer/`,
checkpoints of the student's parameters only): fine-tune from it with `--config.init=W`.

Config fields beyond `pretrain.default_config()` (whose `init` and `phases` are dropped and
whose `tokenizer` is just `path`, default: the teacher's tokenizer):
  teacher                         train.py workdir or HF directory of the teacher (required)
  distill.strategy                'progressive' | 'joint' | 'auxiliary'
  distill.teacher_compute_dtype   None (as saved) | 'float32' | 'bfloat16'
  distill.copy_mismatched_embedding_norm   copy a LayerNorm embedding norm into a NoNorm
  distill.factors                 {fmt: 100, at: 1, mean: 5000, var: 5}
  distill.stage1                  steps_per_layer, joint_steps, learning_rate,
                                  layer_lr_multiplier (3), earlier_layer_ratio (0.1),
                                  freeze_earlier_layers (False)
  distill.stage2                  num_steps, alpha (0.5), temperature (1), student_dropout
"""

from squeezemobile_jax.tasks import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "config": (
            "check_config",
            "default_config",
            "mobilebert_recipe",
        ),
        "model": (
            "TRAINABLE",
            "StudentWithTeacher",
            "build_student_with_teacher",
            "check_compatible",
            "init_student_from_teacher",
            "load_teacher",
        ),
        "objectives": (
            "make_eval_fn",
            "make_stage1_loss",
            "make_stage2_loss",
        ),
        "pipeline": (
            "build_distill_tokenizer",
            "run",
        ),
        "schedule": ("DistillPlan",),
    },
)
