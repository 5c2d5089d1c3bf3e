"""Pure example-building functions against hand-computed values and BERT's reference loops."""

from __future__ import annotations

import random

import numpy as np
import pytest

from squeezemobile_jax.data.pretraining_examples import (
    ExampleOptions,
    Pair,
    SpecialIds,
    choose_masked_positions,
    choose_pair,
    corrupt_tokens,
    empty_batch,
    epoch_order,
    example_rng,
    held_out_documents,
    masking_candidates,
    num_to_mask,
    plan_chunks,
    truncation_amounts,
    write_example,
)
from squeezemobile_jax.data.token_cache import TokenizedCorpus


def bert_truncate_seq_pair(tokens_a: list, tokens_b: list, max_num_tokens: int, rng) -> None:
    """google-research/bert create_pretraining_data.truncate_seq_pair, verbatim logic."""
    while True:
        total_length = len(tokens_a) + len(tokens_b)
        if total_length <= max_num_tokens:
            break
        trunc_tokens = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        assert len(trunc_tokens) >= 1
        if rng.random() < 0.5:
            del trunc_tokens[0]
        else:
            trunc_tokens.pop()


def test_truncation_lengths_equal_bert_loop() -> None:
    rng = np.random.default_rng(0)
    ref_rng = random.Random(0)
    for la in range(1, 25):
        for lb in range(1, 25):
            for max_tokens in range(2, 50, 3):
                a, b = list(range(la)), list(range(100, 100 + lb))
                bert_truncate_seq_pair(a, b, max_tokens, ref_rng)
                af, ab, bf, bb = truncation_amounts(rng, la, lb, max_tokens)
                assert min(af, ab, bf, bb) >= 0
                assert (la - af - ab, lb - bf - bb) == (len(a), len(b)), (la, lb, max_tokens)


def test_truncation_front_cuts_follow_bert_distribution() -> None:
    # BERT's loop: each cut is from the front with probability 1/2.
    la, lb, max_tokens, trials = 40, 10, 20, 20000
    ref_rng = random.Random(1)
    ref = np.zeros(31)
    for _ in range(trials):
        a = list(range(la))
        bert_truncate_seq_pair(a, list(range(lb)), max_tokens, ref_rng)
        ref[a[0]] += 1  # tokens cut from the front of A
    rng = np.random.default_rng(2)
    ours = np.zeros(31)
    for _ in range(trials):
        ours[truncation_amounts(rng, la, lb, max_tokens)[0]] += 1
    assert np.abs(ref / trials - ours / trials).max() < 0.015
    assert abs((ours * np.arange(31)).sum() / trials - 15.0) < 0.1  # 30 cuts, mean 15


@pytest.mark.parametrize(
    "n, p, cap, expected",
    [
        (125, 0.15, 20, 19),
        (10, 0.15, 20, 2),
        (3, 0.15, 20, 1),
        (1, 0.15, 20, 1),
        (200, 0.15, 20, 20),
    ],
)
def test_number_of_predictions(n: int, p: float, cap: int, expected: int) -> None:
    assert num_to_mask(n, p, cap) == expected


def test_masking_candidates_skip_special_and_unknown_tokens() -> None:
    special = SpecialIds(cls_id=2, sep_id=3, mask_id=4, pad_id=0, vocab_size=20, unk_id=1)
    #                [CLS] a  b [UNK] c [SEP] d  e [SEP] pad
    ids = np.array([2, 10, 11, 1, 12, 3, 13, 14, 3, 0])
    assert masking_candidates(ids, 4, 2, special.never_mask).tolist() == [1, 2, 4, 6, 7]
    assert masking_candidates(ids, 4, 2).tolist() == [1, 2, 3, 4, 6, 7]


def test_masked_positions_are_uniform_over_candidates() -> None:
    ids = np.zeros(16, np.int32)
    candidates = np.array([1, 2, 3, 4, 5, 7, 8, 9, 10])
    everything = choose_masked_positions(np.random.default_rng(0), ids, candidates, 9)
    assert everything.tolist() == candidates.tolist()
    counts = np.zeros(16)
    for seed in range(6000):
        pos = choose_masked_positions(np.random.default_rng(seed), ids, candidates, 3)
        assert len(pos) == 3 and len(set(pos.tolist())) == 3 and list(pos) == sorted(pos)
        counts[pos] += 1
    assert counts[[0, 6, 11, 12]].sum() == 0
    np.testing.assert_allclose(counts[candidates] / 6000, 3 / 9, atol=0.025)


