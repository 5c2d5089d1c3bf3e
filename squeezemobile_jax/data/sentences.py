"""Splitting raw text into sentences for corpora that are not already one sentence per line."""

from __future__ import annotations

import re

# A sentence ends at . ! or ? (optionally followed by a closing quote or bracket) when the
# next word starts with an upper-case letter, a digit, a quote or an opening bracket.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[\"'(\[A-Z0-9])")
_RULE_LINE = re.compile(r"^[\s*=\-~^#+_`]+$")  # reST underlines, "****" separators
_BLOCK_LINE = re.compile(r"^(\s{4,}|\t|>>>|\.\.\.)")


def split_paragraphs(text: str) -> list[list[str]]:
    """Groups the lines of `text` into paragraphs (runs of non-blank lines)."""
    paragraphs: list[list[str]] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.strip():
            current.append(line.rstrip())
        elif current:
            paragraphs.append(current)
            current = []
    if current:
        paragraphs.append(current)
    return paragraphs


def split_sentences(text: str) -> list[str]:
    """Sentences of a prose string, in order, whitespace-normalised; [] for blank text."""
    flat = " ".join(text.split())
    if not flat:
        return []
    return [s.strip() for s in _SENTENCE_END.split(flat) if s.strip()]


def text_to_sentences(text: str) -> list[str]:
    """Sentences of a multi-paragraph text (docstrings, help pages, articles).

    Prose paragraphs are joined and split at sentence ends; code-like paragraphs (every line
    indented by 4+ spaces or a `>>>` prompt) give one sentence per line; underline/separator
    lines are dropped.
    """
    sentences: list[str] = []
    for para in split_paragraphs(text):
        lines = [line for line in para if not _RULE_LINE.match(line)]
        if not lines:
            continue
        if all(_BLOCK_LINE.match(line) for line in lines):
            sentences.extend(" ".join(line.split()) for line in lines)
        else:
            sentences.extend(split_sentences(" ".join(lines)))
    return sentences
