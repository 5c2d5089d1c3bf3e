"""Distillation losses against float64 NumPy written out loop by loop, with padding."""

from __future__ import annotations

import numpy as np
import pytest

from squeezemobile_jax.tasks.distill import losses as dl

L, B, N, T, H = 3, 2, 4, 5, 6
MASK = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.int32)  # row 0 has two pad tokens
MIN = float(np.finfo(np.float32).min)


def _hidden(rng) -> np.ndarray:
    # Different scales and offsets per feature, so means and variances differ between sides.
    return (
        rng.standard_normal((L, B, T, H)) * rng.uniform(0.5, 3, H) + rng.uniform(-1, 1, H)
    ).astype(np.float32)


def _scores(rng) -> np.ndarray:
    """Masked pre-softmax scores as the model returns them (finfo.min added at pad keys)."""
    s = (rng.standard_normal((L, B, N, T, T)) * 2).astype(np.float32)
    return s + ((1 - MASK)[None, :, None, None, :] * MIN).astype(np.float32)


def _real_tokens():
    return [(b, t) for b in range(B) for t in range(T) if MASK[b, t]]


def _ln(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.float64)
    mu = sum(v) / len(v)
    var = sum((x - mu) ** 2 for x in v) / len(v)
    return (v - mu) / np.sqrt(var + 1e-12)


@pytest.fixture
def tensors():
    rng = np.random.default_rng(0)
    return _hidden(rng), _hidden(rng), _scores(rng), _scores(rng)


def test_feature_map_transfer(tensors):
    teacher, student, _, _ = tensors
    got = np.asarray(dl.feature_map_transfer(teacher, student, MASK))
    want = []
    for l in range(L):
        per_token = [
            np.mean((_ln(teacher[l, b, t]) - _ln(student[l, b, t])) ** 2) for b, t in _real_tokens()
        ]
        want.append(np.mean(per_token))
    np.testing.assert_allclose(got, want, rtol=2e-5)
    # Padding is left out: changing the student at pad positions changes nothing.
    moved = student.copy()
    moved[:, 0, 3:] += 100.0
    np.testing.assert_array_equal(np.asarray(dl.feature_map_transfer(teacher, moved, MASK)), got)


def test_attention_transfer(tensors):
    _, _, t_scores, s_scores = tensors
    got = np.asarray(dl.attention_transfer(t_scores, s_scores, MASK))
    want = []
    for l in range(L):
        per_token = []
        for b, q in _real_tokens():
            keys = [k for k in range(T) if MASK[b, k]]
            ce = 0.0
            for n in range(N):
                ts = np.array([float(t_scores[l, b, n, q, k]) for k in keys])
                ss = np.array([float(s_scores[l, b, n, q, k]) for k in keys])
                p = np.exp(ts - ts.max()) / np.exp(ts - ts.max()).sum()
                log_q = ss - ss.max() - np.log(np.exp(ss - ss.max()).sum())
                ce += -np.sum(p * log_q)
            per_token.append(ce / N)
        want.append(np.mean(per_token))
    np.testing.assert_allclose(got, want, rtol=2e-5)
    # A cross-entropy: equal distributions give the teacher's entropy, which is > 0.
    same = np.asarray(dl.attention_transfer(t_scores, t_scores, MASK))
    assert np.all(same > 0) and np.all(got > same)


def test_mean_and_variance_matching(tensors):
    teacher, student, _, _ = tensors
    got_mean = np.asarray(dl.mean_matching(teacher, student, MASK))
    got_var = np.asarray(dl.variance_matching(teacher, student, MASK))
    want_mean, want_var = [], []
    for l in range(L):
        gaps_mean, gaps_var = [], []
        for b, t in _real_tokens():
            tv, sv = teacher[l, b, t].astype(np.float64), student[l, b, t].astype(np.float64)
            gaps_mean.append((tv.mean() - sv.mean()) ** 2)
            gaps_var.append(abs(tv.var() - sv.var()))
        want_mean.append(np.mean(gaps_mean))
        want_var.append(np.mean(gaps_var))
    np.testing.assert_allclose(got_mean, want_mean, rtol=2e-5)
    np.testing.assert_allclose(got_var, want_var, rtol=2e-5)