def test_whole_word_masking_takes_whole_words() -> None:
    # ids: 5 "un", 6 "##believ", 7 "##able", 8 "cat", 9 "##s", 10 "dog"
    continuation = np.array([False] * 5 + [False, True, True, False, True, False])
    #            [CLS] un ##believ ##able cat ##s [SEP] ##s dog [SEP]
    ids = np.array([2, 5, 6, 7, 8, 9, 3, 9, 10, 3])
    candidates = masking_candidates(ids, 5, 2)
    words = [{1, 2, 3}, {4, 5}, {7}, {8}]  # a "##" piece opening B starts its own word
    seen = set()
    for seed in range(400):
        for budget in (2, 3, 4):
            rng = np.random.default_rng(seed)
            pos = set(choose_masked_positions(rng, ids, candidates, budget, continuation).tolist())
            assert len(pos) <= budget
            assert all(w <= pos or not (w & pos) for w in words)
            seen.add((budget, frozenset(pos)))
    assert all(not ({1, 2, 3} & set(p)) for b, p in seen if b == 2)
    assert (3, frozenset({1, 2, 3})) in seen


def test_corruption_is_80_10_10() -> None:
    rng = np.random.default_rng(0)
    original = np.full(200_000, 7)
    out = corrupt_tokens(rng, original, mask_id=3, vocab_size=30522)
    assert abs((out == 3).mean() - 0.8) < 0.005
    assert abs((out == 7).mean() - 0.1) < 0.005
    others = out[(out != 3) & (out != 7)]
    assert abs(len(others) / len(out) - 0.1) < 0.005
    assert others.min() >= 0 and others.max() < 30522 and len(np.unique(others)) > 10000


def test_plan_chunks_hand_example() -> None:
    # doc0 sentence lengths [3, 4, 5, 2]; doc1 [10]; doc2 seven 1-token sentences.
    docs = [[[1] * 3, [1] * 4, [1] * 5, [1] * 2], [[1] * 10], [[1]] * 7]
    corpus = TokenizedCorpus.from_documents(docs)
    chunks = plan_chunks(corpus.sentence_offsets, corpus.document_offsets, np.arange(3), 6)
    assert chunks.start.tolist() == [0, 2, 4, 5, 11]
    assert chunks.end.tolist() == [2, 4, 5, 11, 12]
    assert chunks.document.tolist() == [0, 0, 1, 2, 2]
    sub = plan_chunks(corpus.sentence_offsets, corpus.document_offsets, np.array([2, 0]), 6)
    assert sub.start.tolist() == [0, 2, 5, 11] and sub.document.tolist() == [0, 0, 2, 2]


def _unique_id_corpus(num_docs: int, sentences: int, seed: int = 0) -> TokenizedCorpus:
    """Every token id is its position + 10, so a segment's origin can be read from its ids."""
    rng = np.random.default_rng(seed)
    next_id, docs = 10, []
    for _ in range(num_docs):
        doc = []
        for length in rng.integers(2, 13, sentences):
            doc.append(list(range(next_id, next_id + length)))
            next_id += length
        docs.append(doc)
    return TokenizedCorpus.from_documents(docs)


@pytest.mark.parametrize("task", ["nsp", "sop"])
def test_pairs_come_from_the_right_places(task: str) -> None:
    corpus = _unique_id_corpus(6, 60)
    so, do = corpus.sentence_offsets, corpus.document_offsets
    options = ExampleOptions(max_seq_length=64, task=task)
    chunks = plan_chunks(so, do, np.arange(6), options.max_num_tokens)
    sentence_starts = set(so.tolist())
    doc_of = np.repeat(np.arange(6), np.diff(so[do]))  # document of each token
    labels = []
    for i in range(3000):
        c = i % len(chunks)
        pair = choose_pair(example_rng(5, 0, i), so, do, chunks, c, options)
        labels.append(pair.label)
        first, second = sorted([(pair.a_lo, pair.a_hi), (pair.b_lo, pair.b_hi)])
        assert {pair.a_lo, pair.a_hi, pair.b_lo, pair.b_hi} <= sentence_starts
        assert pair.a_lo < pair.a_hi and pair.b_lo < pair.b_hi
        same_doc = doc_of[pair.a_lo] == doc_of[pair.b_lo]
        if task == "sop" and pair.label == 1 and same_doc:  # swapped: B precedes A
            assert (pair.b_lo, pair.b_hi) == first and pair.b_hi == pair.a_lo
        elif pair.label == 0:  # actual next: B right after A, from the chunk
            assert pair.a_lo == so[chunks.start[c]] and pair.a_hi == pair.b_lo
            assert pair.b_hi <= so[chunks.end[c]]
        else:  # random B: another document
            assert not same_doc
    assert abs(np.mean(labels) - 0.5) < 0.05


