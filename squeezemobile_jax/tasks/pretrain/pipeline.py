"""The pretraining run: the workdir's tokenizer, the model (fresh or `config.init`), one
loop call per phase over one global step counter."""

from __future__ import annotations

import copy
import logging

import jax
import ml_collections
from flax import nnx

from squeezemobile_jax import fileio
from squeezemobile_jax.data import PretrainingLoader, WordPieceTokenizer, trained_tokenizer
from squeezemobile_jax.models import build_model
from squeezemobile_jax.tasks.common import (
    CHECKPOINT_DIR,
    load_pretrained,
    model_config_from_section,
    tokenizer_of,
    workdir_tokenizer,
    write_model_spec,
)
from squeezemobile_jax.tasks.pretrain.config import phase_plan
from squeezemobile_jax.tasks.pretrain.losses import HEAD, make_task
from squeezemobile_jax.training import TrainResult, maybe_initialize_distributed, train_and_evaluate
from squeezemobile_jax.training.checkpoint import Checkpointer

log = logging.getLogger(__name__)


def build_tokenizer(config: ml_collections.ConfigDict, workdir: str) -> WordPieceTokenizer:
    """The run's tokenizer: the one saved in the workdir, else `config.tokenizer.path`, else
    the one stored with `config.init`, else one trained on the corpus (saved in the workdir)."""

    def make() -> WordPieceTokenizer:
        given = tokenizer_of(config.get("init"), config.tokenizer.get("path"), required=False)
        if given is not None:
            return given
        return trained_tokenizer(
            config.data.corpus,
            int(config.tokenizer.vocab_size),
            cache_dir=config.data.get("cache_dir"),
        )

    return workdir_tokenizer(workdir, make)


def _latest_step(workdir: str) -> int:
    ckpt_dir = fileio.join(workdir, CHECKPOINT_DIR)
    if not fileio.exists(ckpt_dir):
        return 0
    ckpt = Checkpointer(ckpt_dir, max_to_keep=None, async_save=False)
    try:
        return ckpt.latest_step() or 0
    finally:
        ckpt.close()


def build_pretraining_model(config: ml_collections.ConfigDict, vocab_size: int) -> nnx.Module:
    """The model to train: from `config.init` when given, else fresh from `config.model`."""
    if config.get("init"):
        return load_pretrained(config.init, HEAD, seed=config.seed)
    model_config = model_config_from_section(config.model, vocab_size=vocab_size)
    return build_model(model_config, HEAD, seed=config.seed)


def run(config: ml_collections.ConfigDict, workdir: str) -> TrainResult:
    """Pretrains in `workdir`, phase after phase; resumes from the newest checkpoint."""
    maybe_initialize_distributed(config)
    tokenizer = build_tokenizer(config, workdir)
    plan = phase_plan(config)
    total_steps = plan[-1]["end"]
    done = _latest_step(workdir)
    result = None
    for i, phase in enumerate(plan):
        if done >= phase["end"] and i < len(plan) - 1:
            continue
        phase_config = copy.deepcopy(config)
        with phase_config.unlocked():
            phase_config.train.num_steps = phase["end"]
            if not phase_config.optimizer.schedule.get("decay_steps"):
                phase_config.optimizer.schedule.decay_steps = total_steps
            for key, value in phase["data"].items():
                phase_config.data[key] = value
        loader = PretrainingLoader.from_config(
            phase_config.data,
            tokenizer=tokenizer,
            seed=int(config.seed),
            show_progress=jax.process_index() == 0,
        )
        model = build_pretraining_model(config, tokenizer.vocab_size)
        write_model_spec(workdir, model.config, HEAD)
        log.info(
            "Phase %d/%d: steps %d-%d, length %d, global batch %d",
            i + 1,
            len(plan),
            phase["start"],
            phase["end"],
            loader.options.max_seq_length,
            loader.global_batch_size,
        )
        start = phase["start"]
        result = train_and_evaluate(
            phase_config,
            workdir,
            make_task(loader, model.config),
            model,
            lambda step, loader=loader, start=start: loader.iterator(step - start),
        )
        if result.preempted:
            break
    return result
