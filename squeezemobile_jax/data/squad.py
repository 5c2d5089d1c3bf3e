"""SQuAD v1.1 / v2.0 data: reading question-answer examples and turning them into features.

Sources (each gives a list of `SquadExample`):
  * `read_squad_file(path)`: the official nested JSON (`{"version", "data": [{"title",
    "paragraphs": [{"context", "qas": [{"id", "question", "answers": [{"text",
    "answer_start"}], "is_impossible"}]}]}]}`), or flattened records as HF's `run_qa.py`
    reads them (`{"data": [{"id", "title", "context", "question", "answers": {"text": [...],
    "answer_start": [...]}}]}`).
  * `load_hub_squad(name, split)`: the HF hub datasets `rajpurkar/squad` / `rajpurkar/squad_v2`
    (fails fast, saying how to pass local files, when the hub cannot be reached).

Every question is checked: required fields present and typed, ids unique, each answer's
`answer_start` pointing at its text in the context. A problem raises `SquadFormatError` naming
the file and question id, or (``on_error='skip'``) the question is skipped, counted and logged.

`build_features` makes BERT `run_squad.py` features with the fast tokenizer's character
offsets: ``[CLS] question [SEP] context window [SEP]``, the question cut to
`max_query_length` tokens, the context split into windows of at most
``max_seq_length - len(question) - 3`` tokens whose starts move by `doc_stride` tokens.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from squeezemobile_jax.data.tokenizer import WordPieceTokenizer

log = logging.getLogger(__name__)

HUB_DATASETS = {"1.1": "rajpurkar/squad", "2.0": "rajpurkar/squad_v2"}
ON_ERROR_CHOICES = ("raise", "skip")
_LOGGED_SKIPS = 5  # skipped questions logged one by one; the rest only counted


class SquadFormatError(ValueError):
    """A SQuAD file or record that cannot be used (the message names file and question id)."""


# ------------------------------------------------------------------------------ examples
@dataclasses.dataclass(frozen=True)
class Answer:
    """One gold answer: its text and the character offset where it starts in the context."""

    text: str
    start: int

    @property
    def end(self) -> int:
        """Character offset one past the answer's last character."""
        return self.start + len(self.text)


@dataclasses.dataclass(frozen=True)
class SquadExample:
    """One question about one context. `answers` is empty for an unanswerable (v2) question."""

    qid: str
    question: str
    context: str
    answers: tuple[Answer, ...]
    title: str = ""

    @property
    def is_impossible(self) -> bool:
        return not self.answers


@dataclasses.dataclass
class SquadData:
    """Examples read from one source, with the file's `version` field and the skip count."""

    examples: list[SquadExample]
    source: str
    version: str | None = None
    skipped: int = 0


