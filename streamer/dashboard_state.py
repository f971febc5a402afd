"""What the dashboard shows, reduced from the pipeline's records: no rich, no threads of its own.

    model = DashboardModel(header)           # header: static status fields + class_names
    model.add(record)                        # pipeline thread: O(1) under a lock
    model.add_event(interval)                # a final event interval from the event log
    state = model.snapshot(status)           # drawing thread: an immutable DashboardState

Event intervals follow streamer.intervals' rule (the event log's): final intervals, then the
ones still pending as they would stand were the stream to end now.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model.classes import BACKGROUND
from streamer.intervals import EPS, Interval, IntervalTracker

TIMELINE_SECONDS = 60
STATUS_KEYS = ("source", "device", "backend", "checkpoint", "untrained", "random_features",
               "frames_per_segment", "frames_note", "lookahead")


@dataclass(frozen=True)
class ShownEvent:
    interval: Interval
    class_id: int  # -1: a label outside the model's classes
    open: bool = False  # it holds the latest segment: still growing


@dataclass(frozen=True)
class DashboardState:
    """Everything `render` needs; a snapshot, never shared with the pipeline thread."""
    info: Mapping[str, Any]  # header merged with the latest status (status wins)
    class_names: tuple[str, ...]
    records: tuple[Mapping[str, Any], ...]  # last TIMELINE_SECONDS records, oldest first
    events: tuple[ShownEvent, ...]  # most recent last
    latency: Mapping[str, tuple[float, float]]  # stage -> (p50, p95) in ms, "total" last
    status: Mapping[str, Any] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        if self.class_names:
            return len(self.class_names)
        return len(self.records[-1].get("probs", ())) if self.records else 0


class DashboardModel:
    """Accumulates records (O(1) per record, under a lock) and hands out snapshots."""

    def __init__(self, header: Mapping[str, Any], class_names: Sequence[str] | None = None,
                 latency_window: int = 120, max_events: int = 20) -> None:
        self.header = dict(header)
        names = class_names if class_names is not None else header.get("class_names", ())
        self.class_names = tuple(str(n) for n in names or ())
        self._lock = threading.Lock()
        self._records: deque[Mapping[str, Any]] = deque(maxlen=TIMELINE_SECONDS)
        self._latency: deque[Mapping[str, float]] = deque(maxlen=latency_window)
        self._ids = {name: i for i, name in enumerate(self.class_names)}
        self._tracker = IntervalTracker(
            background=self.class_names[-1] if self.class_names else BACKGROUND)
        self._final: deque[Interval] = deque(maxlen=max_events)  # derived from records
        self._external: deque[Interval] = deque(maxlen=max_events)  # given by the pipeline

    def add(self, record: Mapping[str, Any]) -> None:
        label = str(record.get("label", "?"))
        with self._lock:
            self._records.append(record)
            lat = record.get("latency_ms")
            if isinstance(lat, Mapping):
                self._latency.append(lat)
            self._ids.setdefault(label, int(record.get("class_id", -1)))
            self._final.extend(self._tracker.push(
                label, float(record.get("start", 0.0)), float(record.get("end", 0.0)),
                float(record.get("confidence", 0.0))))

    def add_event(self, interval: Mapping[str, Any]) -> None:
        """A final event interval from the pipeline (e.g. `EventLog` listeners). Once any came,
        these replace the derived intervals, but for the derived one still growing."""
        with self._lock:
            self._external.append(Interval(str(interval.get("label", "?")),
                                           float(interval.get("start", 0.0)),
                                           float(interval.get("end", 0.0)),
                                           float(interval.get("confidence", 0.0))))

    def snapshot(self, status: Mapping[str, Any] | None = None) -> DashboardState:
        with self._lock:
            records = tuple(self._records)
            latency = tuple(self._latency)
            final, external = tuple(self._final), tuple(self._external)
            pending = self._tracker.preview()
            ids = dict(self._ids)
        latest = float(records[-1].get("end", 0.0)) if records else None
        events = [ShownEvent(iv, ids.get(iv.label, -1)) for iv in external or final]
        for iv in pending:
            growing = latest is not None and abs(iv.end - latest) < EPS
            if external and not (growing and iv.start >= external[-1].end - EPS):
                continue  # the event log sends it when final
            events.append(ShownEvent(iv, ids.get(iv.label, -1), open=growing))
        status = dict(status or {})
        info = dict(self.header)
        info.update({k: status[k] for k in STATUS_KEYS if status.get(k) is not None})
        return DashboardState(info=info, class_names=self.class_names, records=records,
                              events=tuple(events), latency=latency_percentiles(latency),
                              status=status)


def latency_percentiles(samples: Sequence[Mapping[str, float]]) -> dict[str, tuple[float, float]]:
    stages: list[str] = []
    for s in samples:
        stages.extend(k for k in s if k not in stages)
    if "total" in stages:
        stages.remove("total")
        stages.append("total")
    out = {}
    for stage in stages:
        v = np.array([float(s[stage]) for s in samples if s.get(stage) is not None])
        if v.size:
            out[stage] = (float(np.percentile(v, 50)), float(np.percentile(v, 95)))
    return out
