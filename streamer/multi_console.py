"""The console of several streams: one sink every stream's records reach (tagged with `stream`).

    console = make_multi_console(headless, names, class_names)
    console.attach(i, pipe.status)       # stream i's live status, for the dashboard
    console.on_segment(record)           # from any stream's thread

- headless: the prediction-log JSON of every record, one per line, as they come;
- not a terminal: streamer.console's plain line, prefixed with the stream number;
- a terminal: a compact row per stream (label, confidence, timeline, drops, latency) above the
  full single-stream dashboard of the selected stream (the first; `select(i)` picks another).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from streamer.console import LineWriter, plain_line
from streamer.records import log_line
from streamer.sinks import OutputFault

Status = Callable[[], Mapping[str, Any]]


class Lines:
    """Whole lines from every stream's thread (streamer.console.LineWriter: when the reader
    goes away, nothing more is written and `on_reader_gone` is called once; a stream that
    fails otherwise leaves its `fault`)."""

    def __init__(self, stream: TextIO | None = None,
                 on_reader_gone: Callable[[], None] | None = None) -> None:
        self.out = LineWriter(stream, on_reader_gone)
        self._lock = threading.Lock()

    @property
    def fault(self) -> OutputFault | None:
        return self.out.fault

    def _write(self, line: str) -> None:
        with self._lock:
            self.out.write(line)

    def attach(self, i: int, status: Status) -> None:
        pass

    def close(self) -> None:
        pass


class LockedJson(Lines):
    """--headless for several streams: the log object of every record, as they come."""

    def on_segment(self, record: Mapping[str, Any]) -> None:
        self._write(log_line(record))


class PlainLines(Lines):
    """One readable line per segment, `[stream]` first."""

    def __init__(self, names: Sequence[str], class_names: Sequence[str],
                 stream: TextIO | None = None,
                 on_reader_gone: Callable[[], None] | None = None) -> None:
        super().__init__(stream, on_reader_gone)
        self.class_names = class_names
        for i, name in enumerate(names):
            self._write(f"stream {i}: {name}")

    def on_segment(self, record: Mapping[str, Any]) -> None:
        self._write(f"[{record.get('stream', 0)}] {plain_line(record, self.class_names)}")


def make_multi_console(headless: bool, names: Sequence[str], class_names: Sequence[str],
                       stream: TextIO | None = None,
                       on_reader_gone: Callable[[], None] | None = None) -> Any:
    stream = stream if stream is not None else sys.stdout
    if headless:
        return LockedJson(stream, on_reader_gone)
    tty = hasattr(stream, "isatty") and stream.isatty() and os.environ.get("TERM") != "dumb"
    if not tty:
        return PlainLines(names, class_names, stream, on_reader_gone)
    from streamer.multi_dashboard import MultiDashboard

    return MultiDashboard(names, class_names, stream)
