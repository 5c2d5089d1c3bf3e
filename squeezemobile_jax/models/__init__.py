"""Flax NNX models: configs, the two encoder families and their task heads."""

from squeezemobile_jax.models.config import (
    PRESETS,
    EncoderConfig,
    MobileBertConfig,
    SqueezeBertConfig,
    config_from_dict,
    get_model_config,
)
from squeezemobile_jax.models.encoder import with_layer_list
from squeezemobile_jax.models.heads import (
    HEADS,
    MaskedLMModel,
    MultipleChoiceModel,
    NextSentenceModel,
    PreTrainingModel,
    QuestionAnsweringModel,
    SequenceClassificationModel,
    TaskOutput,
    TokenClassificationModel,
    build_encoder,
    build_model,
)
from squeezemobile_jax.models.mobilebert import MobileBertModel
from squeezemobile_jax.models.squeezebert import SqueezeBertModel
from squeezemobile_jax.models.stacking import EncoderOutput

__all__ = [
    "HEADS",
    "PRESETS",
    "EncoderConfig",
    "EncoderOutput",
    "MaskedLMModel",
    "MobileBertConfig",
    "MobileBertModel",
    "MultipleChoiceModel",
    "NextSentenceModel",
    "PreTrainingModel",
    "QuestionAnsweringModel",
    "SequenceClassificationModel",
    "SqueezeBertConfig",
    "SqueezeBertModel",
    "TaskOutput",
    "TokenClassificationModel",
    "build_encoder",
    "build_model",
    "config_from_dict",
    "get_model_config",
    "with_layer_list",
]
