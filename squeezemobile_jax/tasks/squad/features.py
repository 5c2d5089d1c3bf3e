"""BERT-style windowed features of SQuAD questions.

`build_features` makes BERT `run_squad.py` features with the fast tokenizer's character
offsets: ``[CLS] question [SEP] context window [SEP]``, the question cut to
`max_query_length` tokens, the context split into windows of at most
``max_seq_length - len(question) - 3`` tokens whose starts move by `doc_stride` tokens.

"""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Sequence

import numpy as np
from tokenizers import Tokenizer

from squeezemobile_jax.data.tokenizer import WordPieceTokenizer
from squeezemobile_jax.tasks.squad.examples import ON_ERROR_CHOICES, Answer, SquadExample

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class FeatureOptions:
    """Window settings (BERT `run_squad.py` defaults). `doc_stride` is the step between the
    starts of consecutive windows, in tokens (HF's `stride` is the overlap instead)."""

    max_seq_length: int = 384
    doc_stride: int = 128
    max_query_length: int = 64

    def __post_init__(self) -> None:
        if self.doc_stride < 1:
            raise ValueError(f"doc_stride={self.doc_stride}: must be at least 1")
        if self.max_query_length < 1:
            raise ValueError(f"max_query_length={self.max_query_length}: must be at least 1")
        if self.max_seq_length - self.max_query_length - 3 < 1:
            raise ValueError(
                f"max_seq_length={self.max_seq_length} leaves no room for the context after a "
                f"question of max_query_length={self.max_query_length} tokens and 3 special "
                "tokens; raise max_seq_length or lower max_query_length"
            )


@dataclasses.dataclass
class SquadFeatures:
    """One row per window ("feature"); F rows, T = max_seq_length.

    input_ids [F, T] int32, token_type_ids / attention_mask [F, T] int8 (0 past the end);
    example_index [F] int32: the example (position in the list) a window belongs to;
    start_positions / end_positions [F] int32: the answer's first/last token, 0 (the [CLS]
    position) when the question has no answer or the answer is not wholly in the window;
    offsets [F, T, 2] int32: each context token's [start, end) characters in the context,
    -1 for [CLS], question, [SEP] and padding; max_context [F, T] bool: the token has its
    largest surrounding context in this window (BERT's rule; each context token is True in
    exactly one window).
    """

    input_ids: np.ndarray
    token_type_ids: np.ndarray
    attention_mask: np.ndarray
    example_index: np.ndarray
    start_positions: np.ndarray
    end_positions: np.ndarray
    offsets: np.ndarray
    max_context: np.ndarray
    num_examples: int

    def __len__(self) -> int:
        return len(self.input_ids)

    def model_inputs(self) -> dict[str, np.ndarray]:
        return {
            "input_ids": self.input_ids,
            "token_type_ids": self.token_type_ids,
            "attention_mask": self.attention_mask,
        }

    def training_arrays(self) -> dict[str, np.ndarray]:
        """Inputs and labels: what a training batch holds."""
        return {
            **self.model_inputs(),
            "start_positions": self.start_positions,
            "end_positions": self.end_positions,
        }


@dataclasses.dataclass
class FeatureStats:
    """Counts from `build_features` (logged)."""

    examples: int = 0
    features: int = 0
    truncated_questions: int = 0
    answers_outside_all_windows: int = 0  # answer split across windows: all labels at [CLS]
    inexact_answer_tokens: int = 0  # answer starts/ends inside a token: the label covers it
    skipped_examples: int = 0  # training answers that cover no token (on_error='skip')


def window_starts(num_tokens: int, max_tokens: int, doc_stride: int) -> list[tuple[int, int]]:
    """(start, length) of BERT's sliding windows over `num_tokens` context tokens (at least
    one window, empty when there are no tokens)."""
    spans = []
    start = 0
    while True:
        length = min(num_tokens - start, max_tokens)
        spans.append((start, length))
        if start + length >= num_tokens:
            return spans
        start += min(length, doc_stride)


def max_context_owner(spans: Sequence[tuple[int, int]], num_tokens: int) -> np.ndarray:
    """[num_tokens] index of the window where each token has the most context.

    Score of token i in window (s, n): min(i - s, s + n - 1 - i) + 0.01 * n; the first
    window wins a tie (BERT `_check_is_max_context`).
    """
    best = np.full(num_tokens, -np.inf)
    owner = np.zeros(num_tokens, np.int32)
    pos = np.arange(num_tokens)
    for w, (s, n) in enumerate(spans):
        inside = (pos >= s) & (pos < s + n)
        score = np.minimum(pos - s, s + n - 1 - pos) + 0.01 * n
        better = inside & (score > best)
        best = np.where(better, score, best)
        owner = np.where(better, w, owner)
    return owner


def answer_token_span(offsets: np.ndarray, answer: Answer) -> tuple[int, int] | None:
    """First and last context token overlapping the answer's characters (None if none does).

    offsets: [N, 2] character [start, end) of each context token, in order.
    """
    if len(offsets) == 0:
        return None
    first = int(np.searchsorted(offsets[:, 1], answer.start, side="right"))
    last = int(np.searchsorted(offsets[:, 0], answer.end, side="left")) - 1
    if first >= len(offsets) or last < first:
        return None
    return first, last


