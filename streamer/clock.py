"""The one stream clock: seconds since the stream started, on `time.monotonic()`.

    clock = Clock()
    t = clock.now()                       # stamp a captured frame
    clock.sleep_until(12.5, stop_event)   # pace a replay: wait for stream time 12.5 s

Device and file timestamps are converted onto it by the sources: a camera frame is stamped when
it is read, a microphone block from PortAudio's ADC time, a replayed frame from its pts.
"""

from __future__ import annotations

import threading
import time


class Clock:
    def __init__(self, t0: float | None = None) -> None:
        self.t0 = time.monotonic() if t0 is None else t0  # monotonic time of stream time 0

    def now(self) -> float:
        """Stream time in seconds."""
        return time.monotonic() - self.t0

    def wall(self, t: float) -> float:
        """The monotonic time of stream time t."""
        return self.t0 + t

    def sleep_until(self, t: float, stop: threading.Event) -> bool:
        """Wait until stream time t; False if `stop` was set first."""
        delay = t - self.now()
        if delay > 0:
            return not stop.wait(delay)
        return not stop.is_set()
