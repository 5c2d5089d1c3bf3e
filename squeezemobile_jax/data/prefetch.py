"""Iterators that compute `produce(step)` for consecutive steps ahead of the consumer: in a
background thread, or in a pool of worker processes when making one item takes longer than
the consumer's step (e.g. pretraining batches for a large per-host batch)."""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import multiprocessing
import queue
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


def prefetch_steps(
    produce: Callable[[int], T], start_step: int = 0, depth: int = 2, workers: int = 0
) -> PrefetchIterator[T] | ProcessPrefetchIterator[T]:
    """`produce(start_step)`, `produce(start_step + 1)`, ... ahead of the consumer: in a
    background thread (`workers=0`) or in `workers` processes (`produce` must pickle)."""
    if workers < 0:
        raise ValueError(f"prefetch workers must be >= 0, got {workers}")
    if workers:
        return ProcessPrefetchIterator(produce, start_step, depth, workers)
    return PrefetchIterator(produce, start_step, depth)


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


class ProcessPrefetchIterator(Generic[T]):
    """Like PrefetchIterator, with `produce` running in `workers` spawned processes.

    `produce` is pickled once into each worker (so it must pickle cheaply, e.g. a loader whose
    token arrays are memory-mapped files); items come back pickled, in step order, with
    `max(depth, workers + 1)` steps in flight. Workers are spawned, not forked, because the
    consumer usually runs JAX's threads. An error in `produce` is raised by `next()` at the
    step that failed, with the worker's traceback as its cause.
    """

    def __init__(
        self, produce: Callable[[int], T], start_step: int = 0, depth: int = 2, workers: int = 1
    ):
        if depth < 1:
            raise ValueError(f"prefetch depth must be >= 1, got {depth}")
        if workers < 1:
            raise ValueError(f"prefetch workers must be >= 1, got {workers}")
        self.step = start_step
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._in_flight: collections.deque[concurrent.futures.Future] = collections.deque()
        self._next_submit = start_step
        # The workers start with this thread's signal mask: blocked until they ignore them.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _CONSUMER_SIGNALS)
        try:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_install_producer,
                initargs=(produce,),
            )
            for _ in range(max(depth, workers + 1)):
                self._submit()  # the first submission starts the workers
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def _submit(self) -> None:
        assert self._pool is not None
        self._in_flight.append(self._pool.submit(_produce_in_worker, self._next_submit))
        self._next_submit += 1

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._pool is None:
            raise StopIteration
        try:
            if not self._in_flight:  # every submission since a worker died failed
                raise concurrent.futures.BrokenExecutor("no step in flight")
            item = self._in_flight.popleft().result()
        except concurrent.futures.BrokenExecutor as e:  # a worker died
            self.close()
            raise RuntimeError(
                f"a prefetch worker process died while making step {self.step} (killed, e.g. "
                "out of memory?); the steps before it were delivered"
            ) from e
        except BaseException:
            self.close()
            raise
        # A worker that died after making this item leaves it delivered: the steps still in
        # flight fail with the executor, and the next call reports the death.
        with contextlib.suppress(concurrent.futures.BrokenExecutor):
            self._submit()
        self.step += 1
        return item

    def close(self) -> None:
        """Stops the workers (idempotent); items being made are dropped."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        self._in_flight.clear()

    def __enter__(self) -> ProcessPrefetchIterator[T]:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


_worker_produce: Callable[[int], object] | None = None


# A preemption's SIGTERM (sent to every process) and Ctrl-C are the consumer's to handle: it
# saves a checkpoint at the next step, so its workers must outlive them. They stop when the
# consumer closes the pool or exits.
_CONSUMER_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def _install_producer(produce: Callable[[int], object]) -> None:
    for signum in _CONSUMER_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _CONSUMER_SIGNALS)
    global _worker_produce
    _worker_produce = produce


def _produce_in_worker(step: int) -> object:
    assert _worker_produce is not None
    return _worker_produce(step)
