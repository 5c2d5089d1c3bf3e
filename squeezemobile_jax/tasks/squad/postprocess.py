"""From per-window start/end logits to answer texts (BERT `run_squad.py` `write_predictions`,
with the fast tokenizer's character offsets instead of de-tokenising). Pure NumPy.

For each question, over all its windows: the `n_best_size` highest start and end logits are
paired; a pair is a candidate when both tokens are context tokens, the start token has its
largest context in this window (the max-context rule), end >= start and the span is at most
`max_answer_length` tokens. Its score is start_logit + end_logit and its text the context
characters from the start token's first to the end token's last character. Candidates are
ranked, texts deduplicated and the best `n_best_size` kept with softmax probabilities.

v2.0: the null score is the smallest [CLS] score (start_logit[0] + end_logit[0]) over the
windows; score_diff = null score - best span score; the answer is "" when score_diff >
`null_score_diff_threshold`. `null_odds` holds score_diff per question (what the
evaluation's threshold search needs). If no top-n pair is valid, every pair is searched.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from squeezemobile_jax.tasks.squad.examples import SquadExample

# score_diff written for a question whose windows hold no context token at all.
NO_SPAN_SCORE_DIFF = 1e9


@dataclasses.dataclass(frozen=True)
class PostprocessOptions:
    """BERT `run_squad.py` defaults."""

    n_best_size: int = 20
    max_answer_length: int = 30
    version_2_with_negative: bool = False
    null_score_diff_threshold: float = 0.0

    def __post_init__(self) -> None:
        if self.n_best_size < 1 or self.max_answer_length < 1:
            raise ValueError(
                f"n_best_size={self.n_best_size} and max_answer_length="
                f"{self.max_answer_length} must be at least 1"
            )


@dataclasses.dataclass
class SquadPredictions:
    """predictions {qid: text}; nbest {qid: [{text, probability, start_logit, end_logit}]};
    null_odds {qid: score_diff} (v2.0 only, else empty)."""

    predictions: dict[str, str]
    nbest: dict[str, list[dict]]
    null_odds: dict[str, float]


@dataclasses.dataclass(frozen=True)
class _Span:
    score: float
    start_logit: float
    end_logit: float
    char_start: int
    char_end: int


def top_indexes(logits: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n largest values of [T] logits, largest first (lower index on ties)."""
    return np.argsort(-logits, kind="stable")[:n]


def _valid_pairs(
    starts: np.ndarray,
    ends: np.ndarray,
    offsets: np.ndarray,
    max_context: np.ndarray,
    max_answer_length: int,
) -> np.ndarray:
    """Bool [len(starts), len(ends)]: which (start, end) token pairs may be an answer."""
    s, e = starts[:, None], ends[None, :]
    return (
        (offsets[s, 0] >= 0)
        & (offsets[e, 0] >= 0)
        & max_context[s]
        & (e >= s)
        & (e - s + 1 <= max_answer_length)
    )


def _spans_from_pairs(
    starts: np.ndarray,
    ends: np.ndarray,
    valid: np.ndarray,
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    offsets: np.ndarray,
) -> list[_Span]:
    out = []
    for i, j in zip(*np.nonzero(valid)):
        s, e = int(starts[i]), int(ends[j])
        sl, el = float(start_logits[s]), float(end_logits[e])
        out.append(_Span(sl + el, sl, el, int(offsets[s, 0]), int(offsets[e, 1])))
    return out


def window_candidates(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    offsets: np.ndarray,
    max_context: np.ndarray,
    options: PostprocessOptions,
    *,
    exhaustive: bool = False,
) -> list[_Span]:
    """Answer candidates of one window: logits [T], offsets [T, 2], max_context [T].

    Pairs the top-n start and end tokens, or every token pair with `exhaustive`. The list
    is in pairing order: sort it stably by score (highest first) before use.
    """
    if exhaustive:
        starts = ends = np.arange(len(start_logits))
    else:
        starts = top_indexes(start_logits, options.n_best_size)
        ends = top_indexes(end_logits, options.n_best_size)
    valid = _valid_pairs(starts, ends, offsets, max_context, options.max_answer_length)
    return _spans_from_pairs(starts, ends, valid, start_logits, end_logits, offsets)


