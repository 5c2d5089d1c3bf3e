"""Batches over a fixed set of tokenised examples (fine-tuning: GLUE, SQuAD).

`EpochBatches` serves training batches: each epoch is a fresh permutation drawn from
(seed, epoch), so a batch is a pure function of the step and a resumed run sees the same
data. `eval_batches` walks a set once, in order, padding the last batch; its `weight` column
is 1 for real rows and 0 for padding, and `example_index` maps rows back to examples.
Each host gets rows [h*b, (h+1)*b) of every global batch (b = global batch / hosts).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from squeezemobile_jax.data.prefetch import PrefetchIterator
from squeezemobile_jax.data.pretraining_loader import _check_layout, default_process_layout

Arrays = Mapping[str, np.ndarray]


def _num_rows(arrays: Arrays) -> int:
    sizes = {k: len(v) for k, v in arrays.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"example arrays have different lengths: {sizes}")
    return next(iter(sizes.values()))


def _layout(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    if process_index is None or process_count is None:
        index, count = default_process_layout()
        return (
            index if process_index is None else process_index,
            count if process_count is None else process_count,
        )
    return process_index, process_count


class EpochBatches:
    """Shuffled training batches over `arrays` (dict of equal-length arrays), by step.

    The remainder of each epoch that does not fill a global batch is dropped (a different
    remainder every epoch). `steps_per_epoch` = len // global_batch_size.
    """

    def __init__(
        self,
        arrays: Arrays,
        global_batch_size: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        process_index: int | None = None,
        process_count: int | None = None,
        prefetch: int = 2,
    ):
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        self.num_examples = _num_rows(self.arrays)
        self.process_index, self.process_count = _layout(process_index, process_count)
        _check_layout(global_batch_size, global_batch_size, self.process_index, self.process_count)
        if self.num_examples < global_batch_size:
            raise ValueError(
                f"{self.num_examples} examples cannot fill one batch of {global_batch_size}; "
                "lower the batch size"
            )
        self.global_batch_size = global_batch_size
        self.local_batch_size = global_batch_size // self.process_count
        self.steps_per_epoch = self.num_examples // global_batch_size
        self.seed, self.shuffle, self.prefetch = seed, shuffle, prefetch

    def rows_at(self, step: int) -> np.ndarray:
        """Indices of this host's examples in global batch `step`: [local_batch]."""
        epoch, within = divmod(step, self.steps_per_epoch)
        order = np.arange(self.num_examples)
        if self.shuffle:
            order = np.random.Generator(np.random.Philox(key=[self.seed, epoch])).permutation(
                self.num_examples
            )
        start = within * self.global_batch_size + self.process_index * self.local_batch_size
        return order[start : start + self.local_batch_size]

    def batch_at(self, step: int) -> dict[str, np.ndarray]:
        rows = self.rows_at(step)
        return {k: v[rows] for k, v in self.arrays.items()}

    def iterator(self, start_step: int = 0) -> PrefetchIterator[dict[str, np.ndarray]]:
        """Batches from `start_step` on, prepared by a background thread."""
        return PrefetchIterator(self.batch_at, start_step, depth=self.prefetch)


def eval_batches(
    arrays: Arrays,
    global_batch_size: int,
    *,
    process_index: int | None = None,
    process_count: int | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Every example once, in order, as host-local batches with `weight` and `example_index`.

    The last global batch is padded with copies of row 0 (weight 0), so every batch has the
    same shape and sums weighted by `weight` count each example exactly once.
    """
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    n = _num_rows(arrays)
    index, count = _layout(process_index, process_count)
    _check_layout(global_batch_size, global_batch_size, index, count)
    local = global_batch_size // count
    for start in range(0, n, global_batch_size):
        rows = start + index * local + np.arange(local)
        real = rows < n
        rows = np.where(real, rows, 0)
        batch = {k: v[rows] for k, v in arrays.items()}
        batch["weight"] = real.astype(np.float32)
        batch["example_index"] = np.where(real, rows, -1).astype(np.int32)
        yield batch
