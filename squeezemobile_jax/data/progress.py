"""Progress reporting for long data jobs: a tqdm bar on a terminal, periodic log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time

logger = logging.getLogger(__name__)


class Progress:
    """Counts work done; `update(n)` adds n units. Use as a context manager.

    On a terminal this draws a tqdm bar; elsewhere (logs, CI) it writes a log line at most every
    `log_every_s` seconds and one at the end.
    """

    def __init__(
        self,
        desc: str,
        total: float | None = None,
        unit: str = "it",
        log_every_s: float = 10.0,
        enabled: bool = True,
    ):
        self.desc, self.total, self.unit = desc, total, unit
        self.count = 0.0
        self._log_every_s = log_every_s
        self._start = self._last_log = time.monotonic()
        self._bar = None
        self._enabled = enabled
        if enabled and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=True, dynamic_ncols=True)

    def update(self, n: float = 1) -> None:
        self.count += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if self._enabled and now - self._last_log >= self._log_every_s:
            self._last_log = now
            logger.info("%s: %s", self.desc, self._summary(now))

    def _summary(self, now: float) -> str:
        elapsed = max(now - self._start, 1e-9)
        done = f"{self.count:,.0f}" + (f"/{self.total:,.0f}" if self.total else "")
        return f"{done} {self.unit} ({self.count / elapsed:,.0f} {self.unit}/s, {elapsed:.0f}s)"

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._enabled:
            logger.info("%s: done, %s", self.desc, self._summary(time.monotonic()))
        self._enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