def _text_tokenizer(tokenizer: WordPieceTokenizer) -> Tokenizer:
    """A copy of the backend that treats "[SEP]" etc. in data as plain text (no specials)."""
    backend = Tokenizer.from_str(tokenizer.backend.to_str())
    backend.encode_special_tokens = True
    return backend


def build_features(
    examples: Sequence[SquadExample],
    tokenizer: WordPieceTokenizer,
    options: FeatureOptions = FeatureOptions(),
    *,
    training: bool = False,
    on_error: str = "raise",
) -> tuple[SquadFeatures, FeatureStats]:
    """Windows of every example with labels (from the first answer), offsets and max-context.

    In `training`, an answer that covers no token (e.g. only whitespace) cannot be labelled:
    ValueError naming the question, or with ``on_error='skip'`` the example gets no windows
    (counted). Outside training such labels are simply 0. A context without tokens gets one
    window with no context tokens.
    """
    if on_error not in ON_ERROR_CHOICES:
        raise ValueError(f"on_error={on_error!r}: choose one of {ON_ERROR_CHOICES}")
    backend = _text_tokenizer(tokenizer)
    t = options.max_seq_length
    stats = FeatureStats(examples=len(examples))
    contexts = list(dict.fromkeys(e.context for e in examples))
    context_row = {c: i for i, c in enumerate(contexts)}
    ctx_enc = backend.encode_batch(contexts, add_special_tokens=False)
    q_enc = backend.encode_batch([e.question.lstrip() for e in examples], add_special_tokens=False)

    rows: dict[str, list] = collections.defaultdict(list)
    for index, (ex, q) in enumerate(zip(examples, q_enc)):
        q_ids = q.ids
        if len(q_ids) > options.max_query_length:
            q_ids = q_ids[: options.max_query_length]
            stats.truncated_questions += 1
        enc = ctx_enc[context_row[ex.context]]
        ids = np.asarray(enc.ids, np.int32)
        offs = np.asarray(enc.offsets, np.int32).reshape(-1, 2)
        max_doc = t - len(q_ids) - 3
        spans = window_starts(len(ids), max_doc, options.doc_stride)
        owner = max_context_owner(spans, len(ids))
        label = None
        if ex.answers:
            label = answer_token_span(offs, ex.answers[0])
            if label is None and training:
                message = f"question id {ex.qid!r}: answer {ex.answers[0].text!r} covers no token"
                if on_error == "raise":
                    raise ValueError(f"{message}; set data.on_error='skip' to skip it")
                stats.skipped_examples += 1
                log.warning("skipping %s", message)
                continue
            if label is not None:
                a, b = label
                if offs[a, 0] != ex.answers[0].start or offs[b, 1] != ex.answers[0].end:
                    stats.inexact_answer_tokens += 1
                if not any(s <= a and b < s + n for s, n in spans):
                    stats.answers_outside_all_windows += 1
        prefix = [tokenizer.cls_id, *q_ids, tokenizer.sep_id]
        shift = len(prefix)
        for w, (s, n) in enumerate(spans):
            seq = np.full(t, tokenizer.pad_id, np.int32)
            seq[:shift] = prefix
            seq[shift : shift + n] = ids[s : s + n]
            seq[shift + n] = tokenizer.sep_id
            types = np.zeros(t, np.int8)
            types[shift : shift + n + 1] = 1
            mask = np.zeros(t, np.int8)
            mask[: shift + n + 1] = 1
            win_offs = np.full((t, 2), -1, np.int32)
            win_offs[shift : shift + n] = offs[s : s + n]
            win_max = np.zeros(t, bool)
            win_max[shift : shift + n] = owner[s : s + n] == w
            start = end = 0
            if label is not None and s <= label[0] and label[1] < s + n:
                start, end = label[0] - s + shift, label[1] - s + shift
            for key, value in (
                ("input_ids", seq),
                ("token_type_ids", types),
                ("attention_mask", mask),
                ("example_index", index),
                ("start_positions", start),
                ("end_positions", end),
                ("offsets", win_offs),
                ("max_context", win_max),
            ):
                rows[key].append(value)
    stats.features = len(rows["input_ids"])
    features = SquadFeatures(
        input_ids=np.stack(rows["input_ids"]) if rows else np.zeros((0, t), np.int32),
        token_type_ids=np.stack(rows["token_type_ids"]) if rows else np.zeros((0, t), np.int8),
        attention_mask=np.stack(rows["attention_mask"]) if rows else np.zeros((0, t), np.int8),
        example_index=np.asarray(rows["example_index"], np.int32),
        start_positions=np.asarray(rows["start_positions"], np.int32),
        end_positions=np.asarray(rows["end_positions"], np.int32),
        offsets=np.stack(rows["offsets"]) if rows else np.zeros((0, t, 2), np.int32),
        max_context=np.stack(rows["max_context"]) if rows else np.zeros((0, t), bool),
        num_examples=len(examples),
    )
    log.info(
        "SQuAD features: %d examples -> %d windows (%d questions cut to %d tokens, %d answers "
        "in no single window, %d answers not on token boundaries, %d skipped)",
        stats.examples,
        stats.features,
        stats.truncated_questions,
        options.max_query_length,
        stats.answers_outside_all_windows,
        stats.inexact_answer_tokens,
        stats.skipped_examples,
    )
    return features, stats
