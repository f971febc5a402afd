"""Event intervals from per-segment labels, with hysteresis.

    tracker = IntervalTracker(min_event=2.0, min_gap=2.0)
    for rec in records:                           # in segment order
        for iv in tracker.push(rec["label"], rec["start"], rec["end"], rec["confidence"]):
            print(iv)                             # Interval(label, start, end, confidence)
    tail = tracker.flush()
    shown = tracker.preview()                     # the rest, were the stream to end now

Rules: consecutive segments of one event label form an interval; a gap (background or other
labels) shorter than `min_gap` s between two stretches of the same label is bridged; an interval
shorter than `min_event` s is dropped. An interval is final, and emitted, once `min_gap` s of
other labels follow it (or at flush). Its confidence is the mean confidence of its segments
that carry its label. Segments below `threshold` confidence count as background. This is the
one interval rule: the event log and the dashboard both use it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from model.classes import BACKGROUND

EPS = 1e-6


@dataclass(frozen=True)
class Interval:
    label: str
    start: float
    end: float
    confidence: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class _Run:
    label: str
    start: float
    end: float
    confidences: list[float]


class IntervalTracker:
    def __init__(self, min_event: float = 1.0, min_gap: float = 2.0,
                 background: str = BACKGROUND, threshold: float = 0.0) -> None:
        self.min_event, self.min_gap = min_event, min_gap
        self.background, self.threshold = background, threshold
        self._open: _Run | None = None
        self._tail: list[tuple[str, float, float, float]] = []  # segments since _open's end

    def push(self, label: str, start: float, end: float, confidence: float) -> list[Interval]:
        if confidence < self.threshold:
            label = self.background
        out: list[Interval] = []
        pending = [(label, start, end, confidence)]
        while pending:
            seg = pending.pop(0)
            out += self._step(seg, pending)
        return out

    def _step(self, seg: tuple[str, float, float, float],
              pending: list[tuple[str, float, float, float]]) -> list[Interval]:
        label, start, end, conf = seg
        run = self._open
        if run is None:
            if label != self.background:
                self._open = _Run(label, start, end, [conf])
            return []
        if label == run.label:  # the gap since the run's end was short: bridge it
            run.end = end
            run.confidences.append(conf)
            self._tail = []
            return []
        self._tail.append(seg)
        if end - run.end < self.min_gap - EPS:
            return []
        # the gap is long enough: the run is final; its tail is replayed from scratch
        out = self._emit(run)
        self._open = None
        pending[:0] = self._tail
        self._tail = []
        return out

    def _emit(self, run: _Run) -> list[Interval]:
        if run.end - run.start < self.min_event - EPS:
            return []
        return [Interval(run.label, run.start, run.end,
                         sum(run.confidences) / len(run.confidences))]

    def preview(self) -> list[Interval]:
        """What `flush` would emit now, leaving the tracker as it is (for a live display)."""
        clone = IntervalTracker(self.min_event, self.min_gap, self.background, self.threshold)
        if self._open is not None:
            run = self._open
            clone._open = _Run(run.label, run.start, run.end, list(run.confidences))
        clone._tail = list(self._tail)
        return clone.flush()

    def flush(self) -> list[Interval]:
        """End of stream: emit the open interval and whatever its tail holds."""
        out: list[Interval] = []
        while self._open is not None:
            run, tail = self._open, self._tail
            self._open, self._tail = None, []
            out += self._emit(run)
            for seg in tail:
                out += self.push(*seg)
        return out


def intervals(segments: list[tuple[str, float, float, float]], min_event: float = 1.0,
              min_gap: float = 2.0, background: str = BACKGROUND,
              threshold: float = 0.0) -> list[Interval]:
    """All intervals of a finished stream of (label, start, end, confidence) segments."""
    tracker = IntervalTracker(min_event, min_gap, background, threshold)
    out: list[Interval] = []
    for seg in segments:
        out += tracker.push(*seg)
    return out + tracker.flush()
