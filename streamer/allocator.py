"""The C allocator's free pages handed back to the system, so a process that runs for days does
not keep what glibc holds of memory it freed.

    RELEASE.maybe()          # the waiting thread's loop: at most once every RELEASE_S

What grows otherwise is no object of ours. Measured over soaks of two restarting network
streams (benchmarks/RESULTS.md, Soak): the memory Python objects hold stays at 4-7 MB and what
malloc has handed out swings between 210 and 260 MB without growing, while glibc's heap grows a
step at a time at each new peak (big blocks that come and go on several threads: decoded
frames, each connection's decoders, the extractors' activations, whose sizes change with the
batch) and keeps the pages of what was freed: a free block between blocks still in use is never
returned by itself. `malloc_trim(0)` gives back every whole free page of every arena (madvise;
nothing in use moves); it takes 10-60 ms, so once a minute. Where the C library has no
malloc_trim (macOS, musl, Windows) it does nothing.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable

RELEASE_S = 60.0  # seconds between two releases


def malloc_trim() -> Callable[[], object] | None:
    """glibc's malloc_trim(0), or None where the C library has none."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):  # no such symbol / no C library to open
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


class Release:
    """Calls `release` when `every_s` has passed since the last call (process-wide: every
    stream's waiting thread shares one)."""

    def __init__(self, release: Callable[[], object] | None, every_s: float = RELEASE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.release, self.every_s, self.clock = release, every_s, clock
        self.count = 0  # releases made
        self._last = clock()
        self._lock = threading.Lock()

    def maybe(self) -> bool:
        """Release now if it is due; True if it did."""
        if self.release is None:
            return False
        with self._lock:
            now = self.clock()
            if now - self._last < self.every_s:
                return False
            self._last = now
            self.count += 1
        self.release()
        return True


RELEASE = Release(malloc_trim())
