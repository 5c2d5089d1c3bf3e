"""SQuAD metrics against hand-computed values (official v1.1 / v2.0 rules) and the
squad_eval script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from squeezemobile_jax.tasks.squad.metrics import (
    best_thresh,
    evaluate,
    evaluate_files,
    exact_match,
    normalize_answer,
    token_f1,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The  Quick, brown fox!", "quick brown fox"),
        ("an apple a day", "apple day"),
        ("Theatre and the anthem", "theatre and anthem"),  # articles only as whole words
        ("U.S.A.", "usa"),
        ("  \tNew\nYork  ", "new york"),
        ("the", ""),
        ("(1895-1943).", "18951943"),
    ],
)
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


def test_exact_match_ignores_case_punctuation_and_articles() -> None:
    assert exact_match("the Denver Broncos.", "Denver Broncos") == 1
    assert exact_match("Denver", "Denver Broncos") == 0


def test_token_f1_partial_overlaps() -> None:
    # [quick, brown, fox] vs [quick, fox, jumps]: 2 shared, P = R = 2/3.
    assert token_f1("the quick brown fox", "quick fox jumps") == pytest.approx(2 / 3)
    # Repeated tokens count once per match: [x, x, y] vs [x, y, y] share x and y.
    assert token_f1("x x y", "x y y") == pytest.approx(2 / 3)
    # [red, dog] vs [big, red, dog]: P = 1, R = 2/3, F1 = 0.8.
    assert token_f1("red dog", "big red dog") == pytest.approx(0.8)
    assert token_f1("cat", "dog") == 0.0


def test_empty_answers_v2_versus_v1() -> None:
    assert token_f1("", "", version_2=True) == 1.0
    assert token_f1("the", "", version_2=True) == 1.0  # both normalise to nothing
    assert token_f1("", "dog", version_2=True) == 0.0
    assert token_f1("", "", version_2=False) == 0.0  # v1.1: nothing overlaps


def test_several_gold_answers_take_the_maximum() -> None:
    golds = {"q": ["Denver Broncos", "the Broncos", "Broncos of Denver"]}
    out = evaluate(golds, {"q": "broncos"}, version_2=False)
    # EM: "broncos" == normalise("the Broncos"). F1 max: 1.0 from the same answer.
    assert out["exact"] == 100.0 and out["f1"] == 100.0
    out = evaluate(golds, {"q": "Denver"}, version_2=False)
    # F1 against [denver, broncos] = 2/3; against [broncos, of, denver] = 0.5.
    assert out["exact"] == 0.0 and out["f1"] == pytest.approx(100 * 2 / 3)


def test_v2_drops_gold_answers_that_normalise_to_nothing() -> None:
    golds = {"q": ["the", "Paris"]}
    assert evaluate(golds, {"q": ""}, version_2=True)["exact"] == 0.0  # gold is only "Paris"
    assert evaluate(golds, {"q": ""}, version_2=False)["exact"] == 100.0  # "the" -> "" == ""


def test_no_answer_questions_and_missing_predictions() -> None:
    golds = {"a": ["Paris"], "b": [], "c": [], "d": ["Rome"]}
    preds = {"a": "paris", "b": "", "c": "London"}  # d has no prediction
    out = evaluate(golds, preds, version_2=True)
    # exact: a 1, b 1 (empty for no-answer), c 0, d 0 (missing) -> 50.
    assert out["exact"] == 50.0 and out["f1"] == 50.0 and out["total"] == 4
    assert out["HasAns_exact"] == 50.0 and out["HasAns_total"] == 2
    assert out["NoAns_exact"] == 50.0 and out["NoAns_total"] == 2
    assert "best_f1" not in out
    v1 = evaluate({"a": ["Paris"], "d": ["Rome"]}, {"a": "Paris"}, version_2=False)
    assert v1["exact"] == 50.0 and v1["total"] == 2 and "NoAns_total" not in v1


# a: answerable, right (F1 1); b: answerable, F1 0.8; c: no answer but predicted "x";
# d: no answer, predicted ""; e: answerable, right.
GOLDS = {"a": ["Paris"], "b": ["big red dog"], "c": [], "d": [], "e": ["Rome"]}
PREDS = {"a": "Paris", "b": "red dog", "c": "x", "d": "", "e": "Rome"}
NA = {"a": -2.0, "b": 0.2, "c": 0.7, "d": 0.5, "e": 2.0}


def test_threshold_search_by_hand() -> None:
    # Order by na_prob: a, b, d, c, e. Start at 2 (the no-answer questions).
    # exact: a +1 -> 3 (best, thresh -2), b +0, d 0, c -1 -> 2, e +1 -> 3 (not better).
    # f1:    a +1 -> 3, b +0.8 -> 3.8 (best, thresh 0.2), d 0, c -1, e +1 -> 3.8 (tie).
    has = {q: bool(g) for q, g in GOLDS.items()}
    exact = {"a": 1.0, "b": 0.0, "c": 0.0, "d": 1.0, "e": 1.0}
    f1 = {"a": 1.0, "b": 0.8, "c": 0.0, "d": 1.0, "e": 1.0}
    assert best_thresh(PREDS, exact, NA, has) == (pytest.approx(60.0), -2.0)
    assert best_thresh(PREDS, f1, NA, has) == (pytest.approx(76.0), 0.2)
    # Answering nothing can be best: threshold stays 0.0.
    assert best_thresh({"c": "x"}, {"c": 0.0}, {"c": 0.3}, {"c": False}) == (100.0, 0.0)


def test_evaluate_with_no_answer_probabilities() -> None:
    out = evaluate(GOLDS, PREDS, version_2=True, na_probs=NA, na_prob_thresh=1.0)
    # na_prob > 1.0 only for e: counted as "no answer" -> 0. exact a1 b0 c0 d1 e0 = 2/5;
    # f1 a1 b.8 c0 d1 e0 = 2.8/5.
    assert out["exact"] == pytest.approx(40.0) and out["f1"] == pytest.approx(56.0)
    assert out["HasAns_exact"] == pytest.approx(100 / 3) and out["HasAns_f1"] == pytest.approx(60)
    assert out["NoAns_exact"] == 50.0 and out["NoAns_total"] == 2
    assert out["best_exact"] == pytest.approx(60.0) and out["best_exact_thresh"] == -2.0
    assert out["best_f1"] == pytest.approx(76.0) and out["best_f1_thresh"] == 0.2
    # Threshold 0.0: b (0.2), c, d, e count as no-answer: a1 b0 c1 d1 e0 = 60.
    assert evaluate(GOLDS, PREDS, version_2=True, na_probs=NA, na_prob_thresh=0.0)[
        "exact"
    ] == pytest.approx(60.0)
    with pytest.raises(ValueError, match="no no-answer probability"):
        evaluate(GOLDS, PREDS, version_2=True, na_probs={"a": 0.0})


def _gold_file(path: Path) -> Path:
    context = "Paris and Rome. A big red dog."
    qas = [
        {"id": "a", "question": "?", "answers": [{"text": "Paris", "answer_start": 0}]},
        {"id": "b", "question": "?", "answers": [{"text": "big red dog", "answer_start": 18}]},
        {"id": "c", "question": "?", "answers": [], "is_impossible": True},
        {"id": "d", "question": "?", "answers": [], "is_impossible": True},
        {"id": "e", "question": "?", "answers": [{"text": "Rome", "answer_start": 10}]},
    ]
    data = {
        "version": "v2.0",
        "data": [{"title": "t", "paragraphs": [{"context": context, "qas": qas}]}],
    }
    path.write_text(json.dumps(data))
    return path


def test_evaluate_files_and_script(tmp_path: Path) -> None:
    gold = _gold_file(tmp_path / "dev.json")
    (tmp_path / "pred.json").write_text(json.dumps(PREDS))
    (tmp_path / "na.json").write_text(json.dumps(NA))
    out = evaluate_files(gold, tmp_path / "pred.json", tmp_path / "na.json")
    assert out["exact"] == pytest.approx(40.0) and out["best_f1"] == pytest.approx(76.0)

    script = ROOT / "scripts" / "squad_eval.py"
    args = [str(gold), str(tmp_path / "pred.json"), "--na-prob-file", str(tmp_path / "na.json")]
    proc = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, check=True
    )
    printed = json.loads(proc.stdout)
    assert printed["exact"] == pytest.approx(40.0) and printed["total"] == 5
    assert printed["best_f1_thresh"] == 0.2 and printed["NoAns_total"] == 2

    # The official evaluate-v2.0.py without --na-prob-file gives every question na_prob 0.0:
    # with a negative threshold all count as answered "", so only c and d (no answer) score.
    args = [str(gold), str(tmp_path / "pred.json"), "--na-prob-thresh", "-0.5"]
    proc = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, check=True
    )
    printed = json.loads(proc.stdout)
    assert printed["exact"] == pytest.approx(40.0) and printed["f1"] == pytest.approx(40.0)
    assert printed["HasAns_exact"] == 0.0 and printed["NoAns_exact"] == 100.0
    assert "best_f1" not in printed
    # At the default threshold nothing changes: a1 b0 c0 d1 e1 = 60, F1 a1 b.8 c0 d1 e1 = 76.
    plain = evaluate_files(gold, tmp_path / "pred.json")
    assert plain["exact"] == pytest.approx(60.0) and plain["f1"] == pytest.approx(76.0)

    (tmp_path / "bad.json").write_text('{"a": 1}')
    proc = subprocess.run(
        [sys.executable, str(script), str(gold), str(tmp_path / "bad.json")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "question id 'a'" in proc.stderr
