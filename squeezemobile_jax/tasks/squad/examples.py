"""SQuAD v1.1 / v2.0 questions: reading and checking them.

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
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import ml_collections

from squeezemobile_jax.data.hub import hub_offline, hub_reachable

log = logging.getLogger(__name__)

HUB_DATASETS = {"1.1": "rajpurkar/squad", "2.0": "rajpurkar/squad_v2"}
ON_ERROR_CHOICES = ("raise", "skip")
_LOGGED_SKIPS = 5  # skipped questions logged one by one; the rest only counted


class SquadFormatError(ValueError):
    """A SQuAD file or record that cannot be used (the message names file and question id)."""


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

    hint = (
        "Pass local SQuAD JSON files instead (the official train-v1.1.json / dev-v1.1.json or "
        "train-v2.0.json / dev-v2.0.json): --config.data.train_file=PATH "
        "--config.data.eval_file=PATH."
    )
    if not hub_offline() and not hub_reachable():
        raise SquadFormatError(
            f"cannot reach the HF hub for the dataset {name!r}. {hint} "
            "With a cached copy, set HF_HUB_OFFLINE=1 to use it."
        )
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


def load_split(config: ml_collections.ConfigDict, which: str, version_2: bool) -> SquadData:
    """The 'train' or 'eval' set: config.data.{which}_file if set, else the hub split."""
    data = config.data
    path = data.get(f"{which}_file") or ""
    on_error = data.get("on_error", "raise")
    if path:
        return read_squad_file(path, allow_impossible=version_2, on_error=on_error)
    name = data.get("hub_dataset") or HUB_DATASETS["2.0" if version_2 else "1.1"]
    split = data.get(f"{which}_split") or ("train" if which == "train" else "validation")
    return load_hub_squad(name, split, allow_impossible=version_2, on_error=on_error)
