"""Where predictions go: sinks with `on_segment(record)` and `close()`.

    JsonlLog("runs/predictions.jsonl")   # the prediction log: one JSON object per line, flushed
    EventLog("runs/events.jsonl")        # event intervals (label, start, end, confidence)
    faults = output_faults(sinks)        # after the run: the outputs that could not be written

`record` is the prediction-log object of the ARCHITECTURE contract plus extras
(docs/INTERFACES.md), written by streamer.records.log_line (in-process extras such as
`attention` never reach a file). The console sinks (dashboard, plain lines, --headless JSON) are
streamer.console's.

An output that cannot be written (a full disk) stops only itself: its file keeps the whole lines
written before (LineFile), the other sinks go on, and the sink's `fault` says what happened; the
run then ends with that one line and exit 2 (streamer.app).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Protocol

from model.classes import BACKGROUND
from model.errors import UserError
from streamer.intervals import Interval, IntervalTracker
from streamer.records import json_text, log_line


class Sink(Protocol):
    def on_segment(self, record: dict) -> None: ...

    def close(self) -> None: ...


class OutputFault(UserError):
    """An output that could not be written mid-run (a full disk, a failing stdout): one line
    naming it and the cause; the run goes on without it and exits 2 at the end."""


def output_faults(sinks: Iterable[object]) -> list[OutputFault]:
    """The faults of the sinks that have one (a `fault` attribute that is not None)."""
    return [f for f in (getattr(s, "fault", None) for s in sinks) if f is not None]


def fault_line(faults: Sequence[OutputFault]) -> OutputFault:
    """Several output faults as one (one line: the first, then the others)."""
    return faults[0] if len(faults) == 1 else OutputFault("; also ".join(map(str, faults)))


class LineFile:
    """A file of whole lines, shared by any number of threads. Each line reaches the file in one
    unbuffered write of the whole line (nothing waits in a buffer, so a crash loses nothing
    written). A write that fails (a full disk, a quota, an I/O error) cuts the file back to its
    last whole line, writes nothing more and keeps the cause as `fault`."""

    def __init__(self, path: str | Path, fix: str = "pass another path",
                 append: bool = False) -> None:
        """fix: the end of the fault's line, how to give the output another place; append: keep
        the whole lines the file holds (a half line a crash left is cut off) and write after
        them (else it starts empty)."""
        self.path, self.fix = Path(path), fix
        self.lines = 0  # whole lines written
        self.fault: OutputFault | None = None
        self._lock = threading.Lock()
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd: int | None = os.open(self.path, flags | getattr(os, "O_CLOEXEC", 0),
                                           0o666)
            self._size = 0  # where the whole lines end
            if append:
                self._size = self.path.read_bytes().rfind(b"\n") + 1
                os.ftruncate(self._fd, self._size)
        except OSError as e:
            raise UserError(f"cannot write {self.path} ({e.strerror}); {fix}") from None

    def write(self, line: str) -> bool:
        """Append `line` and a newline; False if the file is dead (this or an earlier write
        failed, or it is closed)."""
        encoded = (line + "\n").encode("utf-8")
        with self._lock:
            if self._fd is None:
                return False
            try:
                rest = memoryview(encoded)
                while rest:  # a short write (the disk filling up) is followed by the error
                    rest = rest[os.write(self._fd, rest):]
            except OSError as e:
                self._fail(e)
                return False
            self._size += len(encoded)
            self.lines += 1
            return True

    def _fail(self, e: OSError) -> None:
        assert self._fd is not None
        with suppress(OSError):  # the half line goes; what stays is what was written whole
            os.ftruncate(self._fd, self._size)
        with suppress(OSError):
            os.close(self._fd)
        self._fd = None
        self.fault = OutputFault(
            f"cannot write {self.path} ({e.strerror or e}): it holds the {self.lines} whole "
            f"lines written before, nothing after; free space on its disk or {self.fix}")

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class JsonlLog:
    """The prediction log: each record is on disk (flushed) before the next segment starts."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.file = LineFile(path, "pass another --log")

    @property
    def fault(self) -> OutputFault | None:
        return self.file.fault

    def on_segment(self, record: dict) -> None:
        self.file.write(log_line(record))

    def close(self) -> None:
        self.file.close()


class EventLog:
    """Event intervals, one JSON object per line, written as each interval becomes final."""

    def __init__(self, path: str | Path, min_event: float = 1.0, min_gap: float = 2.0,
                 background: str = BACKGROUND, threshold: float = 0.0,
                 untrained: bool = False, random_features: bool = False,
                 listeners: Sequence[Callable[[dict], None]] = ()) -> None:
        """listeners: also called with each interval (e.g. Dashboard.on_event)."""
        self.path = Path(path)
        self.untrained, self.random_features = untrained, random_features
        self.listeners = list(listeners)
        self.tracker = IntervalTracker(min_event, min_gap, background, threshold)
        self.file = LineFile(path, "pass another --events")
        self._closed = False

    @property
    def fault(self) -> OutputFault | None:
        return self.file.fault

    def _write(self, intervals: list[Interval]) -> None:
        for iv in intervals:
            d = iv.to_dict()
            if self.untrained:
                d["untrained"] = True
            if self.random_features:
                d["random_features"] = True
            self.file.write(json_text(d))
            for listen in self.listeners:
                listen(d)

    def on_segment(self, record: dict) -> None:
        self._write(self.tracker.push(record["label"], record["start"], record["end"],
                                      record["confidence"]))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._write(self.tracker.flush())
            self.file.close()
