"""The pretraining config: every field a `train.py` pretraining run reads, MobileBERT's
recipe, and the phase plan (one or more phases of their own data settings in one workdir)."""

from __future__ import annotations

from typing import Any

import ml_collections
from ml_collections import config_dict

from squeezemobile_jax.tasks.common import model_section
from squeezemobile_jax.training import training_defaults

PHASE_DATA_FIELDS = (
    "max_seq_length",
    "global_batch_size",
    "max_predictions_per_seq",
    "eval_batch_size",
)


def corpus_section(**fields: Any) -> ml_collections.ConfigDict:
    """A `config.data.corpus` section with every `CorpusSpec` field (built-in by default), so
    each can be set from the command line, e.g. `--config.data.corpus.kind=text`."""
    section = ml_collections.ConfigDict(
        {
            "kind": "builtin",
            "paths": (),
            "name": config_dict.placeholder(str),
            "config": config_dict.placeholder(str),
            "split": "train",
            "text_column": "text",
            "data_files": (),
            "rows": "documents",
            "sentence_split": "lines",
            "encoding_errors": "strict",
            "hf_cache_dir": config_dict.placeholder(str),
        }
    )
    section.update(fields)
    return section


def default_config() -> ml_collections.ConfigDict:
    """Every field a pretraining config has; experiment files in configs/ change some."""
    c = training_defaults()
    c.task = "pretrain"
    c.workdir = ""  # default for --workdir
    c.init = ""  # workdir or HF directory to continue from
    c.model = model_section("mobilebert-test")
    c.tokenizer = ml_collections.ConfigDict({"path": "", "vocab_size": 8192})
    c.data = ml_collections.ConfigDict(
        {
            "corpus": corpus_section(),
            "max_seq_length": 128,
            "max_predictions_per_seq": 20,
            "masked_lm_prob": 0.15,
            "short_seq_prob": 0.1,
            "task": "nsp",
            "whole_word_masking": False,
            "global_batch_size": 256,
            "eval_documents": 0,
            "eval_batch_size": config_dict.placeholder(int),
            "cache_dir": config_dict.placeholder(str),
            "num_proc": 1,
            "num_workers": 0,
        }
    )
    c.phases = ()
    return c


def use_mobilebert_recipe(c: ml_collections.ConfigDict, global_batch_size: int) -> None:
    """Sets MobileBERT's pretraining data and LAMB settings on config `c` in place.

    English Wikipedia, NSP, sequences of 512 with 20 masked positions, 2000 held-out documents,
    batches made by 8 worker processes per host, FSDP, LAMB 1.5e-3 with 10k warmup decaying to
    1e-4 of the peak. The teacher config and the distillation configs share it, so the
    distilled student holds out the teacher's documents.
    """
    c.data.corpus = corpus_section(
        kind="hf", name="wikimedia/wikipedia", config="20231101.en", sentence_split="punctuation"
    )
    c.data.task = "nsp"
    c.data.max_seq_length = 512
    c.data.max_predictions_per_seq = 20
    c.data.global_batch_size = global_batch_size
    c.data.eval_documents = 2000
    c.data.eval_batch_size = 512
    c.data.num_proc = 16
    c.data.num_workers = 8
    c.train.log_every = 100
    c.train.eval_every = 10_000
    c.checkpoint.every_steps = 2000
    c.mesh.fsdp = True
    c.optimizer.name = "lamb"
    c.optimizer.learning_rate = 1.5e-3
    c.optimizer.schedule.warmup_steps = 10_000
    c.optimizer.schedule.end_ratio = 1e-4
    c.optimizer.stacked_params = (("/layers/", 1),)


def phase_plan(config: ml_collections.ConfigDict) -> list[dict[str, Any]]:
    """[{end_step, num_steps, data overrides}] for each phase, cumulative end steps."""
    phases = config.get("phases") or [{"num_steps": config.train.num_steps}]
    plan, end = [], 0
    for i, phase in enumerate(phases):
        phase = dict(phase)
        steps = phase.pop("num_steps", None)
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"config.phases[{i}].num_steps must be a positive integer")
        unknown = sorted(set(phase) - set(PHASE_DATA_FIELDS))
        if unknown:
            raise ValueError(
                f"config.phases[{i}]: unknown field(s) {unknown}; allowed: num_steps, "
                f"{', '.join(PHASE_DATA_FIELDS)}"
            )
        end += steps
        plan.append({"start": end - steps, "end": end, "data": phase})
    return plan
