"""Where predictions go: sinks with `on_segment(record)` and `close()`.

    JsonlLog("runs/predictions.jsonl")   # the prediction log: one JSON object per line, flushed
    EventLog("runs/events.jsonl")        # event intervals (label, start, end, confidence)

`record` is the prediction-log object of the ARCHITECTURE contract plus extras
(docs/INTERFACES.md), written by streamer.records.log_line (in-process extras such as
`attention` never reach a file). The console sinks (dashboard, plain lines, --headless JSON) are
streamer.console's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Protocol

from model.classes import BACKGROUND
from model.errors import UserError
from streamer.intervals import Interval, IntervalTracker
from streamer.records import json_text, log_line


class Sink(Protocol):
    def on_segment(self, record: dict) -> None: ...

    def close(self) -> None: ...


def open_output(path: str | Path) -> IO[str]:
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        return p.open("w", encoding="utf-8")
    except OSError as e:
        raise UserError(f"cannot write {p} ({e.strerror}); pass a writable path") from None


class JsonlLog:
    """The prediction log: each record is on disk (flushed) before the next segment starts."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._f = open_output(path)

    def on_segment(self, record: dict) -> None:
        self._f.write(log_line(record) + "\n")
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()


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
        self._f = open_output(path)

    def _write(self, intervals: list[Interval]) -> None:
        for iv in intervals:
            d = iv.to_dict()
            if self.untrained:
                d["untrained"] = True
            if self.random_features:
                d["random_features"] = True
            self._f.write(json_text(d) + "\n")
            for listen in self.listeners:
                listen(d)
        self._f.flush()

    def on_segment(self, record: dict) -> None:
        self._write(self.tracker.push(record["label"], record["start"], record["end"],
                                      record["confidence"]))

    def close(self) -> None:
        if not self._f.closed:
            self._write(self.tracker.flush())
            self._f.close()
