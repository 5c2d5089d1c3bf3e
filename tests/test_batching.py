"""Fixed-example batching: epoch permutations, host slices, padded evaluation."""

import numpy as np
import pytest

from squeezemobile_jax.data.batching import EpochBatches, eval_batches


def arrays(n=50):
    return {"x": np.arange(n) * 10, "y": np.arange(n) % 3}


def test_each_epoch_is_a_permutation_and_steps_are_pure():
    loader = EpochBatches(arrays(), 8, seed=1, process_index=0, process_count=1)
    assert loader.steps_per_epoch == 6
    epoch0 = np.concatenate([loader.batch_at(s)["x"] for s in range(6)])
    epoch1 = np.concatenate([loader.batch_at(s)["x"] for s in range(6, 12)])
    assert len(set(epoch0)) == 48 and len(set(epoch1)) == 48  # no repeats within an epoch
    assert not np.array_equal(epoch0, epoch1)  # reshuffled
    np.testing.assert_array_equal(loader.batch_at(7)["x"], loader.batch_at(7)["x"])
    with loader.iterator(start_step=5) as it:
        for step in range(5, 9):
            np.testing.assert_array_equal(next(it)["y"], loader.batch_at(step)["y"])


@pytest.mark.parametrize("hosts", [2, 4])
def test_host_slices_tile_the_global_batch(hosts):
    single = EpochBatches(arrays(), 8, seed=3, process_index=0, process_count=1)
    parts = [
        EpochBatches(arrays(), 8, seed=3, process_index=h, process_count=hosts)
        for h in range(hosts)
    ]
    for step in (0, 4, 13):
        joined = np.concatenate([p.batch_at(step)["x"] for p in parts])
        np.testing.assert_array_equal(joined, single.batch_at(step)["x"])


def test_eval_batches_pad_and_weight():
    batches = list(eval_batches(arrays(10), 4, process_index=0, process_count=1))
    assert [b["x"].shape for b in batches] == [(4,), (4,), (4,)]
    weights = np.concatenate([b["weight"] for b in batches])
    index = np.concatenate([b["example_index"] for b in batches])
    assert weights.sum() == 10 and list(index[:10]) == list(range(10))
    assert list(index[10:]) == [-1, -1]
    two = [list(eval_batches(arrays(10), 4, process_index=h, process_count=2)) for h in range(2)]
    merged = np.concatenate(
        [np.concatenate([a["example_index"], b["example_index"]]) for a, b in zip(*two)]
    )
    np.testing.assert_array_equal(merged, index)


def test_too_small_or_bad_layout():
    with pytest.raises(ValueError, match="cannot fill one batch"):
        EpochBatches(arrays(5), 8, process_index=0, process_count=1)
    with pytest.raises(ValueError, match="multiple of process_count"):
        EpochBatches(arrays(), 6, process_index=0, process_count=4)
