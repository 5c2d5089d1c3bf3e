"""Post-processing on hand-made windows and logits; expected answers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from squeezemobile_jax.tasks.squad.examples import SquadExample
from squeezemobile_jax.tasks.squad.postprocess import (
    PostprocessOptions,
    postprocess,
    predict_example,
)

LOW = -10.0


def _window(t: int, first: int, token_chars: list[tuple[int, int]], owned: list[bool]):
    """offsets [t, 2] and max_context [t] for context tokens placed from position `first`."""
    offsets = np.full((t, 2), -1, np.int32)
    max_context = np.zeros(t, bool)
    offsets[first : first + len(token_chars)] = token_chars
    max_context[first : first + len(token_chars)] = owned
    return offsets, max_context


def _logits(t: int, values: dict[int, float], default: float = LOW) -> np.ndarray:
    x = np.full(t, default)
    for i, v in values.items():
        x[i] = v
    return x


# "Paris is big and old": Paris(0,5) is(6,8) big(9,12) and(13,16) old(17,20), placed at
# positions 4..8 of a 10-token window ([CLS] q q [SEP] ... [SEP]).
PARIS = "Paris is big and old"
PARIS_CHARS = [(0, 5), (6, 8), (9, 12), (13, 16), (17, 20)]


def _paris(**options):
    offsets, max_context = _window(10, 4, PARIS_CHARS, [True] * 5)
    start = np.array([9, 8, 0, 0, 1, 0, 5, 0, 2, 0], float)
    end = np.array([9, 0, 7, 0, 0, 0, 4, 0, 3, 0], float)
    ex = SquadExample("p", "?", PARIS, ())
    return predict_example(
        ex, start[None], end[None], offsets[None], max_context[None], PostprocessOptions(**options)
    )


def test_only_context_spans_and_nbest_probabilities() -> None:
    # n_best 3: starts 0, 1, 6; ends 0, 2, 6. Only (6, 6) is a context span: "big", 5 + 4.
    text, nbest, diff = _paris(n_best_size=3)
    assert text == "big" and diff is None
    assert nbest == [{"text": "big", "probability": 1.0, "start_logit": 5.0, "end_logit": 4.0}]

    # n_best 5: starts 0, 1, 6, 8, 4; ends 0, 2, 6, 8, 1. Context pairs: (6,6) 9 "big",
    # (6,8) 8 "big and old", (8,8) 5 "old", (4,6) 5 "Paris is big", (4,8) 4 "Paris is ... old".
    text, nbest, _ = _paris(n_best_size=5)
    assert text == "big"
    assert [e["text"] for e in nbest] == [
        "big",
        "big and old",
        "old",
        "Paris is big",
        "Paris is big and old",
    ]
    scores = np.array([9.0, 8.0, 5.0, 5.0, 4.0])
    want = np.exp(scores - 9) / np.exp(scores - 9).sum()
    np.testing.assert_allclose([e["probability"] for e in nbest], want, rtol=1e-12)
    assert nbest[3]["start_logit"] == 1.0 and nbest[3]["end_logit"] == 4.0


def test_max_answer_length() -> None:
    # Length <= 2 tokens leaves (6,6) "big" and (8,8) "old".
    _, nbest, _ = _paris(n_best_size=5, max_answer_length=2)
    assert [e["text"] for e in nbest] == ["big", "old"]


# Context "a b c d e f" (token i covers chars 2i..2i+1) in two windows of a T=8 layout
# ([CLS] q [SEP] c c c c [SEP]): window 0 holds tokens 0-3, window 1 tokens 2-5.
# Max context (BERT's rule): tokens 0, 1, 2 -> window 0; tokens 3, 4, 5 -> window 1.
LETTERS = "a b c d e f"
CHARS = [(2 * i, 2 * i + 1) for i in range(6)]


def _two_windows(owned0: list[bool], owned1: list[bool]):
    o0, m0 = _window(8, 3, CHARS[0:4], owned0)
    o1, m1 = _window(8, 3, CHARS[2:6], owned1)
    # Window 0: start logits 1 at token 0 (pos 3) and 10 at token 3 (pos 6); end logits 1 at
    # token 1 (pos 4) and 10 at token 3. Window 1: token 3 (pos 4) has start = end = 3.
    start = np.stack([_logits(8, {3: 1.0, 6: 10.0}), _logits(8, {4: 3.0})])
    end = np.stack([_logits(8, {4: 1.0, 6: 10.0}), _logits(8, {4: 3.0})])
    return start, end, np.stack([o0, o1]), np.stack([m0, m1])


def test_max_context_rule_across_windows() -> None:
    ex = SquadExample("l", "?", LETTERS, ())
    options = PostprocessOptions(n_best_size=20)
    start, end, offsets, max_context = _two_windows([1, 1, 1, 0], [0, 1, 1, 1])
    # Window 0's (token 3, token 3) scores 20 but token 3 is not max-context there. Best
    # valid: window 0 (token 0 .. token 3) = 1 + 10 = 11 "a b c d"; then window 1 (3, 3) =
    # 6 "d"; then window 0 (0, 1) = 2 "a b".
    text, nbest, _ = predict_example(ex, start, end, offsets, max_context, options)
    assert text == "a b c d"
    assert [e["text"] for e in nbest[:3]] == ["a b c d", "d", "a b"]
    # Without the rule (every token owned everywhere), window 0's (3, 3) = 20 wins.
    everywhere = np.ones_like(max_context)
    text, nbest, _ = predict_example(ex, start, end, offsets, everywhere, options)
    assert text == "d" and nbest[0]["start_logit"] == 10.0  # deduplicated: one "d" entry
    assert [e["text"] for e in nbest].count("d") == 1


def test_version_2_null_score_and_threshold() -> None:
    ex = SquadExample("l", "?", LETTERS, ())
    start, end, offsets, max_context = _two_windows([1, 1, 1, 0], [0, 1, 1, 1])
    start[0, 0] = end[0, 0] = 1.0  # null score of window 0: 2
    start[1, 0] = end[1, 0] = 0.5  # window 1: 1  -> null = min = 1
    v2 = PostprocessOptions(n_best_size=20, version_2_with_negative=True)
    text, nbest, diff = predict_example(ex, start, end, offsets, max_context, v2)
    # score_diff = 1 - 11 = -10 <= 0: answer the span.
    assert text == "a b c d" and diff == pytest.approx(-10.0)
    null = next(e for e in nbest if e["text"] == "")
    assert null["start_logit"] == 0.5 and null["end_logit"] == 0.5
    # The null entry ranks by its score 1: after "a b c d" 11, "d" 6, "a b" 2.
    assert [e["text"] for e in nbest[:4]] == ["a b c d", "d", "a b", ""]

    strict = PostprocessOptions(
        n_best_size=20, version_2_with_negative=True, null_score_diff_threshold=-10.5
    )
    text, _, diff = predict_example(ex, start, end, offsets, max_context, strict)
    assert text == "" and diff == pytest.approx(-10.0)  # -10 > -10.5

    start[1, 0] = end[1, 0] = 6.0  # null = min(2, 12) = 2: still answer
    assert predict_example(ex, start, end, offsets, max_context, v2)[2] == pytest.approx(-9.0)
    start[0, 0] = end[0, 0] = 7.0  # null = min(14, 12) = 12 > 11: no answer
    text, nbest, diff = predict_example(ex, start, end, offsets, max_context, v2)
    assert text == "" and diff == pytest.approx(1.0) and nbest[0]["text"] == ""


def test_duplicates_nbest_limit_and_appended_null() -> None:
    # "big dog big": big(0,3) dog(4,7) big(8,11) at positions 2..4 of T=6.
    ex = SquadExample("d", "?", "big dog big", ())
    offsets, max_context = _window(6, 2, [(0, 3), (4, 7), (8, 11)], [True] * 3)
    start = _logits(6, {0: -5.0, 2: 4.0, 3: 2.0, 4: 3.0})
    end = _logits(6, {0: -5.0, 2: 4.0, 3: 1.0, 4: 2.5})
    # Pairs: (2,2) 8 "big", (2,4) 6.5 "big dog big", (4,4) 5.5 "big" (dup), (2,3) 5
    # "big dog", (3,4) 4.5 "dog big", (3,3) 3 "dog". n_best 2 keeps "big", "big dog big";
    # the null (-10) did not make it and is appended.
    options = PostprocessOptions(n_best_size=2, version_2_with_negative=True)
    text, nbest, diff = predict_example(
        ex, start[None], end[None], offsets[None], max_context[None], options
    )
    assert [e["text"] for e in nbest] == ["big", "big dog big", ""]
    scores = np.array([8.0, 6.5, -10.0])
    want = np.exp(scores - 8) / np.exp(scores - 8).sum()
    np.testing.assert_allclose([e["probability"] for e in nbest], want, rtol=1e-12)
    assert text == "big" and diff == pytest.approx(-18.0)


def test_no_valid_top_pair_searches_every_pair() -> None:
    # n_best 1: top start "old" (pos 8), top end "Paris" (pos 4): end < start. Every pair:
    # start 8 can only end at 8: 3 + 1 = 4; start 4 with end 4: -1 + 2 = 1, with end 8:
    # -1 + 1 = 0; best "old".
    offsets, max_context = _window(10, 4, PARIS_CHARS, [True] * 5)
    start = _logits(10, {4: -1.0, 8: 3.0}, default=-20.0)
    end = _logits(10, {4: 2.0, 8: 1.0}, default=-20.0)
    ex = SquadExample("p", "?", PARIS, ())
    text, nbest, _ = predict_example(
        ex, start[None], end[None], offsets[None], max_context[None], PostprocessOptions(1)
    )
    assert text == "old" and len(nbest) == 1 and nbest[0]["start_logit"] == 3.0


def test_postprocess_groups_windows_by_example() -> None:
    examples = [
        SquadExample("first", "?", LETTERS, ()),
        SquadExample("lonely", "?", "no windows", ()),
        SquadExample("third", "?", PARIS, ()),
    ]
    start, end, offsets, max_context = _two_windows([1, 1, 1, 0], [0, 1, 1, 1])
    p_off, p_max = _window(8, 3, PARIS_CHARS[:4], [True] * 4)
    p_start, p_end = _logits(8, {5: 2.0}), _logits(8, {6: 2.0})  # "big and"
    # Windows interleaved: first, third, first.
    order = [0, 2, 0]
    preds = postprocess(
        examples,
        np.array(order),
        np.stack([offsets[0], p_off, offsets[1]]),
        np.stack([max_context[0], p_max, max_context[1]]),
        np.stack([start[0], p_start, start[1]]),
        np.stack([end[0], p_end, end[1]]),
        PostprocessOptions(version_2_with_negative=True),
    )
    assert preds.predictions == {"first": "a b c d", "lonely": "", "third": "big and"}
    assert set(preds.null_odds) == {"first", "lonely", "third"}
    # first: null = min(LOW+LOW, LOW+LOW) = -20; best 11: -31. third: -20 - 4 = -24.
    assert preds.null_odds["first"] == pytest.approx(-31.0)
    assert preds.null_odds["third"] == pytest.approx(-24.0)
    assert preds.null_odds["lonely"] > 1e6
