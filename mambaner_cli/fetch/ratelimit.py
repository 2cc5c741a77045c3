"""Pacing of requests to NCBI: at most 3 a second without an API key, 10 with one.

NCBI blocks clients that go over these rates, so every E-utilities request mambaner makes (searches,
fetches and their retries alike) asks one shared :class:`RateLimiter` for a slot first. Biopython's
``Bio.Entrez`` paces its own requests too (0.37 s apart without a key, 0.1 s with one, on the wall
clock); the two limits stack, and the stricter one wins. Ours uses a monotonic clock and can be given a
fake clock, which is how the tests check it without waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# NCBI counts requests per second; starting exactly 1/rate apart can still put rate + 1 starts into one
# second on their side (network jitter), so keep a small margin.
SPACING_MARGIN = 1.02


class RateLimiter:
    """Spaces request starts at least ``SPACING_MARGIN / rate`` seconds apart.

    Thread-safe: concurrent callers each reserve the next free slot, then sleep until it comes.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, margin: float = SPACING_MARGIN):
        self._clock = clock
        self._sleep = sleep
        self._margin = margin
        self._lock = threading.Lock()
        self._last: float | None = None  # start of the latest reserved slot

    def wait(self, requests_per_second: float) -> float:
        """Block until a request may start; returns how long it waited (seconds)."""
        if requests_per_second <= 0:
            raise ValueError("requests_per_second must be positive")
        interval = self._margin / requests_per_second
        with self._lock:
            now = self._clock()
            start = now if self._last is None else max(now, self._last + interval)
            self._last = start
        delay = start - now
        if delay > 0:
            self._sleep(delay)
        return delay


#: The limiter every :class:`~mambaner_cli.fetch.settings.FetchSettings` uses unless given another one:
#: NCBI's limit is per client (IP address or API key), not per call site.
SHARED_LIMITER = RateLimiter()