def _softmax(scores: Sequence[float]) -> list[float]:
    x = np.asarray(scores, np.float64)
    e = np.exp(x - x.max())
    return (e / e.sum()).tolist()


def predict_example(
    example: SquadExample,
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    offsets: np.ndarray,
    max_context: np.ndarray,
    options: PostprocessOptions,
) -> tuple[str, list[dict], float | None]:
    """(answer text, n-best list, score_diff or None for v1.1) for one question.

    start_logits, end_logits, max_context: [W, T], offsets [W, T, 2] for its W windows.
    """
    spans: list[_Span] = []
    for w in range(len(start_logits)):
        spans += window_candidates(
            start_logits[w], end_logits[w], offsets[w], max_context[w], options
        )
    if not spans:  # rare: no top-n pair is valid; search every pair
        for w in range(len(start_logits)):
            spans += window_candidates(
                start_logits[w],
                end_logits[w],
                offsets[w],
                max_context[w],
                options,
                exhaustive=True,
            )
    spans.sort(key=lambda c: -c.score)  # stable: earlier windows / better starts first

    entries: list[tuple[str, float, float, float]] = []  # text, score, start, end logits
    null = None
    if options.version_2_with_negative:
        null_scores = start_logits[:, 0] + end_logits[:, 0]
        w = int(np.argmin(null_scores))
        null = ("", float(null_scores[w]), float(start_logits[w, 0]), float(end_logits[w, 0]))
    ranked = [
        (example.context[c.char_start : c.char_end], c.score, c.start_logit, c.end_logit)
        for c in spans
    ]
    if null is not None:
        # The null answer takes part in the ranking like any span (BERT adds it to the
        # preliminary predictions), and is appended if it did not make the n best.
        pos = next((i for i, r in enumerate(ranked) if r[1] < null[1]), len(ranked))
        ranked.insert(pos, null)
    seen: set[str] = set()
    for entry in ranked:
        if len(entries) >= options.n_best_size:
            break
        if entry[0] in seen:
            continue
        seen.add(entry[0])
        entries.append(entry)
    if null is not None and "" not in seen:
        entries.append(null)
    if not entries:
        entries.append(("", 0.0, 0.0, 0.0))
    probs = _softmax([e[1] for e in entries])
    nbest = [
        {"text": text, "probability": p, "start_logit": sl, "end_logit": el}
        for (text, _, sl, el), p in zip(entries, probs)
    ]

    best_text = example.context[spans[0].char_start : spans[0].char_end] if spans else ""
    if null is None:
        return best_text, nbest, None
    if not spans:
        return "", nbest, NO_SPAN_SCORE_DIFF
    score_diff = null[1] - spans[0].score
    answer = "" if score_diff > options.null_score_diff_threshold else best_text
    return answer, nbest, score_diff


def postprocess(
    examples: Sequence[SquadExample],
    example_index: np.ndarray,
    offsets: np.ndarray,
    max_context: np.ndarray,
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    options: PostprocessOptions,
) -> SquadPredictions:
    """Predictions for every example from its windows' logits.

    example_index [F] (window -> example), offsets [F, T, 2], max_context [F, T],
    start_logits / end_logits [F, T] (float). An example without windows predicts "".
    """
    example_index = np.asarray(example_index)
    order = np.argsort(example_index, kind="stable")
    bounds = np.searchsorted(example_index[order], np.arange(len(examples) + 1))
    out = SquadPredictions({}, {}, {})
    for i, ex in enumerate(examples):
        rows = order[bounds[i] : bounds[i + 1]]
        if len(rows) == 0:
            out.predictions[ex.qid] = ""
            out.nbest[ex.qid] = [
                {"text": "", "probability": 1.0, "start_logit": 0.0, "end_logit": 0.0}
            ]
            if options.version_2_with_negative:
                out.null_odds[ex.qid] = NO_SPAN_SCORE_DIFF
            continue
        text, nbest, diff = predict_example(
            ex,
            np.asarray(start_logits[rows], np.float64),
            np.asarray(end_logits[rows], np.float64),
            offsets[rows],
            max_context[rows],
            options,
        )
        out.predictions[ex.qid] = text
        out.nbest[ex.qid] = nbest
        if diff is not None:
            out.null_odds[ex.qid] = diff
    return out
