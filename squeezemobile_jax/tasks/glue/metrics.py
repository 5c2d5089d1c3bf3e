"""GLUE metrics (pure NumPy), the per-task score, the GLUE average and the dev table.

Metrics take predictions and gold labels as 1-D arrays ([N] label ids, or [N] float scores
for STS-B) and return a float in the metric's own range (accuracy in [0, 1], correlations in
[-1, 1]). Where a metric is undefined because one side is constant (MCC's or a correlation's
denominator is 0), it is 0.0, as scikit-learn does for MCC; F1 with no positive predictions and
no positive labels is 0.0.

A task's score is the unweighted mean of its metrics (GLUE paper §3.4). The GLUE average is the
mean over the nine tasks, MNLI counting once as the mean of its matched and mismatched scores
(how the site weighs MNLI-m/mm is not documented; this choice is stated in every table).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

Metric = Callable[[np.ndarray, np.ndarray], float]
# Dev sets in leaderboard order; MNLI's two dev sets are one task in the average.
GLUE_DEV_SETS: tuple[str, ...] = (
    "CoLA", "SST-2", "MRPC", "STS-B", "QQP", "MNLI-m", "MNLI-mm", "QNLI", "RTE", "WNLI",
)  # fmt: skip
METRIC_TITLES = {
    "mcc": "MCC",
    "accuracy": "acc",
    "f1": "F1",
    "pearson": "Pearson",
    "spearman": "Spearman",
}


def _check(pred: np.ndarray, gold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, gold = np.asarray(pred).reshape(-1), np.asarray(gold).reshape(-1)
    if pred.shape != gold.shape:
        raise ValueError(f"{pred.shape[0]} predictions but {gold.shape[0]} labels")
    if pred.size == 0:
        raise ValueError("no examples to score")
    return pred, gold


def accuracy(pred: np.ndarray, gold: np.ndarray) -> float:
    """Share of exact matches. pred, gold: [N] label ids."""
    pred, gold = _check(pred, gold)
    return float(np.mean(pred == gold))


def f1_score(pred: np.ndarray, gold: np.ndarray, positive: int = 1) -> float:
    """Binary F1 of class `positive`: 2TP / (2TP + FP + FN); 0.0 when that is 0 / 0."""
    pred, gold = _check(pred, gold)
    tp = np.sum((pred == positive) & (gold == positive))
    fp = np.sum((pred == positive) & (gold != positive))
    fn = np.sum((pred != positive) & (gold == positive))
    denominator = 2 * tp + fp + fn
    return float(2 * tp / denominator) if denominator else 0.0


def matthews_corrcoef(pred: np.ndarray, gold: np.ndarray) -> float:
    """Matthews correlation (Gorodkin's R_K for K classes; the usual MCC for two).

    With confusion matrix C (rows gold, columns predicted), t = row sums, p = column sums,
    c = trace, s = N: (c s - p.t) / sqrt((s^2 - p.p)(s^2 - t.t)); 0.0 when a factor is 0.
    """
    pred, gold = _check(pred, gold)
    classes, codes = np.unique(np.concatenate([gold, pred]), return_inverse=True)
    k, n = len(classes), len(gold)
    confusion = np.zeros((k, k), np.float64)
    np.add.at(confusion, (codes[:n], codes[n:]), 1.0)
    t, p = confusion.sum(axis=1), confusion.sum(axis=0)
    c, s = np.trace(confusion), float(n)
    denominator = np.sqrt((s * s - p @ p) * (s * s - t @ t))
    return float((c * s - p @ t) / denominator) if denominator else 0.0


def pearson(pred: np.ndarray, gold: np.ndarray) -> float:
    """Pearson correlation of two [N] float arrays; 0.0 when either is constant."""
    pred, gold = _check(pred, gold)
    if np.all(pred == pred[0]) or np.all(gold == gold[0]):
        return 0.0  # tested exactly: a float mean of equal values need not equal them
    x = pred.astype(np.float64) - np.mean(pred, dtype=np.float64)
    y = gold.astype(np.float64) - np.mean(gold, dtype=np.float64)
    denominator = np.sqrt(np.sum(x * x) * np.sum(y * y))
    return float(np.sum(x * y) / denominator) if denominator else 0.0


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks [N]; tied values share the mean of the ranks they span."""
    values = np.asarray(values).reshape(-1)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    # Start of each run of equal values in sorted order.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    mean_rank = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(values), np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def spearman(pred: np.ndarray, gold: np.ndarray) -> float:
    """Spearman correlation: Pearson of the average ranks."""
    pred, gold = _check(pred, gold)
    return pearson(average_ranks(pred), average_ranks(gold))


METRICS: dict[str, Metric] = {
    "accuracy": accuracy,
    "f1": f1_score,
    "mcc": matthews_corrcoef,
    "pearson": pearson,
    "spearman": spearman,
}


def compute_metrics(names: Sequence[str], pred: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """{name: value} for the metrics `names` (keys of `METRICS`)."""
    return {name: METRICS[name](pred, gold) for name in names}


def task_score(metrics: Mapping[str, float]) -> float:
    """The leaderboard's score of one task: the unweighted mean of its metrics."""
    if not metrics:
        raise ValueError("no metrics to average")
    return float(np.mean(list(metrics.values())))


def glue_average(scores: Mapping[str, float], include_wnli: bool = True) -> float | None:
    """Mean task score over the GLUE tasks in `scores` (keys from `GLUE_DEV_SETS`).

    MNLI enters once, as the mean of "MNLI-m" and "MNLI-mm". None when a task is missing.
    """
    tasks = [s for s in GLUE_DEV_SETS if include_wnli or s != "WNLI"]
    if any(s not in scores for s in tasks):
        return None
    per_task = [scores[s] for s in tasks if not s.startswith("MNLI")]
    per_task.append((scores["MNLI-m"] + scores["MNLI-mm"]) / 2.0)
    return float(np.mean(per_task))


def dev_table_markdown(rows: Sequence[Mapping]) -> str:
    """A markdown table of dev results.

    rows: [{"name": "MRPC", "metrics": {"accuracy": .., "f1": ..}, "score": ..,
    "hyperparameters": "lr 5e-05, batch 32, 3 epochs"}], in any order. Scores are shown x100.
    Ends with the GLUE average (with and without WNLI) when every task is present.
    """
    order = {name: i for i, name in enumerate(GLUE_DEV_SETS)}
    rows = sorted(rows, key=lambda r: order.get(r["name"], len(order)))
    lines = [
        "| task | metrics | score | hyperparameters |",
        "|---|---|---|---|",
    ]
    for row in rows:
        metrics = " / ".join(
            f"{METRIC_TITLES.get(k, k)} {100 * v:.1f}" for k, v in row["metrics"].items()
        )
        lines.append(
            f"| {row['name']} | {metrics} | {100 * row['score']:.1f} | "
            f"{row.get('hyperparameters', '')} |"
        )
    scores = {r["name"]: r["score"] for r in rows}
    for include_wnli, label in ((True, "GLUE average"), (False, "GLUE average without WNLI")):
        average = glue_average(scores, include_wnli)
        value = "n/a (not every task ran)" if average is None else f"{100 * average:.1f}"
        lines.append(f"| **{label}** | MNLI = mean of m/mm | {value} | |")
    return "\n".join(lines) + "\n"
