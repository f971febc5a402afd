"""The live segmenter: `model.segments.Segmenter` plus the deadline of a live source.

    seg = LiveSegmenter(frame_features, k=2, kinds=("video", "audio"), grace=0.5)
    closed = seg.push(item)                               # as model.segments.Segmenter
    closed += seg.tick(time.monotonic(), clock.now(), queue.drained())

A camera or microphone can stall; the segments it owes must not wait for it forever. At `tick`
a segment i closes once now >= i + 1 + grace, another kind has data past its end and nothing
of the kinds it waits for is queued (a stalled device, not a busy consumer nor the end of the
stream); data of it that comes later is dropped and counted as late.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from model.items import KINDS
from model.segments import ClosedSegment, FrameFeatures, Segmenter


class LiveSegmenter(Segmenter):
    def __init__(self, frame_features: FrameFeatures, k: int, kinds: Sequence[str] = KINDS,
                 av_offset: float = 0.0, grace: float = 0.5,
                 max_lag: float | None = None) -> None:
        """grace: how long past a segment's end `tick` waits for late data; the other
        arguments are Segmenter's."""
        super().__init__(frame_features, k, kinds, av_offset, max_lag)
        self.grace = grace

    def tick(self, now: float, stream_now: float,
             drained: Iterable[str] = KINDS) -> list[ClosedSegment]:
        """Close a segment whose end is `grace` s past (stream time `stream_now`) when another
        kind has data past its end and the kinds it still waits for are `drained` (nothing of
        them queued: stalled, not merely behind). With every kind silent nothing is closed:
        the stream may have ended."""
        drained = set(drained)
        out = self._close_ready(now)
        while self.next + 1 + self.grace <= stream_now:
            waiting = self._waiting_for(self.next)
            if waiting == set(self.kinds) or not waiting <= drained:
                break
            out.append(self._close(self.next, now))
        return out
