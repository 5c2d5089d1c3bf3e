"""Typed, validated model configs with HF `config.json` field names, and named presets.

`SqueezeBertConfig` and `MobileBertConfig` accept exactly the fields of HF's
`SqueezeBertConfig` / `MobileBertConfig` (so a downloaded `config.json` loads as is), plus
three run-time fields that are not part of the architecture and never written to HF files:
`compute_dtype`, `scan_layers` and `remat`. Invalid values raise `ValueError` naming the field.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "relu6", "tanh", "silu", "swish")
COMPUTE_DTYPES = ("float32", "bfloat16", "float16")
PROBLEM_TYPES = (None, "regression", "single_label_classification", "multi_label_classification")
RUNTIME_FIELDS = ("compute_dtype", "scan_layers", "remat")


def _fail(config_name: str, field: str, message: str) -> None:
    raise ValueError(f"{config_name}.{field}: {message}")


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """Fields shared by both model families (HF names and HF defaults of BERT-like models)."""

    model_type: ClassVar[str] = ""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    embedding_size: int = 768
    classifier_dropout: float | None = None
    num_labels: int = 2
    problem_type: str | None = None
    # Run-time settings (not architecture; not exported to HF config.json).
    compute_dtype: str = "float32"
    scan_layers: bool = False
    remat: bool = False

    # ----------------------------------------------------------------- validation
    def __post_init__(self) -> None:
        name = type(self).__name__
        for field in (
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "max_position_embeddings",
            "type_vocab_size",
            "embedding_size",
            "num_labels",
        ):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                _fail(name, field, f"must be a positive integer, got {value!r}")
        for field in ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"):
            value = getattr(self, field)
            if value is not None and not 0.0 <= value < 1.0:
                _fail(name, field, f"must be in [0, 1), got {value!r}")
        if self.layer_norm_eps <= 0:
            _fail(name, "layer_norm_eps", f"must be positive, got {self.layer_norm_eps!r}")
        if self.hidden_act not in ACTIVATIONS:
            _fail(
                name, "hidden_act", f"unknown activation {self.hidden_act!r}; one of {ACTIVATIONS}"
            )
        if self.compute_dtype not in COMPUTE_DTYPES:
            _fail(name, "compute_dtype", f"{self.compute_dtype!r} is not one of {COMPUTE_DTYPES}")
        if self.problem_type not in PROBLEM_TYPES:
            _fail(name, "problem_type", f"{self.problem_type!r} is not one of {PROBLEM_TYPES}")
        if not 0 <= self.pad_token_id < self.vocab_size:
            _fail(name, "pad_token_id", f"{self.pad_token_id} is outside [0, vocab_size)")
        self._validate()

    def _validate(self) -> None:
        """Family-specific checks."""

    def _check_divisible(self, field: str, value: int, divisor_field: str, divisor: int) -> None:
        if divisor < 1 or value % divisor:
            _fail(
                type(self).__name__,
                divisor_field,
                f"{field}={value} is not divisible by {divisor_field}={divisor}",
            )

    # ----------------------------------------------------------------- conversion
    def replace(self, **changes: Any) -> EncoderConfig:
        """A copy with `changes` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Every field, run-time ones included, plus `model_type`."""
        return {"model_type": self.model_type, **dataclasses.asdict(self)}

    def to_hf_dict(self) -> dict[str, Any]:
        """The fields HF's config class knows (what `config.json` holds)."""
        out = {k: v for k, v in self.to_dict().items() if k not in RUNTIME_FIELDS}
        out.pop("num_labels")
        out["id2label"] = {str(i): f"LABEL_{i}" for i in range(self.num_labels)}
        out["label2id"] = {f"LABEL_{i}": i for i in range(self.num_labels)}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, strict: bool = True) -> EncoderConfig:
        """Builds a config from a dict of field values.

        With `strict`, an unknown key raises ValueError naming it; without, unknown keys (HF's
        `architectures`, `transformers_version`, ...) are ignored, so an HF `config.json` loads.
        """
        data = dict(data)
        model_type = data.pop("model_type", cls.model_type)
        if model_type != cls.model_type:
            raise ValueError(f"model_type: expected {cls.model_type!r}, got {model_type!r}")
        if "id2label" in data and "num_labels" not in data and data["id2label"]:
            data["num_labels"] = len(data["id2label"])
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if strict and unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}")
        return cls(**cls._normalize_hf({k: v for k, v in data.items() if k in known}))

    @classmethod
    def _normalize_hf(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Drops HF fields that HF itself ignores for the given settings."""
        return data


@dataclasses.dataclass(frozen=True)
class SqueezeBertConfig(EncoderConfig):
    """SqueezeBERT (grouped 1x1 convolutions). All group counts = 1 gives BERT-base."""

    model_type: ClassVar[str] = "squeezebert"

    q_groups: int = 4
    k_groups: int = 4
    v_groups: int = 4
    post_attention_groups: int = 1
    intermediate_groups: int = 4
    output_groups: int = 4

    def _validate(self) -> None:
        h, i = self.hidden_size, self.intermediate_size
        self._check_divisible("hidden_size", h, "num_attention_heads", self.num_attention_heads)
        for field in ("q_groups", "k_groups", "v_groups", "post_attention_groups"):
            self._check_divisible("hidden_size", h, field, getattr(self, field))
        for field in ("intermediate_groups", "output_groups"):
            self._check_divisible("hidden_size", h, field, getattr(self, field))
            self._check_divisible("intermediate_size", i, field, getattr(self, field))
        if self.embedding_size != h:
            _fail(
                "SqueezeBertConfig",
                "embedding_size",
                f"must equal hidden_size ({h}) (SqueezeBERT has no embedding projection), "
                f"got {self.embedding_size}",
            )


@dataclasses.dataclass(frozen=True)
class MobileBertConfig(EncoderConfig):
    """The MobileBERT family: IB-BERT_LARGE teacher, MobileBERT and MobileBERT_TINY.

    Defaults are HF's `MobileBertConfig` defaults (the optimised student, with a tanh pooler).
    `intra_bottleneck_size=None` means `hidden_size` (no bottleneck).
    """

    model_type: ClassVar[str] = "mobilebert"

    vocab_size: int = 30522
    hidden_size: int = 512
    num_hidden_layers: int = 24
    num_attention_heads: int = 4
    intermediate_size: int = 512
    hidden_act: str = "relu"
    hidden_dropout_prob: float = 0.0
    embedding_size: int = 128
    trigram_input: bool = True
    use_bottleneck: bool = True
    intra_bottleneck_size: int | None = 128
    use_bottleneck_attention: bool = False
    key_query_shared_bottleneck: bool = True
    num_feedforward_networks: int = 4
    normalization_type: str = "no_norm"
    classifier_activation: bool = True

    @property
    def true_hidden_size(self) -> int:
        """Width inside a block: the bottleneck size, or hidden_size without a bottleneck."""
        return self.intra_bottleneck_size if self.use_bottleneck else self.hidden_size

    @property
    def attention_input_sizes(self) -> tuple[int, int]:
        """(query/key input width, value input width), as the original TF code builds them."""
        if self.use_bottleneck and self.use_bottleneck_attention:
            return self.true_hidden_size, self.true_hidden_size
        if self.use_bottleneck and self.key_query_shared_bottleneck:
            return self.true_hidden_size, self.hidden_size
        return self.hidden_size, self.hidden_size

    def _validate(self) -> None:
        name = "MobileBertConfig"
        if self.normalization_type not in ("layer_norm", "no_norm"):
            _fail(
                name,
                "normalization_type",
                f"unknown {self.normalization_type!r}; use 'layer_norm' or 'no_norm'",
            )
        if self.num_feedforward_networks < 1:
            _fail(name, "num_feedforward_networks", "must be at least 1")
        if self.use_bottleneck:
            if not isinstance(self.intra_bottleneck_size, int) or self.intra_bottleneck_size < 1:
                _fail(
                    name, "intra_bottleneck_size", "must be a positive integer with use_bottleneck"
                )
        else:
            if self.intra_bottleneck_size not in (None, self.hidden_size):
                _fail(
                    name,
                    "intra_bottleneck_size",
                    "is set but use_bottleneck is off; set use_bottleneck=True or drop it",
                )
            for flag in ("use_bottleneck_attention", "key_query_shared_bottleneck"):
                if getattr(self, flag):
                    _fail(name, flag, "needs use_bottleneck=True")
        if self.use_bottleneck_attention and self.key_query_shared_bottleneck:
            _fail(
                name,
                "key_query_shared_bottleneck",
                "cannot be combined with use_bottleneck_attention (choose one)",
            )
        self._check_divisible(
            "true_hidden_size",
            self.true_hidden_size,
            "num_attention_heads",
            self.num_attention_heads,
        )
        if self.embedding_size > self.hidden_size:
            _fail(name, "embedding_size", "must not exceed hidden_size (the MLM head ties it)")

    def to_hf_dict(self) -> dict[str, Any]:
        out = super().to_hf_dict()
        out["true_hidden_size"] = self.true_hidden_size
        if out["intra_bottleneck_size"] is None:
            out["intra_bottleneck_size"] = self.hidden_size
        return out

    @classmethod
    def _normalize_hf(cls, data: dict[str, Any]) -> dict[str, Any]:
        data = dict(data)
        if not data.get("use_bottleneck", cls.use_bottleneck):
            # HF keeps these fields but ignores them without a bottleneck.
            data["intra_bottleneck_size"] = None
            data["use_bottleneck_attention"] = False
            data["key_query_shared_bottleneck"] = False
        return data


CONFIG_CLASSES: dict[str, type[EncoderConfig]] = {
    cls.model_type: cls for cls in (SqueezeBertConfig, MobileBertConfig)
}


def config_from_dict(data: dict[str, Any], *, strict: bool = True) -> EncoderConfig:
    """Dispatches on `data["model_type"]` ('squeezebert' or 'mobilebert')."""
    model_type = data.get("model_type")
    if model_type not in CONFIG_CLASSES:
        raise ValueError(
            f"model_type: unsupported {model_type!r}; expected one of {sorted(CONFIG_CLASSES)}"
        )
    return CONFIG_CLASSES[model_type].from_dict(data, strict=strict)


# --------------------------------------------------------------------------------- presets
_MOBILEBERT_STUDENT = dict(classifier_activation=False)

PRESETS: dict[str, tuple[type[EncoderConfig], dict[str, Any]]] = {
    # Published checkpoints (squeezebert/squeezebert-uncased: vocab padded to 30528).
    "squeezebert-uncased": (SqueezeBertConfig, dict(vocab_size=30528)),
    "bert-base-uncased": (
        SqueezeBertConfig,
        dict(
            q_groups=1,
            k_groups=1,
            v_groups=1,
            post_attention_groups=1,
            intermediate_groups=1,
            output_groups=1,
        ),
    ),
    "mobilebert-uncased": (MobileBertConfig, _MOBILEBERT_STUDENT),
    "mobilebert-tiny": (
        MobileBertConfig,
        dict(
            _MOBILEBERT_STUDENT,
            use_bottleneck_attention=True,
            key_query_shared_bottleneck=False,
            num_feedforward_networks=2,
        ),
    ),
    "ib-bert-large": (
        MobileBertConfig,
        dict(
            intra_bottleneck_size=1024,
            intermediate_size=4096,
            num_feedforward_networks=1,
            key_query_shared_bottleneck=False,
            normalization_type="layer_norm",
            hidden_act="gelu",
            hidden_dropout_prob=0.1,
            classifier_activation=True,
        ),
    ),
    # Tiny sizes for tests and the quickstart.
    "squeezebert-test": (
        SqueezeBertConfig,
        dict(
            vocab_size=128,
            hidden_size=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=96,
            max_position_embeddings=64,
            q_groups=2,
            k_groups=2,
            v_groups=2,
            intermediate_groups=2,
            output_groups=2,
            embedding_size=48,
        ),
    ),
    "mobilebert-test": (
        MobileBertConfig,
        dict(
            _MOBILEBERT_STUDENT,
            vocab_size=128,
            embedding_size=16,
            hidden_size=64,
            intra_bottleneck_size=16,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            num_feedforward_networks=2,
            max_position_embeddings=64,
        ),
    ),
    "ib-bert-test": (
        MobileBertConfig,
        dict(
            vocab_size=128,
            embedding_size=16,
            hidden_size=64,
            intra_bottleneck_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=256,
            num_feedforward_networks=1,
            key_query_shared_bottleneck=False,
            normalization_type="layer_norm",
            hidden_act="gelu",
            hidden_dropout_prob=0.1,
            max_position_embeddings=64,
        ),
    ),
}


def get_model_config(name: str, **overrides: Any) -> EncoderConfig:
    """A named preset (see `PRESETS`), with field overrides applied and validated."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; available: {sorted(PRESETS)}")
    cls, fields = PRESETS[name]
    return cls(**{**fields, **overrides})