class _Checker:
    """Validates records of one source; raises or counts skips (``on_error``)."""

    def __init__(self, source: str, on_error: str, allow_impossible: bool):
        if on_error not in ON_ERROR_CHOICES:
            raise ValueError(f"on_error={on_error!r}: choose one of {ON_ERROR_CHOICES}")
        self.source, self.on_error, self.allow_impossible = source, on_error, allow_impossible
        self.seen: set[str] = set()
        self.skipped = 0

    def fail(self, where: str, message: str) -> None:
        text = f"{self.source}: {where}: {message}"
        if self.on_error == "raise":
            raise SquadFormatError(
                f"{text}. Fix the data, or set data.on_error='skip' to skip such questions "
                "(they are counted and logged)."
            )
        self.skipped += 1
        if self.skipped <= _LOGGED_SKIPS:
            log.warning("skipping %s", text)

    def example(
        self,
        where: str,
        record: Mapping[str, Any],
        context: Any,
        title: Any = "",
    ) -> SquadExample | None:
        """A validated example from `record` (id, question, answers, ...), or None after a
        skip. The context and title come separately (nested files keep them outside)."""
        qid = record.get("id")
        if not isinstance(qid, str) or not qid:
            self.fail(where, "question without a string 'id'")
            return None
        where = f"question id {qid!r}"
        if qid in self.seen:
            self.fail(where, "id is used by an earlier question; ids must be unique")
            return None
        question = record.get("question")
        if not isinstance(question, str):
            self.fail(where, "missing field 'question' (a string)")
            return None
        if not isinstance(context, str):
            self.fail(where, "missing field 'context' (a string)")
            return None
        if not context.strip():
            self.fail(where, "the context is empty")
            return None
        if "answers" not in record:
            self.fail(where, "missing field 'answers'")
            return None
        answers = _answer_pairs(record["answers"])
        if answers is None:
            self.fail(
                where,
                '\'answers\' must be a list of {"text", "answer_start"} objects (or, '
                'flattened, {"text": [...], "answer_start": [...]} of equal length)',
            )
            return None
        impossible = record.get("is_impossible", False)
        if not isinstance(impossible, bool):
            self.fail(where, f"'is_impossible' must be true or false, not {impossible!r}")
            return None
        if impossible and answers:
            self.fail(where, "'is_impossible' is true but 'answers' is not empty")
            return None
        if not answers and not self.allow_impossible:
            self.fail(
                where,
                "'answers' is empty; SQuAD v1.1 questions need an answer (use version 2.0 "
                "for unanswerable questions)",
            )
            return None
        checked = []
        for i, (text, start) in enumerate(answers):
            if not isinstance(text, str) or not text:
                self.fail(where, f"answer {i} has no 'text' (a non-empty string)")
                return None
            if isinstance(start, bool) or not isinstance(start, int):
                self.fail(where, f"answer {i} ({text!r}) has no integer 'answer_start'")
                return None
            found = context[start : start + len(text)] if 0 <= start < len(context) else ""
            if found != text:
                self.fail(
                    where,
                    f"answer {i} {text!r} does not match the context at answer_start={start} "
                    f"(the context there reads {found!r})",
                )
                return None
            checked.append(Answer(text, start))
        self.seen.add(qid)
        return SquadExample(
            qid, question, context, tuple(checked), title if isinstance(title, str) else ""
        )


def _answer_pairs(value: Any) -> list[tuple[Any, Any]] | None:
    """[(text, answer_start)] from the nested list form or the flattened dict-of-lists form."""
    if isinstance(value, list):
        if not all(isinstance(a, Mapping) for a in value):
            return None
        return [(a.get("text"), a.get("answer_start")) for a in value]
    if isinstance(value, Mapping):
        texts, starts = value.get("text"), value.get("answer_start")
        if not isinstance(texts, list) or not isinstance(starts, list):
            return None
        if len(texts) != len(starts):
            return None
        return list(zip(texts, starts))
    return None


def examples_from_records(
    records: Iterable[Mapping[str, Any]],
    *,
    source: str,
    allow_impossible: bool,
    on_error: str = "raise",
) -> tuple[list[SquadExample], int]:
    """Validated examples from flattened records (HF `squad` rows); returns (examples, skipped)."""
    check = _Checker(source, on_error, allow_impossible)
    examples = []
    for n, record in enumerate(records):
        if not isinstance(record, Mapping):
            check.fail(f"record {n}", "not a JSON object")
            continue
        ex = check.example(
            f"record {n}",
            record,
            record.get("context"),
            record.get("title", ""),
        )
        if ex is not None:
            examples.append(ex)
    _log_skips(check, source)
    return examples, check.skipped


def _nested_examples(data: list, check: _Checker) -> Iterator[SquadExample]:
    for a, article in enumerate(data):
        paragraphs = article.get("paragraphs") if isinstance(article, Mapping) else None
        if not isinstance(paragraphs, list):
            raise SquadFormatError(
                f"{check.source}: data[{a}]: missing field 'paragraphs' (a list)"
            )
        for p, paragraph in enumerate(paragraphs):
            qas = paragraph.get("qas") if isinstance(paragraph, Mapping) else None
            if not isinstance(qas, list):
                raise SquadFormatError(
                    f"{check.source}: data[{a}].paragraphs[{p}]: missing field 'qas' (a list)"
                )
            for q, qa in enumerate(qas):
                where = f"data[{a}].paragraphs[{p}].qas[{q}]"
                if not isinstance(qa, Mapping):
                    check.fail(where, "not a JSON object")
                    continue
                ex = check.example(where, qa, paragraph.get("context"), article.get("title", ""))
                if ex is not None:
                    yield ex


