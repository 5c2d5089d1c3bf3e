"""SQuAD evaluation as the official v1.1 / v2.0 scripts compute it (pure functions).

Answers are normalised (lower case, punctuation removed, the articles a/an/the removed,
whitespace collapsed); a question scores the maximum over its gold answers of exact match
and token F1. Totals are percentages.

v2.0 rules (used for a v2 file or any file with unanswerable questions): gold answers that
normalise to "" are dropped (none left: gold = [""]), an empty side gives F1 = 1 only if both
are empty, and with no-answer probabilities (`na_probs`, e.g. BERT's `null_odds.json`) a
question whose probability exceeds `na_prob_thresh` counts as answered "no answer" (without
them every probability is 0.0, as in the official script). The threshold search
(`best_thresh`, only with probabilities) reports the best exact / F1 over all cut-offs.

A question without a prediction scores 0 and still counts in the totals (v1.1 behaviour; the
official v2.0 script cannot score such a file at all).

    metrics = evaluate(golds, predictions, version_2=True, na_probs=null_odds)
    metrics = evaluate_files("dev-v2.0.json", "predictions.json", "null_odds.json")
"""

from __future__ import annotations

import collections
import json
import logging
import os
import re
import string
from collections.abc import Mapping, Sequence

log = logging.getLogger(__name__)

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation, replace a/an/the by a space, collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> int:
    """1 if the normalised strings are equal, else 0."""
    return int(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str, *, version_2: bool = True) -> float:
    """F1 between the bags of normalised tokens.

    An empty side gives int(both empty) under v2.0; v1.1 gives 0 whenever nothing overlaps.
    """
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if version_2 and (not pred_tokens or not gold_tokens):
        return float(pred_tokens == gold_tokens)
    same = sum((collections.Counter(pred_tokens) & collections.Counter(gold_tokens)).values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def gold_for_scoring(answers: Sequence[str], *, version_2: bool) -> list[str]:
    """The gold texts a question is scored against ([""] for a v2 no-answer question)."""
    if not version_2:
        return list(answers)
    kept = [a for a in answers if normalize_answer(a)]
    return kept or [""]


def raw_scores(
    golds: Mapping[str, Sequence[str]],
    predictions: Mapping[str, str],
    *,
    version_2: bool,
) -> tuple[dict[str, float], dict[str, float]]:
    """Per-question exact and F1 (0 to 1), maxed over gold answers; missing predictions = 0."""
    exact, f1 = {}, {}
    missing = [qid for qid in golds if qid not in predictions]
    if missing:
        log.warning(
            "%d of %d questions have no prediction (they score 0), e.g. %s",
            len(missing),
            len(golds),
            missing[:3],
        )
    for qid, answers in golds.items():
        pred = predictions.get(qid)
        if pred is None:
            exact[qid] = f1[qid] = 0.0
            continue
        gold = gold_for_scoring(answers, version_2=version_2)
        exact[qid] = float(max(exact_match(pred, a) for a in gold))
        f1[qid] = max(token_f1(pred, a, version_2=version_2) for a in gold)
    return exact, f1


def apply_no_answer_threshold(
    scores: Mapping[str, float],
    na_probs: Mapping[str, float],
    has_answer: Mapping[str, bool],
    na_prob_thresh: float,
) -> dict[str, float]:
    """Scores after treating questions with na_prob > thresh as predicted "no answer"."""
    out = {}
    for qid, score in scores.items():
        if na_probs[qid] > na_prob_thresh:
            out[qid] = float(not has_answer[qid])
        else:
            out[qid] = score
    return out


def best_thresh(
    predictions: Mapping[str, str],
    scores: Mapping[str, float],
    na_probs: Mapping[str, float],
    has_answer: Mapping[str, bool],
) -> tuple[float, float]:
    """(best total score in %, its na_prob threshold) over all no-answer cut-offs.

    Starting from "no answer for every question", questions are answered in order of rising
    na_prob: an answerable one adds its score, an unanswerable one with a non-empty
    prediction loses its point. The threshold is the na_prob of the last question answered
    at the best total (0.0 if answering none is best).
    """
    score = best = float(sum(1 for qid in scores if not has_answer[qid]))
    thresh = 0.0
    for qid in sorted(na_probs, key=lambda k: na_probs[k]):
        if qid not in scores:
            continue
        if has_answer[qid]:
            score += scores[qid]
        elif predictions.get(qid):
            score -= 1
        if score > best:
            best, thresh = score, na_probs[qid]
    return 100.0 * best / max(len(scores), 1), float(thresh)


def _totals(exact: Mapping[str, float], f1: Mapping[str, float], qids: Sequence[str]) -> dict:
    n = len(qids)
    return {
        "exact": 100.0 * sum(exact[q] for q in qids) / n if n else 0.0,
        "f1": 100.0 * sum(f1[q] for q in qids) / n if n else 0.0,
        "total": n,
    }


def evaluate(
    golds: Mapping[str, Sequence[str]],
    predictions: Mapping[str, str],
    *,
    version_2: bool,
    na_probs: Mapping[str, float] | None = None,
    na_prob_thresh: float = 1.0,
) -> dict[str, float]:
    """exact, f1, total, HasAns_* / NoAns_* (when such questions exist) and, with `na_probs`,
    best_exact, best_exact_thresh, best_f1, best_f1_thresh.

    golds: {qid: [gold answer texts]} ([] = no answer); predictions: {qid: text} ("" = no
    answer); na_probs: {qid: no-answer score}, required for every question.
    """
    has_answer = {qid: bool(answers) for qid, answers in golds.items()}
    exact_raw, f1_raw = raw_scores(golds, predictions, version_2=version_2)
    if na_probs is not None:
        missing = [qid for qid in golds if qid not in na_probs]
        if missing:
            raise ValueError(
                f"{len(missing)} questions have no no-answer probability, e.g. {missing[:3]}"
            )
    # Without probabilities every question has na_prob 0.0, as in the official v2.0 script:
    # a negative threshold then counts every question as answered "no answer".
    thresholded = na_probs if na_probs is not None else dict.fromkeys(golds, 0.0)
    exact = apply_no_answer_threshold(exact_raw, thresholded, has_answer, na_prob_thresh)
    f1 = apply_no_answer_threshold(f1_raw, thresholded, has_answer, na_prob_thresh)
    out: dict[str, float] = dict(_totals(exact, f1, list(golds)))
    for name, want in (("HasAns", True), ("NoAns", False)):
        qids = [q for q, h in has_answer.items() if h == want]
        if qids:
            out.update({f"{name}_{k}": v for k, v in _totals(exact, f1, qids).items()})
    if na_probs is not None:
        best_exact, exact_thresh = best_thresh(predictions, exact_raw, na_probs, has_answer)
        best_f1, f1_thresh = best_thresh(predictions, f1_raw, na_probs, has_answer)
        out.update(
            best_exact=best_exact,
            best_exact_thresh=exact_thresh,
            best_f1=best_f1,
            best_f1_thresh=f1_thresh,
        )
    return out


def _read_json_map(path: str | os.PathLike, what: str, value_type: type | tuple) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"{os.fspath(path)}: {what} file not found") from None
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{os.fspath(path)}:{e.lineno}:{e.colno}: not valid JSON ({e.msg})"
        ) from None
    if not isinstance(data, dict):
        raise ValueError(f"{os.fspath(path)}: expected a JSON object {{question id: {what}}}")
    for qid, value in data.items():
        if isinstance(value, bool) or not isinstance(value, value_type):
            raise ValueError(f"{os.fspath(path)}: question id {qid!r}: {value!r} is not a {what}")
    return data


def evaluate_files(
    data_path: str | os.PathLike,
    predictions_path: str | os.PathLike,
    na_prob_path: str | os.PathLike | None = None,
    *,
    na_prob_thresh: float = 1.0,
) -> dict[str, float]:
    """`evaluate` on a SQuAD data file and `{qid: text}` (and `{qid: na_prob}`) JSON files.

    v2.0 rules apply when the file's version is 2.x or it has unanswerable questions.
    """
    from squeezemobile_jax.tasks.squad.examples import is_version_2, read_squad_file

    data = read_squad_file(data_path)
    golds = {e.qid: [a.text for a in e.answers] for e in data.examples}
    predictions = _read_json_map(predictions_path, "prediction text", str)
    na_probs = None
    if na_prob_path is not None:
        raw = _read_json_map(na_prob_path, "no-answer probability", (int, float))
        na_probs = {k: float(v) for k, v in raw.items()}
    return evaluate(
        golds,
        predictions,
        version_2=is_version_2(data.version, data.examples),
        na_probs=na_probs,
        na_prob_thresh=na_prob_thresh,
    )
