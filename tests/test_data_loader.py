"""PretrainingLoader: statistics over 10,000 examples, determinism, host slices, prefetch, eval
split and throughput."""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import operator
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_data_support import bert_tokenizer, bert_vocab_path, data_cache_dir  # noqa: F401

from squeezemobile_jax.data.prefetch import (
    PrefetchIterator,
    ProcessPrefetchIterator,
    prefetch_steps,
)
from squeezemobile_jax.data.pretraining_examples import SpecialIds
from squeezemobile_jax.data.pretraining_loader import BATCH_KEYS, PretrainingLoader
from squeezemobile_jax.data.token_cache import TokenizedCorpus
from squeezemobile_jax.data.tokenizer import WordPieceTokenizer

REPO = Path(__file__).resolve().parents[1]
CLS, SEP, MASK, FIRST_ID = 1, 2, 3, 10
T, P = 128, 20


def unique_id_corpus(num_docs: int, sentences: int, seed: int = 0) -> TokenizedCorpus:
    """Token id = FIRST_ID + its position in the corpus; sentences of 2..12 tokens."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 13, num_docs * sentences)
    so = np.concatenate([[0], np.cumsum(lengths)])
    do = np.arange(num_docs + 1, dtype=np.int64) * sentences
    tokens = np.arange(FIRST_ID, FIRST_ID + so[-1], dtype=np.int32)
    return TokenizedCorpus(tokens, so, do)


def synthetic_special(corpus: TokenizedCorpus) -> SpecialIds:
    return SpecialIds(
        cls_id=CLS, sep_id=SEP, mask_id=MASK, pad_id=0, vocab_size=corpus.num_tokens + FIRST_ID
    )


def collect(loader: PretrainingLoader, steps: int) -> dict[str, np.ndarray]:
    batches = [loader.batch_at(s) for s in range(steps)]
    return {k: np.concatenate([b[k] for b in batches]) for k in BATCH_KEYS}


def restore(batch: dict[str, np.ndarray]) -> np.ndarray:
    """Input ids with the recorded original ids put back at the masked positions."""
    ids = batch["input_ids"].copy()
    rows, cols = np.nonzero(batch["masked_lm_weights"])
    ids[rows, batch["masked_lm_positions"][rows, cols]] = batch["masked_lm_ids"][rows, cols]
    return ids


def segments(
    ids: np.ndarray, types: np.ndarray, mask: np.ndarray, cls: int = CLS, sep: int = SEP
) -> tuple[np.ndarray, np.ndarray]:
    """Segments A and B of one restored row laid out as [CLS] A [SEP] B [SEP] + padding."""
    n = int(mask.sum())
    assert mask[:n].all() and not mask[n:].any() and not ids[n:].any()
    la = int(np.count_nonzero(types[:n] == 0)) - 2
    assert ids[0] == cls and ids[la + 1] == sep and ids[n - 1] == sep
    assert (types[: la + 2] == 0).all() and (types[la + 2 : n] == 1).all() and not types[n:].any()
    return ids[1 : la + 1], ids[la + 2 : n - 1]


@pytest.fixture(scope="module")
def synthetic() -> TokenizedCorpus:
    return unique_id_corpus(num_docs=40, sentences=400)


@pytest.fixture(scope="module")
def long_docs() -> TokenizedCorpus:
    return unique_id_corpus(num_docs=5, sentences=4000)


@pytest.fixture(scope="module")
def synthetic_stats(long_docs: TokenizedCorpus) -> dict[str, np.ndarray]:
    loader = PretrainingLoader(
        long_docs,
        synthetic_special(long_docs),
        global_batch_size=500,
        process_index=0,
        process_count=1,
        seed=3,
    )
    return collect(loader, 20)  # 10,000 examples


def test_synthetic_examples_have_bert_statistics(
    long_docs: TokenizedCorpus, synthetic_stats: dict[str, np.ndarray]
) -> None:
    b = synthetic_stats
    ids = restore(b)
    doc_len = np.diff(long_docs.sentence_offsets[long_docs.document_offsets])
    doc_end = FIRST_ID + np.cumsum(doc_len)  # first id after each document
    positives = 0
    for r in range(len(ids)):
        a, s = segments(ids[r], b["token_type_ids"][r], b["attention_mask"][r])
        # Every segment is a contiguous run of the corpus (recorded masked ids are right).
        assert (np.diff(a) == 1).all() and (np.diff(s) == 1).all()
        doc_a, doc_b = np.searchsorted(doc_end, [a[0], s[0]], side="right")
        if b["next_sentence_labels"][r] == 0:  # actual next: B follows A in the same document
            positives += 1
            assert doc_a == doc_b and s[0] > a[-1]
        else:
            assert doc_a != doc_b
    n = len(ids)
    assert n == 10_000
    assert abs(positives / n - 0.5) < 0.02
    # Short targets: about 10% of examples stop before filling max_seq_length (documents are
    # long, so a full-target example falls short only at a document's end, well under 1%).
    short = np.mean(b["attention_mask"].sum(1) < T)
    assert abs(short - 0.10) < 0.02, short
    assert (b["attention_mask"].sum(1) <= T).all()


def _check_masking(b: dict[str, np.ndarray], special_ids: set[int], mask_id: int) -> None:
    ids = restore(b)
    w = b["masked_lm_weights"]
    rows, cols = np.nonzero(w)
    pos = b["masked_lm_positions"][rows, cols]
    # Weights are a prefix of ones; unused slots are zero.
    assert ((w == 1) | (w == 0)).all() and (np.diff(w, axis=1) <= 0).all()
    assert not b["masked_lm_positions"][w == 0].any() and not b["masked_lm_ids"][w == 0].any()
    # Never a special token or padding: position 0 is [CLS], and the restored id is no special.
    assert (pos > 0).all() and b["attention_mask"][rows, pos].all()
    assert not np.isin(ids[rows, pos], list(special_ids)).any()
    assert (np.diff(b["masked_lm_positions"], axis=1)[w[:, 1:] > 0] > 0).all()  # sorted
    attended = ids[b["attention_mask"] == 1]
    non_special = np.count_nonzero(~np.isin(attended, list(special_ids)))
    assert abs(len(pos) / non_special - 0.15) < 0.005, len(pos) / non_special
    inputs = b["input_ids"][rows, pos]
    originals = b["masked_lm_ids"][rows, cols]
    assert abs(np.mean(inputs == mask_id) - 0.8) < 0.015
    assert abs(np.mean(inputs == originals) - 0.1) < 0.015
    assert abs(np.mean((inputs != mask_id) & (inputs != originals)) - 0.1) < 0.015


def test_synthetic_masking_statistics(synthetic_stats: dict[str, np.ndarray]) -> None:
    _check_masking(synthetic_stats, {0, CLS, SEP, MASK}, MASK)


@pytest.fixture(scope="module")
def builtin_loader(
    bert_tokenizer: WordPieceTokenizer,  # noqa: F811
    data_cache_dir: Path,  # noqa: F811
) -> PretrainingLoader:
    return PretrainingLoader(
        "builtin",
        bert_tokenizer,
        global_batch_size=500,
        process_index=0,
        process_count=1,
        cache_dir=data_cache_dir,
        eval_documents=40,
        show_progress=False,
    )


def test_builtin_corpus_statistics_over_10000_examples(
    builtin_loader: PretrainingLoader,
    bert_tokenizer: WordPieceTokenizer,  # noqa: F811
) -> None:
    b = collect(builtin_loader, 20)
    ids = restore(b)
    specials, unk = set(bert_tokenizer.special_ids), bert_tokenizer.unk_id
    for r in range(len(ids)):
        row = ids[r], b["token_type_ids"][r], b["attention_mask"][r]
        a, s = segments(*row, cls=bert_tokenizer.cls_id, sep=bert_tokenizer.sep_id)
        text = np.concatenate([a, s])  # [UNK] is text; the other special ids never are
        assert len(a) and len(s) and not np.isin(text, list(specials - {unk})).any()
    _check_masking(b, specials, bert_tokenizer.mask_id)
    # As in BERT, a chunk of a single sentence (one-sentence docstrings, very long sentences,
    # document tails) always takes a random B: about 5% of this corpus's chunks, so positives
    # fall a little under the 50% they reach on the multi-sentence synthetic corpus above.
    assert 0.45 < np.mean(b["next_sentence_labels"] == 0) < 0.51
    for key, dtype, shape in [
        ("input_ids", np.int32, (T,)),
        ("attention_mask", np.int32, (T,)),
        ("token_type_ids", np.int32, (T,)),
        ("masked_lm_positions", np.int32, (P,)),
        ("masked_lm_ids", np.int32, (P,)),
        ("masked_lm_weights", np.float32, (P,)),
        ("next_sentence_labels", np.int32, ()),
    ]:
        assert b[key].dtype == dtype and b[key].shape == (10_000, *shape)


def test_whole_word_masking_masks_whole_words(
    bert_tokenizer: WordPieceTokenizer,  # noqa: F811
    bert_vocab_path: Path,  # noqa: F811
    data_cache_dir: Path,  # noqa: F811
) -> None:
    loader = PretrainingLoader(
        "builtin",
        bert_tokenizer,
        whole_word_masking=True,
        global_batch_size=250,
        process_index=0,
        process_count=1,
        cache_dir=data_cache_dir,
        show_progress=False,
    )
    vocab = bert_vocab_path.read_text(encoding="utf-8").split("\n")
    b = collect(loader, 4)
    ids = restore(b)
    masked_total = 0
    for r in range(len(ids)):
        n = int(b["attention_mask"][r].sum())
        masked = np.zeros(T, bool)
        k = int(b["masked_lm_weights"][r].sum())
        masked[b["masked_lm_positions"][r, :k]] = True
        masked_total += k
        assert k <= round((n - 3) * 0.15) or k == 1
        # A word is a piece plus the "##" pieces after it, within one segment.
        sep = int(np.flatnonzero(ids[r, :n] == bert_tokenizer.sep_id)[0])
        for lo, hi in ((1, sep), (sep + 1, n - 1)):
            start = lo
            for i in range(lo + 1, hi + 1):
                if i == hi or not vocab[ids[r, i]].startswith("##"):
                    word = masked[start:i]
                    assert word.all() or not word.any(), (r, start, i)
                    start = i
    assert 0.12 < masked_total / (b["attention_mask"].sum() - 3 * len(ids)) <= 0.152


def _digest(batch: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in BATCH_KEYS:
        h.update(key.encode() + np.ascontiguousarray(batch[key]).tobytes())
    return h.hexdigest()


def test_same_step_same_batch_in_any_process(
    builtin_loader: PretrainingLoader,
    bert_vocab_path: Path,  # noqa: F811
    data_cache_dir: Path,  # noqa: F811
) -> None:
    here = _digest(builtin_loader.batch_at(11))
    assert _digest(builtin_loader.batch_at(11)) == here
    assert _digest(builtin_loader.batch_at(12)) != here
    code = (
        "import hashlib, numpy as np\n"
        "from squeezemobile_jax.data.pretraining_loader import PretrainingLoader, BATCH_KEYS\n"
        f"loader = PretrainingLoader('builtin', {str(bert_vocab_path)!r}, global_batch_size=500,"
        f" process_index=0, process_count=1, cache_dir={str(data_cache_dir)!r},"
        " eval_documents=40, show_progress=False)\n"
        "batch = loader.batch_at(11)\n"
        "h = hashlib.sha256()\n"
        "for key in BATCH_KEYS:\n"
        "    h.update(key.encode() + np.ascontiguousarray(batch[key]).tobytes())\n"
        "print(h.hexdigest())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "123"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == here


def test_example_is_a_function_of_seed_epoch_and_index(synthetic: TokenizedCorpus) -> None:
    special = synthetic_special(synthetic)
    loader = PretrainingLoader(
        synthetic, special, global_batch_size=64, process_index=0, process_count=1, seed=9
    )
    n = loader.examples_per_epoch
    step = n // 64  # a batch that straddles the end of epoch 0
    batch = loader.batch_at(step)
    for row in (0, 63):
        epoch, index = divmod(step * 64 + row, n)
        one = loader.example_at(epoch, index)
        assert all(np.array_equal(one[k][0], batch[k][row]) for k in BATCH_KEYS)
    # Redrawn every epoch: the same position in the next epoch is another example.
    assert not np.array_equal(
        loader.example_at(0, 5)["input_ids"], loader.example_at(1, 5)["input_ids"]
    )
    other_seed = PretrainingLoader(
        synthetic, special, global_batch_size=64, process_index=0, process_count=1, seed=10
    )
    assert not np.array_equal(other_seed.batch_at(0)["input_ids"], loader.batch_at(0)["input_ids"])


@pytest.mark.parametrize("hosts", [1, 2, 4])
def test_host_slices_tile_the_global_batch(hosts: int) -> None:
    corpus = unique_id_corpus(num_docs=4, sentences=60)  # ~30 examples: steps cross epochs
    special = synthetic_special(corpus)
    kwargs = dict(global_batch_size=8, eval_documents=1, eval_batch_size=4, seed=4)
    single = PretrainingLoader(corpus, special, process_index=0, process_count=1, **kwargs)
    parts = [
        PretrainingLoader(corpus, special, process_index=h, process_count=hosts, **kwargs)
        for h in range(hosts)
    ]
    assert single.examples_per_epoch < 40
    for step in range(12):
        whole = single.batch_at(step)
        for key in BATCH_KEYS:
            joined = np.concatenate([p.batch_at(step)[key] for p in parts])
            assert np.array_equal(joined, whole[key]), (step, key)
    for i in range(single.num_eval_batches):
        whole = single.eval_batch_at(i)
        for key in BATCH_KEYS:
            assert np.array_equal(
                np.concatenate([p.eval_batch_at(i)[key] for p in parts]), whole[key]
            )


def test_iterator_prefetches_from_start_step_and_resumes(synthetic: TokenizedCorpus) -> None:
    special = synthetic_special(synthetic)
    loader = PretrainingLoader(
        synthetic, special, global_batch_size=32, process_index=0, process_count=1, start_step=3
    )
    with loader.iterator() as it:
        first = [next(it) for _ in range(4)]
        assert it.step == 7
    for i, batch in enumerate(first):
        assert _digest(batch) == _digest(loader.batch_at(3 + i))
    # A restarted run (its state is just the step) continues identically.
    resumed = iter(
        PretrainingLoader(
            synthetic, special, global_batch_size=32, process_index=0, process_count=1, start_step=5
        )
    )
    assert _digest(next(resumed)) == _digest(first[2])
    resumed.close()


def test_prefetch_propagates_errors_at_the_failing_step() -> None:
    def produce(step: int) -> int:
        if step == 2:
            raise RuntimeError("bad step")
        return step * 10

    it = PrefetchIterator(produce, start_step=0, depth=2)
    assert next(it) == 0 and next(it) == 10
    with pytest.raises(RuntimeError, match="bad step"):
        next(it)
    with pytest.raises(StopIteration):
        next(it)


def test_worker_processes_make_the_batches_of_the_thread(
    builtin_loader: PretrainingLoader, synthetic: TokenizedCorpus
) -> None:
    # A cached corpus travels to the workers as its file names, not its tokens.
    assert builtin_loader.corpus.cache_directory is not None
    tokens = builtin_loader.corpus.tokens
    pickled = pickle.dumps(builtin_loader.corpus)
    assert len(pickled) < 1000 < tokens.nbytes
    copy = pickle.loads(pickled)
    assert isinstance(copy.tokens, np.memmap) and np.array_equal(copy.tokens, tokens)
    in_memory = PretrainingLoader(
        synthetic,
        synthetic_special(synthetic),
        global_batch_size=32,
        process_index=0,
        process_count=1,
    )
    for loader in (builtin_loader, in_memory):
        workers = pickle.loads(pickle.dumps(loader))
        workers.num_workers = 2
        with workers.iterator(start_step=5) as it:
            got = [next(it) for _ in range(5)]
            assert it.step == 10
        for i, batch in enumerate(got):
            assert _digest(batch) == _digest(loader.batch_at(5 + i)), i
    with pytest.raises(ValueError, match="num_workers=-1 must be >= 0"):
        PretrainingLoader(synthetic, synthetic_special(synthetic), num_workers=-1)


def test_worker_processes_raise_errors_at_the_failing_step() -> None:
    # 60 // step: fine for steps -2 and -1, ZeroDivisionError at step 0.
    with prefetch_steps(functools.partial(operator.floordiv, 60), -2, workers=2) as it:
        assert isinstance(it, ProcessPrefetchIterator)
        assert next(it) == -30 and next(it) == -60
        with pytest.raises(ZeroDivisionError):
            next(it)
        with pytest.raises(StopIteration):
            next(it)


def test_worker_processes_outlive_sigterm_and_ctrl_c() -> None:
    # A preemption signals every process; the consumer saves a checkpoint at the next step,
    # for which it still needs its batches.
    with prefetch_steps(functools.partial(operator.mul, 3), 0, workers=2) as it:
        assert next(it) == 0
        for pid in list(it._pool._processes):
            os.kill(pid, signal.SIGTERM)
            os.kill(pid, signal.SIGINT)
        time.sleep(0.5)
        assert [next(it) for _ in range(6)] == [3, 6, 9, 12, 15, 18]


def test_a_killed_worker_is_a_clear_error() -> None:
    with prefetch_steps(functools.partial(operator.mul, 3), 0, workers=1) as it:
        assert next(it) == 0
        for pid in list(it._pool._processes):
            os.kill(pid, signal.SIGKILL)
        while not it._pool._broken:  # steps made before the kill are waiting to be taken
            time.sleep(0.01)
        with pytest.raises(RuntimeError, match=r"worker process died while making step \d"):
            for _ in range(10):  # the steps made before the kill may still arrive
                next(it)


def test_a_worker_killed_after_making_every_step_in_flight_is_a_clear_error() -> None:
    """The steps in flight were all made before the kill: they are delivered, then the next
    call (nothing in flight, the pool broken) reports the death."""
    with prefetch_steps(functools.partial(operator.mul, 3), 0, workers=1) as it:
        assert next(it) == 0
        concurrent.futures.wait(list(it._in_flight))
        for pid in list(it._pool._processes):
            os.kill(pid, signal.SIGKILL)
        while not it._pool._broken:
            time.sleep(0.01)
        delivered = []
        with pytest.raises(RuntimeError, match=r"worker process died while making step \d"):
            for _ in range(10):
                delivered.append(next(it))
        assert delivered == [3 * (k + 1) for k in range(len(delivered))] and delivered


def test_eval_split_is_fixed_and_held_out(synthetic: TokenizedCorpus) -> None:
    special = synthetic_special(synthetic)
    kwargs = dict(
        global_batch_size=64, process_index=0, process_count=1, eval_documents=4, eval_batch_size=32
    )
    loader = PretrainingLoader(synthetic, special, seed=1, **kwargs)
    later = PretrainingLoader(synthetic, special, seed=1, start_step=1000, **kwargs)
    assert loader.num_eval_batches == loader.num_eval_examples // 32 > 0
    eval_ids = set()
    for i in range(loader.num_eval_batches):
        batch = loader.eval_batch_at(i)
        assert _digest(batch) == _digest(loader.eval_batch_at(i)) == _digest(later.eval_batch_at(i))
        eval_ids |= set(restore(batch)[batch["attention_mask"] == 1].tolist())
    # Held-out documents (0, 13, 26, 39 of 40: spread evenly) never reach training batches.
    so, do = synthetic.sentence_offsets, synthetic.document_offsets
    held = [(FIRST_ID + so[do[d]], FIRST_ID + so[do[d + 1]]) for d in (0, 13, 26, 39)]
    ids = restore(collect(loader, 40))
    ids = ids[ids >= FIRST_ID]
    for lo, hi in held:
        assert not ((ids >= lo) & (ids < hi)).any()
    eval_tokens = np.array(sorted(eval_ids - {0, CLS, SEP}))
    in_held = np.zeros(len(eval_tokens), bool)
    for lo, hi in held:
        in_held |= (eval_tokens >= lo) & (eval_tokens < hi)
    assert in_held.all()


def test_configuration_errors_and_defaults(synthetic: TokenizedCorpus) -> None:
    special = synthetic_special(synthetic)
    with pytest.raises(
        ValueError, match="global_batch_size=10 must be a positive multiple of process_count=4"
    ):
        PretrainingLoader(
            synthetic, special, global_batch_size=10, process_index=0, process_count=4
        )
    with pytest.raises(ValueError, match="process_index=2 must be in"):
        PretrainingLoader(synthetic, special, global_batch_size=8, process_index=2, process_count=2)
    with pytest.raises(ValueError, match="leaves no training document"):
        PretrainingLoader(synthetic, special, process_index=0, process_count=1, eval_documents=40)
    loader = PretrainingLoader.from_config(
        {"corpus": synthetic, "global_batch_size": 16, "task": "sop", "max_seq_length": 64},
        special,
        process_index=0,
        process_count=1,
    )
    assert loader.batch_at(0)["input_ids"].shape == (16, 64)
    with pytest.raises(ValueError, match=r"unknown pretraining data option\(s\) \['batch_size'\]"):
        PretrainingLoader.from_config({"corpus": synthetic, "batch_size": 16}, special)
    # Without process_index / process_count the layout comes from JAX (one process here).
    default = PretrainingLoader(synthetic, special, global_batch_size=16)
    assert (default.process_index, default.process_count) == (0, 1)


def test_throughput(builtin_loader: PretrainingLoader) -> None:
    builtin_loader.batch_at(0)
    start = time.perf_counter()
    steps = 6
    for step in range(1, steps + 1):
        builtin_loader.batch_at(step)
    rate = steps * builtin_loader.local_batch_size / (time.perf_counter() - start)
    print(f"\npretraining data: {rate:,.0f} examples/s (length 128, one thread)")
    assert rate > 500


def test_from_an_ml_collections_config(
    tmp_path: Path,
    bert_vocab_path: Path,  # noqa: F811
) -> None:
    import ml_collections

    text = tmp_path / "corpus.txt"
    text.write_text(
        "\n".join("".join(f"Sentence {i} of document {d}.\n" for i in range(30)) for d in range(6))
    )
    config = ml_collections.ConfigDict(
        {
            "corpus": {"kind": "text", "paths": [str(text)]},
            "tokenizer": str(bert_vocab_path),
            "max_seq_length": 32,
            "max_predictions_per_seq": 5,
            "global_batch_size": 4,
            "cache_dir": str(tmp_path / "cache"),
            "show_progress": False,
        }
    )
    loader = PretrainingLoader.from_config(config, process_index=0, process_count=1, start_step=2)
    with loader.iterator() as it:
        batch = next(it)
    assert batch["input_ids"].shape == (4, 32) and batch["masked_lm_ids"].shape == (4, 5)
    assert _digest(batch) == _digest(loader.batch_at(2))
