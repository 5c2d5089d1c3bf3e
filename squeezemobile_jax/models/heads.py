"""Task heads on either encoder family.

Every task model holds the trunk as `backbone` and is called with the trunk's arguments
(`input_ids, attention_mask, token_type_ids, deterministic=, dropout_rng=, output_*=`) plus
its own; it returns a `TaskOutput` whose `encoder` field is the trunk's `EncoderOutput`.
Logits are float32.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx

from squeezemobile_jax.models.config import EncoderConfig, MobileBertConfig, SqueezeBertConfig
from squeezemobile_jax.models.dense import Dense
from squeezemobile_jax.models.encoder import Encoder
from squeezemobile_jax.models.layers import LayerNorm
from squeezemobile_jax.models.mobilebert import MobileBertModel
from squeezemobile_jax.models.ops import KeySplitter, activation, dropout, truncated_normal
from squeezemobile_jax.models.squeezebert import SqueezeBertModel
from squeezemobile_jax.models.stacking import EncoderOutput

Array = jax.Array


def build_encoder(config: EncoderConfig, *, rngs: nnx.Rngs) -> Encoder:
    """The trunk for a config: `SqueezeBertModel` or `MobileBertModel`."""
    if isinstance(config, SqueezeBertConfig):
        return SqueezeBertModel(config, rngs=rngs)
    if isinstance(config, MobileBertConfig):
        return MobileBertModel(config, rngs=rngs)
    raise TypeError(f"no encoder for config type {type(config).__name__}")


def gather_positions(sequence: Array, positions: Array) -> Array:
    """sequence [B, T, H], positions [B, P] -> [B, P, H]."""
    return jnp.take_along_axis(sequence, positions[..., None].astype(jnp.int32), axis=1)


@flax.struct.dataclass
class TaskOutput:
    """Head outputs (float32). Unused fields are None.

    logits: classification [B, num_labels], multiple choice [B, C], token classification
      [B, T, num_labels], masked LM [B, T or P, V]; start_logits, end_logits: [B, T];
    prediction_logits: [B, T or P, V]; seq_relationship_logits: [B, 2];
    encoder: the trunk's `EncoderOutput`.
    """

    encoder: EncoderOutput
    logits: Array | None = None
    start_logits: Array | None = None
    end_logits: Array | None = None
    prediction_logits: Array | None = None
    seq_relationship_logits: Array | None = None


class MaskedLMHead(nnx.Module):
    """BERT's MLM head with a tied word-embedding decoder.

    transform = LayerNorm(act(Dense(h))); logits = transform @ [E | extra]^T + bias, where E is
    the tied word table [V, embedding_size] and `extra_output_weights` [V, hidden -
    embedding_size] fills the remaining columns (MobileBERT; absent when the widths agree).
    """

    def __init__(self, config: EncoderConfig, *, rngs: nnx.Rngs):
        h, e, std = config.hidden_size, config.embedding_size, config.initializer_range
        self.act = config.hidden_act
        self.transform = Dense(h, h, init_std=std, rngs=rngs)
        self.transform_norm = LayerNorm(h, config.layer_norm_eps)
        shape = (config.vocab_size, h - e)
        self.extra_output_weights = nnx.data(
            nnx.Param(truncated_normal(std)(rngs.params(), shape)) if e < h else None
        )
        self.bias = nnx.Param(jnp.zeros((config.vocab_size,)))

    def __call__(self, hidden: Array, word_embeddings: Array) -> Array:
        """hidden [..., H], word_embeddings [V, E] -> logits [..., V] (float32)."""
        x = self.transform_norm(activation(self.act)(self.transform(hidden)))
        e = word_embeddings.shape[1]
        logits = jnp.einsum(
            "...e,ve->...v",
            x[..., :e],
            word_embeddings.astype(x.dtype),
            preferred_element_type=jnp.float32,
        )
        if self.extra_output_weights is not None:
            logits = logits + jnp.einsum(
                "...k,vk->...v",
                x[..., e:],
                self.extra_output_weights[...].astype(x.dtype),
                preferred_element_type=jnp.float32,
            )
        return logits + self.bias[...]


class TaskModel(nnx.Module):
    """Base: owns the trunk and a dropout rate for the classifier input."""

    def __init__(self, config: EncoderConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.backbone = build_encoder(config, rngs=rngs)
        rate = config.classifier_dropout
        self.classifier_dropout = config.hidden_dropout_prob if rate is None else rate

    def _encode(self, input_ids, attention_mask, token_type_ids, kwargs) -> tuple[Any, KeySplitter]:
        deterministic = kwargs.get("deterministic", True)
        rng = kwargs.pop("dropout_rng", None)
        keys = KeySplitter(None if deterministic else rng)
        out = self.backbone(input_ids, attention_mask, token_type_ids, dropout_rng=keys(), **kwargs)
        return out, keys

    def _dropout(self, x: Array, keys: KeySplitter, kwargs: dict) -> Array:
        return dropout(x, self.classifier_dropout, keys(), kwargs.get("deterministic", True))

    def _mlm_logits(self, enc: EncoderOutput, positions: Array | None) -> Array:
        """MLM logits [B, T or P, V] of `self.mlm`, at `positions` [B, P] when given."""
        seq = enc.last_hidden_state
        if positions is not None:
            seq = gather_positions(seq, positions)
        return self.mlm(seq, self.backbone.embeddings.word_embeddings.embedding[...])


class PreTrainingModel(TaskModel):
    """MLM + NSP/SOP. With `masked_lm_positions` [B, P], MLM logits are computed only there."""

    def __init__(self, config: EncoderConfig, *, rngs: nnx.Rngs):
        super().__init__(config, rngs=rngs)
        self.mlm = MaskedLMHead(config, rngs=rngs)
        self.seq_relationship = Dense(
            config.hidden_size, 2, init_std=config.initializer_range, rngs=rngs
        )

    def __call__(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        *,
        masked_lm_positions: Array | None = None,
        **kwargs,
    ) -> TaskOutput:
        enc, _ = self._encode(input_ids, attention_mask, token_type_ids, kwargs)
        return TaskOutput(
            encoder=enc,
            prediction_logits=self._mlm_logits(enc, masked_lm_positions),
            seq_relationship_logits=self.seq_relationship(enc.pooler_output).astype(jnp.float32),
        )


class MaskedLMModel(TaskModel):
    """MLM only; logits at every position, or at `masked_lm_positions` [B, P] when given."""

    def __init__(self, config: EncoderConfig, *, rngs: nnx.Rngs):
        super().__init__(config, rngs=rngs)
        self.mlm = MaskedLMHead(config, rngs=rngs)

    def __call__(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        *,
        masked_lm_positions: Array | None = None,
        **kwargs,
    ) -> TaskOutput:
        enc, _ = self._encode(input_ids, attention_mask, token_type_ids, kwargs)
        return TaskOutput(encoder=enc, logits=self._mlm_logits(enc, masked_lm_positions))


class NextSentenceModel(TaskModel):
    """NSP/SOP head on the pooled output: logits [B, 2]."""

    def __init__(self, config: EncoderConfig, *, rngs: nnx.Rngs):
        super().__init__(config, rngs=rngs)
        self.seq_relationship = Dense(
            config.hidden_size, 2, init_std=config.initializer_range, rngs=rngs
        )

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, **kwargs) -> TaskOutput:
        enc, _ = self._encode(input_ids, attention_mask, token_type_ids, kwargs)
        logits = self.seq_relationship(enc.pooler_output).astype(jnp.float32)
        return TaskOutput(encoder=enc, logits=logits)


class SequenceClassificationModel(TaskModel):
    """Pooled output -> dropout -> Dense(num_labels). Single-label, regression (num_labels=1)
    or multi-label: the head is the same, the loss follows `config.problem_type`."""

    def __init__(self, config: EncoderConfig, *, rngs: nnx.Rngs):
        super().__init__(config, rngs=rngs)
        self.classifier = Dense(
            config.hidden_size, config.num_labels, init_std=config.initializer_range, rngs=rngs
        )

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, **kwargs) -> TaskOutput:
        enc, keys = self._encode(input_ids, attention_mask, token_type_ids, kwargs)
        pooled = self._dropout(enc.pooler_output, keys, kwargs)
        return TaskOutput(encoder=enc, logits=self.classifier(pooled).astype(jnp.float32))


class MultipleChoiceModel(TaskModel):
    """Inputs [B, C, T]; each choice's pooled output -> dropout -> Dense(1); logits [B, C]."""

    def __init__(self, config: EncoderConfig, *, rngs: nnx.Rngs):
        super().__init__(config, rngs=rngs)
        self.classifier = Dense(config.hidden_size, 1, init_std=config.initializer_range, rngs=rngs)

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, **kwargs) -> TaskOutput:
        b, c, t = input_ids.shape

        def flat(x):
            return None if x is None else x.reshape(b * c, t)

        enc, keys = self._encode(
            flat(input_ids), flat(attention_mask), flat(token_type_ids), kwargs
        )
        pooled = self._dropout(enc.pooler_output, keys, kwargs)
        logits = self.classifier(pooled).astype(jnp.float32).reshape(b, c)
        return TaskOutput(encoder=enc, logits=logits)


