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

from streamer.console import JsonSink, plain_line

Status = Callable[[], Mapping[str, Any]]


class LockedJson:
    """--headless for several streams: whole JSON lines from every stream's thread."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._sink = JsonSink(stream)
        self._lock = threading.Lock()

    def attach(self, i: int, status: Status) -> None:
        pass

    def on_segment(self, record: Mapping[str, Any]) -> None:
        with self._lock:
            self._sink.on_segment(record)

    def close(self) -> None:
        self._sink.close()


class PlainLines:
    """One readable line per segment, `[stream]` first."""

    def __init__(self, names: Sequence[str], class_names: Sequence[str],
                 stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.class_names = class_names
        self._lock = threading.Lock()
        for i, name in enumerate(names):
            self._write(f"stream {i}: {name}")

    def _write(self, line: str) -> None:
        with self._lock:
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except (BrokenPipeError, ValueError):
                pass

    def attach(self, i: int, status: Status) -> None:
        pass

    def on_segment(self, record: Mapping[str, Any]) -> None:
        self._write(f"[{record.get('stream', 0)}] {plain_line(record, self.class_names)}")

    def close(self) -> None:
        pass


def make_multi_console(headless: bool, names: Sequence[str], class_names: Sequence[str],
                       stream: TextIO | None = None) -> Any:
    stream = stream if stream is not None else sys.stdout
    if headless:
        return LockedJson(stream)
    tty = hasattr(stream, "isatty") and stream.isatty() and os.environ.get("TERM") != "dumb"
    if not tty:
        return PlainLines(names, class_names, stream)
    from streamer.multi_dashboard import MultiDashboard

    return MultiDashboard(names, class_names, stream)
