"""GLUE metrics, scores and the fine-tuning / distillation losses against hand-computed values."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from squeezemobile_jax.tasks.glue import finetune_loss, soft_cross_entropy, teacher_label_order
from squeezemobile_jax.tasks.glue.metrics import (
    GLUE_DEV_SETS,
    accuracy,
    average_ranks,
    compute_metrics,
    dev_table_markdown,
    f1_score,
    glue_average,
    matthews_corrcoef,
    pearson,
    spearman,
    task_score,
)


def test_accuracy():
    assert accuracy(np.array([0, 1, 1, 0, 2]), np.array([0, 1, 0, 0, 2])) == pytest.approx(0.8)


def test_f1_including_no_positives():
    # TP = 2, FP = 1, FN = 1 -> 2*2 / (4 + 1 + 1)
    pred, gold = np.array([1, 1, 0, 0, 1, 0]), np.array([1, 0, 1, 0, 1, 0])
    assert f1_score(pred, gold) == pytest.approx(4 / 6)
    # No positive predictions: TP = 0 -> F1 = 0 (not a division error).
    assert f1_score(np.zeros(3, int), np.array([0, 1, 0])) == 0.0
    # No positives anywhere: 0 / 0 is defined as 0.
    assert f1_score(np.zeros(4, int), np.zeros(4, int)) == 0.0


def test_mcc_binary_constant_and_three_class():
    pred = np.array([1, 1, 0, 0, 1, 0, 1, 0])
    gold = np.array([1, 0, 1, 0, 1, 0, 1, 1])
    # TP 3, TN 2, FP 1, FN 2: (3*2 - 1*2) / sqrt(4 * 5 * 3 * 4)
    assert matthews_corrcoef(pred, gold) == pytest.approx(4 / math.sqrt(240))
    # A constant predictor has no correlation: 0, not NaN.
    assert matthews_corrcoef(np.ones(8, int), gold) == 0.0
    assert matthews_corrcoef(np.zeros(8, int), gold) == 0.0
    # Three classes (Gorodkin): C = [[1,1,0],[0,2,0],[1,0,1]], t = (2,2,2), p = (2,3,1),
    # c = 4, s = 6: (24 - 12) / sqrt((36 - 14) * (36 - 12)).
    gold3, pred3 = np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 1, 1, 2, 0])
    assert matthews_corrcoef(pred3, gold3) == pytest.approx(12 / math.sqrt(22 * 24))
    assert matthews_corrcoef(gold3, gold3) == pytest.approx(1.0)


def test_pearson_spearman_with_ties_and_average_ranks():
    x, y = np.array([1.0, 2, 3, 4]), np.array([2.0, 4, 5, 9])
    # deviations (-1.5,-.5,.5,1.5) and (-3,-1,0,4): 11 / sqrt(5 * 26)
    assert pearson(x, y) == pytest.approx(11 / math.sqrt(130))
    assert list(average_ranks(np.array([10, 20, 20, 30, 20]))) == [1, 3, 3, 5, 3]
    # ranks (1, 2.5, 2.5, 4) and (1, 3, 2, 4): 4.5 / sqrt(4.5 * 5)
    assert spearman(np.array([1.0, 2, 2, 3]), np.array([1.0, 3, 2, 4])) == pytest.approx(
        4.5 / math.sqrt(22.5)
    )
    assert pearson(np.full(4, 2.0), y) == 0.0  # constant predictions: 0, not NaN
    # Constant inputs whose float mean is inexact (mean([-2.8] * 3) != -2.8): still 0, not -1.
    assert np.mean(np.full(3, -2.8)) != -2.8
    assert pearson(np.full(3, -2.8), np.full(3, 2.8)) == 0.0
    assert spearman(np.full(3, -2.8), np.array([1.0, 2.0, 3.0])) == 0.0
    assert spearman(y, y) == pytest.approx(1.0)


def test_compute_metrics_and_task_score():
    m = compute_metrics(
        ("accuracy", "f1"), np.array([1, 1, 0, 0, 1, 0]), np.array([1, 0, 1, 0, 1, 0])
    )
    assert m == pytest.approx({"accuracy": 4 / 6, "f1": 4 / 6})
    assert task_score({"pearson": 0.9, "spearman": 0.8}) == pytest.approx(0.85)
    with pytest.raises(ValueError, match="3 predictions but 2 labels"):
        accuracy(np.zeros(3), np.zeros(2))


def test_glue_average_counts_mnli_once():
    scores = {name: 0.5 for name in GLUE_DEV_SETS}
    scores["MNLI-m"], scores["MNLI-mm"] = 0.8, 0.6
    assert glue_average(scores) == pytest.approx((8 * 0.5 + 0.7) / 9)
    assert glue_average(scores, include_wnli=False) == pytest.approx((7 * 0.5 + 0.7) / 8)
    del scores["RTE"]
    assert glue_average(scores) is None
    rows = [{"name": "RTE", "metrics": {"accuracy": 0.625}, "score": 0.625}]
    table = dev_table_markdown(rows)
    assert "| RTE | acc 62.5 | 62.5 |" in table and "not every task ran" in table


def test_soft_cross_entropy_and_distillation_loss():
    student = jnp.array([[0.0, 0.0]])
    teacher = jnp.array([[math.log(3.0), 0.0]])
    # T = 2: the student's softened distribution is uniform, so H = ln 2 whatever the
    # teacher's; times T^2 = 4.
    assert float(soft_cross_entropy(student, teacher, 2.0)[0]) == pytest.approx(4 * math.log(2))
    # T = 1: teacher probabilities (3/4, 1/4), student log-probs ln(1/2): H = ln 2.
    assert float(soft_cross_entropy(student, teacher, 1.0)[0]) == pytest.approx(math.log(2))
    batch = {"labels": jnp.array([0]), "teacher_logits": teacher}
    loss, metrics = finetune_loss(
        student, batch, regression=False, distill_weight=0.25, temperature=2.0
    )
    # 0.75 * CE(ln 2) + 0.25 * 4 ln 2
    assert float(loss) == pytest.approx(1.75 * math.log(2))
    assert float(metrics["accuracy"]) == 1.0  # argmax of a tie is class 0
    plain, _ = finetune_loss(student, {"labels": jnp.array([1])}, regression=False)
    assert float(plain) == pytest.approx(math.log(2))
    reg = {"labels": jnp.array([3.0]), "teacher_logits": jnp.array([[2.0]])}
    loss, _ = finetune_loss(jnp.array([[1.0]]), reg, regression=True, distill_weight=0.5)
    assert float(loss) == pytest.approx(0.5 * 4.0 + 0.5 * 1.0)


def test_teacher_label_order_follows_id2label(tmp_path):
    from squeezemobile_jax.tasks.glue import get_task

    # A teacher trained with BERT's MNLI order (contradiction, entailment, neutral).
    (tmp_path / "config.json").write_text(
        '{"id2label": {"0": "contradiction", "1": "entailment", "2": "neutral"}}'
    )
    order = teacher_label_order(str(tmp_path), get_task("mnli"))
    # our ids: entailment, neutral, contradiction -> teacher columns 1, 2, 0
    assert list(order) == [1, 2, 0]
    (tmp_path / "config.json").write_text('{"id2label": {"0": "LABEL_0", "1": "LABEL_1"}}')
    assert list(teacher_label_order(str(tmp_path), get_task("rte"))) == [0, 1]
