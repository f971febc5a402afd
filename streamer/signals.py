"""SIGTERM and SIGHUP end a run as Ctrl+C does: the stream stops, every sink is flushed and
closed, and the exit status says which signal it was (128 + its number: SIGTERM 143, SIGHUP 129).

    with StopSignals() as signals:          # in the main thread
        pipe = ...; signals.attach(pipe.stop)
        pipe.run()                          # SIGTERM: pipe.stop("SIGTERM"), run returns
    sys.exit(signals.exit_code or 0)

`docker stop`, systemd and a closed terminal send these. Before a pipeline is attached (the
model still loading) the first signal raises `Stopped` in the main thread: nothing is open to
flush yet. Once attached, a signal only asks the pipelines to stop, so closing the sinks is never
cut short; further signals change nothing.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP")
                     if hasattr(signal, name))  # Windows has no SIGHUP


class Stopped(KeyboardInterrupt):
    """A stop signal that came before anything could be stopped cleanly."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopSignals:
    """While entered (in the main thread), SIGTERM and SIGHUP stop the attached pipelines."""

    def __init__(self) -> None:
        self.received: signal.Signals | None = None  # the first stop signal
        self._stops: list[Callable[[str], None]] = []
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    @property
    def name(self) -> str | None:
        return None if self.received is None else self.received.name

    @property
    def exit_code(self) -> int | None:
        """The shell's status for a death by that signal: 128 + its number."""
        return None if self.received is None else 128 + int(self.received)

    def attach(self, stop: Callable[[str], None]) -> None:
        """From now on a stop signal calls `stop(signal name)` instead of raising; a signal that
        already came calls it at once."""
        self._stops.append(stop)
        if self.received is not None:
            stop(self.received.name)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        first = self.received is None
        if first:
            self.received = signal.Signals(signum)
        if self._stops:
            for stop in self._stops:
                stop(self.received.name)
        elif first:
            raise Stopped(signum)
