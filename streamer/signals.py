"""SIGTERM and SIGHUP end a run as Ctrl+C does: the stream stops, every sink is flushed and
closed, and the exit status says which signal it was (128 + its number: SIGTERM 143, SIGHUP 129).

    with StopSignals(exit_early=True) as signals:   # in the main thread
        pipe = ...; signals.attach(pipe.stop)
        pipe.run()                          # SIGTERM: pipe.stop("SIGTERM"), run returns
    sys.exit(signals.exit_code or 0)

`docker stop`, systemd and a closed terminal send these. Once a pipeline is attached, a signal
only asks the pipelines to stop, so closing the sinks is never cut short; further signals change
nothing; Ctrl+C raises KeyboardInterrupt as Python's own handler does (Pipeline.run ends the
stream on it).

Before a pipeline is attached (the model still loading) nothing is open to flush. With
`exit_early` (the jca-live command) a stop signal or Ctrl+C then ends the process at once: one
line on stderr, status 128 + N. An exception raised there is not safe: the loading runs native
code that calls back into Python (OpenVINO's converter turns a KeyboardInterrupt raised in such a
callback into a conversion failure, which the extractor-path probe would record as a refusal
and go on loading), and one raised inside importlib's lock bookkeeping leaves the import lock
held, so the next fork (OpenVINO's telemetry forks from its threads) hangs the process. Without
`exit_early` the first signal raises `Stopped` in the main thread instead.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from contextlib import suppress
from types import FrameType

from model.errors import INTERRUPTED

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP")
                     if hasattr(signal, name))  # Windows has no SIGHUP


class Stopped(KeyboardInterrupt):
    """A stop signal that came before anything could be stopped cleanly."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def early_line(sig: signal.Signals) -> str:
    """What a signal before the stream started says on stderr."""
    if sig == signal.SIGINT:
        return INTERRUPTED
    return f"stopped ({sig.name}) before the stream started"


def exit_now(sig: signal.Signals) -> None:
    """One line on stderr and the status 128 + N, at once: no exception, no exit handlers."""
    try:  # os.write: the main thread may be inside a write to sys.stderr
        os.write(2, f"{early_line(sig)}\n".encode())
    finally:
        os._exit(128 + int(sig))


def exit_at_signal(code: int) -> None:
    """From now on Ctrl+C and the stop signals end the process at once with `code`: for the
    interpreter's teardown after a run (native libraries' exit hooks take a while), when every
    output is written and closed. Otherwise a signal there ends it with a traceback or kills it."""

    def handler(signum: int, frame: FrameType | None) -> None:
        for stream in (sys.stdout, sys.stderr):
            with suppress(OSError, RuntimeError, ValueError):  # reader gone, reentrant, closed
                stream.flush()
        os._exit(code)

    for sig in (signal.SIGINT, *STOP_SIGNALS):
        signal.signal(sig, handler)


class StopSignals:
    """While entered (in the main thread), SIGTERM and SIGHUP stop the attached pipelines;
    `exit_early`: before any is attached, they and Ctrl+C end the process (`exit_now`)."""

    def __init__(self, exit_early: bool = False) -> None:
        self.received: signal.Signals | None = None  # the first stop signal
        self.exit_early = exit_early
        self._stops: list[Callable[[str], None]] = []
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            handled = (signal.SIGINT, *STOP_SIGNALS) if self.exit_early else STOP_SIGNALS
            for sig in handled:
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
        sig = signal.Signals(signum)
        if not self._stops and self.exit_early:
            exit_now(sig)
        if sig == signal.SIGINT:
            signal.default_int_handler(signum, frame)  # raises KeyboardInterrupt
        first = self.received is None
        if first:
            self.received = sig
        if self._stops:
            for stop in self._stops:
                stop(self.received.name)
        elif first:
            raise Stopped(signum)
