"""SIGTERM handling: a flag the loop polls at step boundaries to save and exit cleanly."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType, TracebackType

log = logging.getLogger(__name__)


class TerminationSignal:
    """Context manager that records SIGTERM instead of dying on it.

    Inside the ``with`` block a SIGTERM sets `received`; the previous handler comes back on
    exit. Outside the main thread (where handlers cannot be installed) it does nothing.
    In multi-process runs the loop relies on orbax's `reached_preemption` instead, which
    all processes agree on.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.received = False
        self._previous = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        del frame
        log.warning("Received signal %d: will checkpoint at the next step and stop.", signum)
        self.received = True

    def __enter__(self) -> TerminationSignal:
        if self.enabled:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.enabled and self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