def test_layout_and_recorded_ids() -> None:
    tokens = np.array([10, 11, 12, 20, 21], np.int32)
    options = ExampleOptions(max_seq_length=10, max_predictions_per_seq=4, masked_lm_prob=0.5)
    special = SpecialIds(cls_id=2, sep_id=3, mask_id=4, pad_id=0, vocab_size=30)
    out = empty_batch(2, options)
    write_example(
        np.random.default_rng(0), tokens, Pair(0, 3, 3, 5, 1, False), options, special, out, 1
    )
    assert not out["input_ids"][0].any() and not out["masked_lm_weights"][0].any()
    ids, pos = out["input_ids"][1].copy(), out["masked_lm_positions"][1]
    w = out["masked_lm_weights"][1]
    k = int(w.sum())
    assert k == 2 and w.tolist() == [1, 1, 0, 0]  # round(5 * 0.5) = 2 (half to even)
    ids[pos[:k]] = out["masked_lm_ids"][1, :k]
    assert ids.tolist() == [2, 10, 11, 12, 3, 20, 21, 3, 0, 0]
    assert out["token_type_ids"][1].tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 0, 0]
    assert out["attention_mask"][1].tolist() == [1] * 8 + [0, 0]
    assert out["next_sentence_labels"].tolist() == [0, 1]
    assert set(pos[:k].tolist()) <= {1, 2, 3, 5, 6}


def test_held_out_documents_and_orders() -> None:
    assert held_out_documents(10, 3).tolist() == [0, 4, 9]
    assert held_out_documents(10, 0).tolist() == []
    with pytest.raises(ValueError, match="leaves no training document"):
        held_out_documents(3, 3)
    order = epoch_order(7, 0, 1000)
    assert np.array_equal(np.sort(order), np.arange(1000))
    assert not np.array_equal(order, epoch_order(7, 1, 1000))
    assert np.array_equal(order, epoch_order(7, 0, 1000))


def test_example_streams_are_keyed() -> None:
    draw = [example_rng(1, 2, 3).random(4).tolist() for _ in range(2)]
    assert draw[0] == draw[1]
    others = [
        example_rng(1, 2, 4),
        example_rng(1, 3, 3),
        example_rng(2, 2, 3),
        example_rng(1, 2, 3, 1),
    ]
    assert all(o.random(4).tolist() != draw[0] for o in others)


def test_reused_generator_draws_the_fresh_stream() -> None:
    # A generator left mid-buffer (a pending 32-bit half, a partly used 4-word block) and
    # re-keyed gives, draw for draw, what a newly built generator for that key gives.
    reused = np.random.Generator(np.random.Philox(123))
    for seed, epoch, index, stream in [(1, 2, 3, 0), (7, 0, 5, 1), (1, 2, 3, 0), (9, 4, 0, 3)]:
        reused.integers(0, 2**32, size=3, dtype=np.uint32)
        reused.random(5)
        again = example_rng(seed, epoch, index, stream, reuse=reused)
        assert again is reused
        fresh = example_rng(seed, epoch, index, stream)
        for g_draw, f_draw in [
            (
                again.integers(0, 2**32, size=3, dtype=np.uint32),
                fresh.integers(0, 2**32, size=3, dtype=np.uint32),
            ),
            (again.random(7), fresh.random(7)),
            (again.permutation(11), fresh.permutation(11)),
            (again.integers(0, 1000, size=9), fresh.integers(0, 1000, size=9)),
        ]:
            np.testing.assert_array_equal(g_draw, f_draw)


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="task"):
        ExampleOptions(task="mlm")
    with pytest.raises(ValueError, match="max_seq_length"):
        ExampleOptions(max_seq_length=4)
    with pytest.raises(ValueError, match="masked_lm_prob"):
        ExampleOptions(masked_lm_prob=0.0)