def test_layer_terms_compare_layer_l_with_teacher_layer_l(tensors):
    """Each term of layer l depends on teacher layer l only (not the TF1 all-layers slip)."""
    teacher, student, t_scores, s_scores = tensors
    base = dl.layer_transfer_terms(teacher, student, t_scores, s_scores, MASK)
    moved = teacher.copy()
    moved[1] = moved[1] ** 2 * 3.0 + 1.0  # not affine: the layer norm does not undo it
    moved_scores = t_scores.copy()
    moved_scores[1, :, :, :, :3] *= 2.0
    after = dl.layer_transfer_terms(moved, student, moved_scores, s_scores, MASK)
    for name in dl.LAYER_TERMS:
        a, b = np.asarray(base[name]), np.asarray(after[name])
        np.testing.assert_array_equal(a[[0, 2]], b[[0, 2]], err_msg=name)
        assert a[1] != b[1], name


def test_layer_transfer_loss_weights_and_gates():
    terms = {
        "fmt": np.array([1.0, 2.0, 3.0], np.float32),
        "at": np.array([0.5, 0.25, 0.125], np.float32),
        "mean": np.array([1e-3, 2e-3, 4e-3], np.float32),
        "var": np.array([0.1, 0.2, 0.4], np.float32),
    }
    factors = {"fmt": 100.0, "at": 1.0, "mean": 5000.0, "var": 5.0}
    one = float(dl.layer_transfer_loss(terms, np.array([0.0, 1.0, 0.0], np.float32), factors))
    want_one = (100 * 2.0 + 1 * 0.25 + 5000 * 2e-3 + 5 * 0.2) / 3
    np.testing.assert_allclose(one, want_one, rtol=1e-6)
    every = float(dl.layer_transfer_loss(terms, np.ones(3, np.float32), factors))
    want_all = (100 * 6.0 + 1 * 0.875 + 5000 * 7e-3 + 5 * 0.7) / 3
    np.testing.assert_allclose(every, want_all, rtol=1e-6)


@pytest.mark.parametrize("alpha,temperature", [(0.5, 1.0), (0.3, 2.0)])
def test_distillation_mlm_terms(alpha, temperature):
    rng = np.random.default_rng(1)
    b, p, v = 2, 3, 7
    student = rng.standard_normal((b, p, v)).astype(np.float32) * 2
    teacher = rng.standard_normal((b, p, v)).astype(np.float32) * 2
    ids = rng.integers(0, v, (b, p)).astype(np.int32)
    weights = np.array([[1, 1, 0], [1, 0, 0]], np.float32)  # padded prediction slots
    batch = {"masked_lm_ids": ids, "masked_lm_weights": weights}
    got = {
        k: float(x)
        for k, x in dl.distillation_mlm_terms(
            student, teacher, batch, alpha=alpha, temperature=temperature
        ).items()
    }
    pd = kd = hits = 0.0
    for i in range(b):
        for j in range(p):
            if not weights[i, j]:
                continue
            s = student[i, j].astype(np.float64)
            t = teacher[i, j].astype(np.float64) / temperature
            soft = np.exp(t - t.max()) / np.exp(t - t.max()).sum()
            target = (1 - alpha) * soft
            target[ids[i, j]] += alpha
            log_p = s - s.max() - np.log(np.exp(s - s.max()).sum())
            pd += -np.sum(target * log_p)
            kd += -np.sum(soft * log_p)
            hits += float(np.argmax(teacher[i, j]) == ids[i, j])
    np.testing.assert_allclose(got["pd_nll"], pd, rtol=1e-5)
    np.testing.assert_allclose(got["kd_nll"], kd, rtol=1e-5)
    assert got["teacher_correct"] == hits