class TokenClassificationModel(TaskModel):
    """Sequence output -> dropout -> Dense(num_labels); logits [B, T, num_labels]."""

    def __init__(self, config: EncoderConfig, *, rngs: nnx.Rngs):
        super().__init__(config, rngs=rngs)
        self.classifier = Dense(
            config.hidden_size, config.num_labels, init_std=config.initializer_range, rngs=rngs
        )

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, **kwargs) -> TaskOutput:
        enc, keys = self._encode(input_ids, attention_mask, token_type_ids, kwargs)
        seq = self._dropout(enc.last_hidden_state, keys, kwargs)
        return TaskOutput(encoder=enc, logits=self.classifier(seq).astype(jnp.float32))


class QuestionAnsweringModel(TaskModel):
    """Sequence output -> Dense(2) (no dropout); start_logits, end_logits [B, T]."""

    def __init__(self, config: EncoderConfig, *, rngs: nnx.Rngs):
        super().__init__(config, rngs=rngs)
        self.qa_outputs = Dense(config.hidden_size, 2, init_std=config.initializer_range, rngs=rngs)

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, **kwargs) -> TaskOutput:
        enc, _ = self._encode(input_ids, attention_mask, token_type_ids, kwargs)
        logits = self.qa_outputs(enc.last_hidden_state).astype(jnp.float32)
        return TaskOutput(encoder=enc, start_logits=logits[..., 0], end_logits=logits[..., 1])


HEADS: dict[str, type[nnx.Module]] = {
    "base": Encoder,
    "pretraining": PreTrainingModel,
    "masked_lm": MaskedLMModel,
    "next_sentence": NextSentenceModel,
    "sequence_classification": SequenceClassificationModel,
    "multiple_choice": MultipleChoiceModel,
    "token_classification": TokenClassificationModel,
    "question_answering": QuestionAnsweringModel,
}


def build_model(config: EncoderConfig, head: str = "base", *, seed: int = 0) -> nnx.Module:
    """A freshly initialised model: the trunk (`head="base"`) or a task model from `HEADS`.

    All initializers run as one compiled program (run eagerly, each parameter's initializer
    compiles a program of its own); the values are the same.
    """
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; one of {sorted(HEADS)}")

    def make() -> nnx.Module:
        rngs = nnx.Rngs(params=seed)
        if head == "base":
            return build_encoder(config, rngs=rngs)
        return HEADS[head](config, rngs=rngs)

    return nnx.jit(make)()
