"""A background thread that computes `produce(step)` for consecutive steps ahead of the consumer."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class PrefetchIterator(Generic[T]):
    """Yields produce(start_step), produce(start_step + 1), ... computed `depth` steps ahead.

    `step` is the step of the next item to be returned (the iterator's whole state). An error
    in `produce` is raised by `next()` at the step that failed. Call `close()` (or use `with`)
    to stop the thread.
    """

    def __init__(self, produce: Callable[[int], T], start_step: int = 0, depth: int = 2):
        if depth < 1:
            raise ValueError(f"prefetch depth must be >= 1, got {depth}")
        self.step = start_step
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        # The thread holds no reference to self, so a dropped iterator is collected and stops it.
        self._thread = threading.Thread(
            target=_produce_loop,
            args=(produce, self._queue, self._stop, start_step),
            name="prefetch",
            daemon=True,
        )
        self._thread.start()

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._stop.is_set():
            raise StopIteration
        step, item = self._queue.get()
        if isinstance(item, BaseException):
            self.close()
            raise item
        self.step = step + 1
        return item

    def close(self) -> None:
        """Stops the background thread (idempotent)."""
        self._stop.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)

    def __enter__(self) -> PrefetchIterator[T]:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self._stop.set()


def _produce_loop(
    produce: Callable[[int], object], out: queue.Queue, stop: threading.Event, step: int
) -> None:
    while not stop.is_set():
        try:
            item: object = produce(step)
        except BaseException as e:  # handed to the consumer
            item = e
        while not stop.is_set():
            try:
                out.put((step, item), timeout=0.1)
                break
            except queue.Full:
                continue
        if isinstance(item, BaseException):
            return
        step += 1
