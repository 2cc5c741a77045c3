"""Pacing of requests to NCBI: at most 3 a second without an API key, 10 with one.

NCBI blocks clients that go over these rates, so every E-utilities request mambaner makes (searches,
fetches and their retries alike) asks one shared :class:`RateLimiter` for a slot first. NCBI counts
per address (or per key), not per process: two `mambaner` runs at once must share the budget, so the
shared limiter keeps the start of the latest reserved slot in a small file per budget
(``<state dir>/eutils-<bucket>.next``, locked with ``fcntl.flock`` while it is read and moved on), which
every process of the user on this machine reads. The state directory is ``$MAMBANER_STATE_DIR``, else
``$XDG_RUNTIME_DIR/mambaner`` (per user, in memory, gone at logout), else ``~/.cache/mambaner``; where
none can be used (or without ``fcntl``, on Windows), the limit holds per process, with one warning.

Biopython's ``Bio.Entrez`` paces its own requests too (0.37 s apart without a key, 0.1 s with one, on the
wall clock); the two limits stack, and the stricter one wins. A limiter can be given a fake clock, which
is how the tests check it without waiting.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; the limit holds per process
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("mambaner.fetch")

# NCBI counts requests per second; starting exactly 1/rate apart can still put rate + 1 starts into one
# second on their side (network jitter), so keep a small margin.
SPACING_MARGIN = 1.02
ENV_STATE_DIR = "MAMBANER_STATE_DIR"
# A stored slot further ahead than this is not a queue of waiting runs but a clock set back (or a
# damaged file): it is ignored rather than waited for.
MAX_AHEAD = 60.0


def default_state_dir() -> Path:
    """Where the shared limiter keeps its state: $MAMBANER_STATE_DIR, $XDG_RUNTIME_DIR/mambaner, or
    ~/.cache/mambaner (read at each request, so a change of the variable applies at once)."""
    if os.environ.get(ENV_STATE_DIR):
        return Path(os.environ[ENV_STATE_DIR])
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "mambaner"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mambaner"


class RateLimiter:
    """Spaces request starts at least ``SPACING_MARGIN / rate`` seconds apart.

    Thread-safe: concurrent callers each reserve the next free slot, then sleep until it comes. Without
    ``state_dir`` the slots are this instance's own; with one (a directory, or a function giving it) they
    are shared with every limiter, in any process, that uses the same directory and bucket. The shared
    form uses the wall clock by default, the one clock all processes agree on.
    """

    def __init__(self, clock: Callable[[], float] | None = None, sleep: Callable[[float], None] = time.sleep,
                 margin: float = SPACING_MARGIN, state_dir: Path | str | Callable[[], Path] | None = None):
        self._clock = clock or (time.time if state_dir is not None else time.monotonic)
        self._sleep = sleep
        self._margin = margin
        self._state_dir = state_dir
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}  # bucket -> start of the latest slot reserved here
        self._warned = False

    def wait(self, requests_per_second: float, bucket: str = "default") -> float:
        """Block until a request may start; returns how long it waited (seconds).

        ``bucket`` names the budget the request draws on (NCBI counts per API key, or per address).
        """
        if requests_per_second <= 0:
            raise ValueError("requests_per_second must be positive")
        interval = self._margin / requests_per_second
        with self._lock:
            now = self._clock()
            start = self._reserve_shared(bucket, now, interval)
            if start is None:  # process-local
                last = self._last.get(bucket)
                start = now if last is None else max(now, last + interval)
            self._last[bucket] = start
        delay = start - now
        if delay > 0:
            self._sleep(delay)
        return delay

    def state_file(self, bucket: str) -> Path | None:
        """The file holding ``bucket``'s next free slot, or None for a process-local limiter."""
        if self._state_dir is None or fcntl is None:
            return None
        directory = self._state_dir() if callable(self._state_dir) else Path(self._state_dir)
        return directory / f"eutils-{bucket}.next"

    def _reserve_shared(self, bucket: str, now: float, interval: float) -> float | None:
        """Reserve the next slot in the shared state file; None when there is no usable one."""
        path = self.state_file(bucket)
        if path is None:
            return None
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            self._warn_once(path, exc)
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # held only to read and move the slot on, never while sleeping
            try:
                last = float(os.pread(fd, 64, 0).decode("ascii").strip() or "nan")
            except (ValueError, UnicodeDecodeError):
                last = float("nan")
            mine = self._last.get(bucket)
            if mine is not None and not last >= mine:  # the file was reset or deleted meanwhile
                last = mine
            start = max(now, last + interval) if last <= now + MAX_AHEAD else now  # NaN: now
            data = repr(start).encode("ascii")
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            return start
        except OSError as exc:
            self._warn_once(path, exc)
            return None
        finally:
            os.close(fd)  # also releases the lock

    def _warn_once(self, path: Path, exc: OSError) -> None:
        if not self._warned:
            self._warned = True
            log.warning("cannot share the E-utilities rate limit with other runs through %s (%s); pacing this "
                        "run alone (set %s to a writable directory)", path, exc.strerror or exc, ENV_STATE_DIR)


#: The limiter every :class:`~mambaner_cli.fetch.settings.FetchSettings` uses unless given another one:
#: NCBI's limit is per client (IP address or API key), not per call site or process.
SHARED_LIMITER = RateLimiter(state_dir=default_state_dir)