def read_squad_file(
    path: str | os.PathLike, *, allow_impossible: bool = True, on_error: str = "raise"
) -> SquadData:
    """Reads a SQuAD JSON file (official nested layout or flattened records).

    `allow_impossible=False` (v1.1) makes a question without answers an error.
    """
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as f:
            raw = json.load(f)
    except FileNotFoundError:
        raise SquadFormatError(f"{source}: file not found") from None
    except UnicodeDecodeError as e:
        raise SquadFormatError(f"{source}: not UTF-8 text ({e.reason})") from None
    except json.JSONDecodeError as e:
        raise SquadFormatError(f"{source}:{e.lineno}:{e.colno}: not valid JSON ({e.msg})") from None
    if not isinstance(raw, Mapping) or not isinstance(raw.get("data"), list):
        raise SquadFormatError(
            f"{source}: expected a JSON object with a 'data' list (SQuAD format: "
            '{"version": ..., "data": [{"title", "paragraphs": [...]}]})'
        )
    version = raw.get("version")
    version = str(version) if version is not None else None
    data = raw["data"]
    first = data[0] if data and isinstance(data[0], Mapping) else {}
    flat = "paragraphs" not in first and any(k in first for k in ("id", "question", "context"))
    if flat:
        examples, skipped = examples_from_records(
            data, source=source, allow_impossible=allow_impossible, on_error=on_error
        )
    else:
        check = _Checker(source, on_error, allow_impossible)
        examples = list(_nested_examples(data, check))
        _log_skips(check, source)
        skipped = check.skipped
    log.info("%s: %d questions (%d skipped)", source, len(examples), skipped)
    return SquadData(examples, source, version, skipped)


def _log_skips(check: _Checker, source: str) -> None:
    if check.skipped:
        log.warning(
            "%s: skipped %d malformed question(s) (data.on_error='skip')", source, check.skipped
        )


def is_version_2(version: str | None, examples: Sequence[SquadExample]) -> bool:
    """True for a v2.0 file (its `version` field) or one with unanswerable questions."""
    if version is not None and version.lstrip("v").startswith("2"):
        return True
    return any(e.is_impossible for e in examples)


def load_hub_squad(
    name: str, split: str, *, allow_impossible: bool = True, on_error: str = "raise"
) -> SquadData:
    """Loads a split of a hub SQuAD dataset (`rajpurkar/squad`, `rajpurkar/squad_v2`).

    Without network access this fails at once with a message saying how to pass local files.
    """
    import datasets  # heavy import; only for hub data

    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or os.environ.get(
        "HF_DATASETS_OFFLINE", "0"
    ) not in ("", "0")
    hint = (
        "Pass local SQuAD JSON files instead (the official train-v1.1.json / dev-v1.1.json or "
        "train-v2.0.json / dev-v2.0.json): --config.data.train_file=PATH "
        "--config.data.eval_file=PATH."
    )
    if not offline:
        import huggingface_hub

        try:  # one quick request instead of load_dataset's retries when offline
            huggingface_hub.HfApi().dataset_info(name, timeout=10)
        except Exception as e:
            raise SquadFormatError(
                f"cannot reach the hub dataset {name!r} ({type(e).__name__}: {e}). {hint} "
                "With a cached copy, set HF_HUB_OFFLINE=1 to use it."
            ) from e
    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as e:
        raise SquadFormatError(
            f"could not load the hub dataset {name!r} split {split!r} "
            f"({type(e).__name__}: {e}). {hint}"
        ) from e
    source = f"{name}[{split}]"
    examples, skipped = examples_from_records(
        ds.to_list(), source=source, allow_impossible=allow_impossible, on_error=on_error
    )
    log.info("%s: %d questions (%d skipped)", source, len(examples), skipped)
    return SquadData(examples, source, None, skipped)


# ------------------------------------------------------------------------------ features
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
