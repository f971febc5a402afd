"""Cut a stream of stamped frames and audio blocks into 1-second segments, by timestamp: the one
definition of "segment i", for live streams (`streamer.segmenter` adds the live deadline) and
offline extraction (`model.file_features`).

    seg = Segmenter(frame_features, k=2, kinds=("video", "audio"), av_offset=0.0)
    for item in items:
        for s in seg.push(item):   # ClosedSegment: visual (7, 7, 512), audio (16000,)
            ...
    closed = seg.finish()           # end of stream: the remaining segments (see below)

Segment i covers stream time [i, i + 1). The rules (docs/STREAMING.md):
- frames: the model.extractors.sampling.select_frames rule, applied causally: each frame takes
  the targets j / k it is the first frame at or after; targets left when the segment's video
  is complete take its last frame. The visual feature is the mean over the k selections.
- audio: placed by timestamp at 16 kHz (stream time minus `av_offset`), exactly 16,000 samples
  per segment; gaps are silence (zeros), samples of closed segments are dropped.
- a segment closes once every kind has data past its end (a frame at or after i + 1, audio up
  to i + 1), or at the end of the stream.
- a segment with no frame holds the last frame before it (the stream's first frame if none
  came before; zeros if the stream has no frame at all); one with no audio is silence; both
  are listed in `missing`.
- end of stream at D seconds (the video's end; the audio's without video): floor(D + 0.5)
  segments; a trailing partial segment of at least 0.5 s (1 ms tolerance) is kept and flagged
  `partial`; audio missing before D is silence.

When VGG19 runs on the selected frames (`frame_features`, rgb (n, H, W, 3) -> (n, 7, 7, 512)):
- `push` never runs it, so a segment closes (and can be labelled) the moment its data is
  complete, not after the VGG19 of the frame that completed it;
- `compute_next()` runs it on the oldest selected frame still without a feature: a live caller
  calls it whenever no item is waiting, so closing a segment costs no VGG19 when the frame rate
  is at least k and the machine keeps up;
- at close, the segment's selected frames still without a feature, in one batch;
- `frame_features=None` (offline): never here; a closed segment carries its `picks` and
  `visual_features` computes many segments' in one batch.

Shedding (live only, `max_lag` set): a selected frame whose VGG19 has not started when the data
has moved more than `max_lag` seconds past it is not computed; its targets go to the segment's
previous selected frame, or, for the segment's first, to the newest frame already computed (of
an earlier segment; the stream's first frame is always computed). A segment closes with the
frames computed by then (the rest shed the same way), so closing costs at most one VGG19 frame,
its first, when none was. A machine that cannot keep up with k thus averages fewer distinct
frames per segment, and one that cannot keep up with a single frame holds a recent one, instead
of falling behind and losing picture and sound; `ClosedSegment.shed` counts those targets.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from model.extractors.sampling import targets as sampling_targets
from model.extractors.vggish_frontend import SAMPLE_RATE
from model.items import AUDIO, KINDS, VIDEO, Audio, Frame, Item
from model.layout import VISUAL_SHAPE

SEGMENT_SAMPLES = SAMPLE_RATE  # 1-second segments
EPS = 1e-3  # seconds: tolerance on segment boundaries and on the partial-segment threshold
SNAP = 2  # audio blocks within this many samples of the expected position are contiguous

FrameFeatures = Callable[[np.ndarray], np.ndarray]  # rgb (n, H, W, 3) -> (n, 7, 7, 512)


def segment_count(duration: float) -> int:
    """Segments a stream of `duration` seconds gives: full seconds, plus a trailing partial
    segment of at least 0.5 s."""
    return max(0, math.floor(duration + 0.5 + EPS))


def rms_db(x: np.ndarray) -> float:
    """Level of a float signal in dBFS (a full-scale sine is -3 dB), floored at -120; NaN and
    infinite samples (a broken float file) do not count."""
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(x))))
    return max(-120.0, 20.0 * math.log10(rms + 1e-12))


class FrameSelector:
    """`select_frames` decided frame by frame: how many of the k targets each arriving frame
    takes (it is the first frame at or after them). Sorted arrival times give the same
    selection as `select_frames(times, k)`."""

    def __init__(self, k: int) -> None:
        self.targets = sampling_targets(k)
        self.taken = 0

    def offer(self, r: float) -> int:
        """Targets taken by a frame at time r (seconds from its segment's start)."""
        n = 0
        while self.taken < len(self.targets) and self.targets[self.taken] <= r:
            self.taken += 1
            n += 1
        return n

    @property
    def left(self) -> int:
        """Targets no frame has reached: they take the segment's last frame."""
        return len(self.targets) - self.taken


@dataclass(eq=False)
class Shot:
    """A frame a visual feature may use, and its VGG19 feature once computed. Segments that
    use the same frame (a held frame) share its Shot, so it is computed once."""

    frame: Frame
    feature: np.ndarray | None = None  # (7, 7, 512) float32


Picks = tuple[tuple[Shot, int], ...]  # (shot, targets it takes); the counts sum to k


def compute_features(shots: Iterable[Shot], frame_features: FrameFeatures) -> int:
    """Fill in the features of the shots that lack one, one batch per frame size; returns
    how many were computed."""
    todo: dict[int, Shot] = {id(s): s for s in shots if s.feature is None}
    by_size: dict[tuple[int, ...], list[Shot]] = {}
    for s in todo.values():
        by_size.setdefault(s.frame.rgb.shape, []).append(s)
    for group in by_size.values():
        feats = np.asarray(frame_features(np.stack([s.frame.rgb for s in group])), np.float32)
        for s, f in zip(group, feats, strict=True):
            s.feature = f
    return len(todo)


def mean_feature(picks: Picks) -> np.ndarray:
    """(7, 7, 512) float32: the count-weighted mean of the picks' features (zeros if none)."""
    if not picks:
        return np.zeros(VISUAL_SHAPE, np.float32)
    counts = np.array([c for _, c in picks], np.float64)
    feats = np.stack([s.feature for s, _ in picks]).astype(np.float64)
    return (np.tensordot(counts, feats, 1) / counts.sum()).astype(np.float32)


@dataclass
class ClosedSegment:
    index: int
    start: float  # stream seconds
    end: float  # start + 1, or the end of the stream for a partial last segment
    visual: np.ndarray | None  # (7, 7, 512) float32, mean over the k selected frames
    audio: np.ndarray  # (16000,) float32 mono at 16 kHz
    missing: tuple[str, ...] = ()  # kinds with no data in this segment
    partial: bool = False
    frames: int = 0  # frames that arrived in the segment
    closed_at: float = 0.0  # monotonic time its data was complete
    last_capture: float = 0.0  # monotonic capture time of its newest item
    visual_ms: float = 0.0  # VGG19 time spent at close (frames not computed before)
    picks: Picks = ()  # without frame_features: what `visual` will be the mean of
    shed: int = 0  # of the k targets, those given to an earlier frame (shedding, live)

    @property
    def audio_rms_db(self) -> float:
        return rms_db(self.audio)


def visual_features(segments: Sequence[ClosedSegment],
                    frame_features: FrameFeatures) -> np.ndarray:
    """(n, 7, 7, 512) float32 of segments closed without frame_features: every frame they use
    goes through `frame_features` once, in one call per frame size."""
    compute_features([s for seg in segments for s, _ in seg.picks], frame_features)
    return np.stack([mean_feature(seg.picks) for seg in segments]) if segments else \
        np.zeros((0, *VISUAL_SHAPE), np.float32)


@dataclass
class _Open:
    """A segment still being filled."""

    selector: FrameSelector
    picks: list[tuple[Shot, int]] = field(default_factory=list)
    last: Shot | None = None  # the newest frame
    frames: int = 0
    audio: np.ndarray = field(default_factory=lambda: np.zeros(SEGMENT_SAMPLES, np.float32))
    audio_samples: int = 0
    last_capture: float = 0.0
    shed: int = 0

    def uncomputed(self) -> int | None:
        """Index in `picks` of the oldest selected frame without a feature, or None."""
        return next((j for j, (shot, _) in enumerate(self.picks) if shot.feature is None), None)

    def shed_pick(self, j: int, newest: Shot | None) -> bool:
        """Give pick j's targets to pick j - 1 (an earlier frame of this segment), or the first
        pick's to `newest` (the newest frame computed, of an earlier segment); False when there
        is none."""
        n = self.picks[j][1]
        if j > 0:
            del self.picks[j]
            shot, m = self.picks[j - 1]
            self.picks[j - 1] = (shot, m + n)
        elif newest is not None:
            self.picks[0] = (newest, n)
        else:
            return False
        self.shed += n
        return True


class Segmenter:
    def __init__(self, frame_features: FrameFeatures | None, k: int,
                 kinds: Sequence[str] = KINDS, av_offset: float = 0.0,
                 max_lag: float | None = None) -> None:
        """frame_features: rgb (n, H, W, 3) uint8 -> (n, 7, 7, 512), or None to leave the
        visual features to `visual_features`; k frames per segment; av_offset: seconds the
        audio lags the picture (audio time is shifted back by it); max_lag: shed selected
        frames this many seconds behind the newest data (None: compute every one)."""
        self.frame_features, self.k = frame_features, k
        self.kinds = tuple(kinds)
        self.av_offset = av_offset
        self.max_lag = max_lag
        self._newest = -math.inf  # stream time of the newest data pushed
        self._latest: Shot | None = None  # the newest frame with a VGG19 feature
        self.next = 0  # the oldest segment not yet closed
        self._open: dict[int, _Open] = {}
        self._first: Shot | None = None  # the stream's first frame
        self._held: Shot | None = None  # the last frame of the newest closed segment
        # video
        self._video_seg = -1  # segment of the newest frame
        self._first_t: float | None = None
        self._last_t: float | None = None
        self.n_frames = 0  # frames taken into segments
        # audio (global sample index at 16 kHz, offset-corrected)
        self._audio_next: int | None = None
        self.late = dict.fromkeys(KINDS, 0)  # items (video) / samples (audio) after their close
        self.visual_frame_ms: list[float] = []  # VGG19 time of every frame computed

    # ------------------------------------------------------------------ input
    def push(self, item: Item) -> list[ClosedSegment]:
        now = time.monotonic()
        if isinstance(item, Frame):
            self._newest = max(self._newest, item.t)
            self._push_frame(item)
        else:
            self._newest = max(self._newest, item.end)
            self._push_audio(item)
        return self._close_ready(now)

    @property
    def pending(self) -> bool:
        """A selected frame of an open segment still waits for its VGG19 feature."""
        return self.frame_features is not None and any(
            s.uncomputed() is not None for s in self._open.values())

    def compute_next(self) -> bool:
        """VGG19 on the oldest selected frame still without a feature (or shed it, see the
        module doc); False when there is none."""
        if self.frame_features is None:
            return False
        for i in sorted(self._open):
            s = self._open[i]
            if (j := s.uncomputed()) is not None:
                self._settle(s, j)
                return True
        return False

    def _shed(self, s: _Open, j: int) -> bool:
        """Shed pick j of s when it lacks a feature and the data is more than max_lag past it;
        False: it is to be computed."""
        shot = s.picks[j][0]
        behind = self.max_lag is not None and self._newest - shot.frame.t > self.max_lag
        return shot.feature is None and behind and s.shed_pick(j, self._latest)

    def _settle(self, s: _Open, j: int) -> None:
        """Compute pick j of s (if it lacks a feature), or shed it."""
        if not self._shed(s, j):
            self._compute([s.picks[j][0]])

    def _settle_at_close(self, s: _Open) -> None:
        """Live: a segment closes with the frames computed so far (the others shed to the pick
        before them), so closing costs at most one VGG19 frame: its first, when none was
        computed and the data is not max_lag past it (else it holds the newest computed)."""
        if s.picks:
            self._settle(s, 0)
        j = 1
        while j < len(s.picks):
            if s.picks[j][0].feature is None:
                s.shed_pick(j, None)
            else:
                j += 1

    def _segment(self, i: int) -> _Open:
        if i not in self._open:
            self._open[i] = _Open(FrameSelector(self.k))
        return self._open[i]

    def _compute(self, shots: Iterable[Shot]) -> None:
        assert self.frame_features is not None
        shots = list(shots)
        t0 = time.perf_counter()
        n = compute_features(shots, self.frame_features)
        for shot in shots:
            if self._latest is None or shot.frame.t > self._latest.frame.t:
                self._latest = shot
        if n:
            ms = (time.perf_counter() - t0) * 1000
            self.visual_frame_ms.extend([ms / n] * n)

    def _push_frame(self, f: Frame) -> None:
        i = math.floor(f.t)
        if f.t < 0 or i < self.next or (self._last_t is not None and f.t <= self._last_t):
            self.late[VIDEO] += 1  # before the stream, after its segment closed, or out of order
            return
        prev = self._open.get(self._video_seg) if i > self._video_seg else None
        if prev is not None and prev.last is not None:
            # That segment's video is complete: its last frame may take targets or be held,
            # so its picture is made now rather than kept as a decoded frame.
            _ = prev.last.frame.rgb
        self._last_t, self._video_seg = f.t, i
        self.n_frames += 1
        s = self._segment(i)
        s.frames += 1
        s.last_capture = max(s.last_capture, f.wall)
        s.last = Shot(f)
        if self._first is None:
            self._first_t, self._first = f.t, s.last
        taken = s.selector.offer(f.t - i)
        if taken:
            _ = f.rgb  # a selected frame's picture is needed: made now, while it is decoded
            s.picks.append((s.last, taken))

    def _push_audio(self, a: Audio) -> None:
        if a.rate != SAMPLE_RATE:
            raise ValueError(f"audio must be {SAMPLE_RATE} Hz mono, got {a.rate} Hz")
        n = len(a.samples)
        g0 = round((a.t - self.av_offset) * SAMPLE_RATE)
        if self._audio_next is not None and abs(g0 - self._audio_next) <= SNAP:
            g0 = self._audio_next  # contiguous with the previous block despite clock rounding
        self._audio_next = max(g0 + n, self._audio_next or 0)
        lo = max(g0, self.next * SEGMENT_SAMPLES, 0)
        self.late[AUDIO] += max(0, min(lo, g0 + n) - g0)
        while lo < g0 + n:
            i = lo // SEGMENT_SAMPLES
            hi = min(g0 + n, (i + 1) * SEGMENT_SAMPLES)
            s = self._segment(i)
            s.audio[lo - i * SEGMENT_SAMPLES:hi - i * SEGMENT_SAMPLES] = a.samples[lo - g0:hi - g0]
            s.audio_samples += hi - lo
            s.last_capture = max(s.last_capture, a.wall)
            lo = hi

    # ------------------------------------------------------------------ closing
    def _waiting_for(self, i: int) -> set[str]:
        """Kinds segment i still needs data from."""
        out = set()
        if VIDEO in self.kinds and self._video_seg <= i:
            out.add(VIDEO)
        if AUDIO in self.kinds and (self._audio_next is None
                                    or self._audio_next < (i + 1) * SEGMENT_SAMPLES):
            out.add(AUDIO)
        return out

    def _close_ready(self, now: float) -> list[ClosedSegment]:
        out = []
        while not self._waiting_for(self.next):
            out.append(self._close(self.next, now))
        return out

    def data_end(self) -> float:
        """Where the stream's data ends: the video's end (its last frame lasts one mean frame
        interval); the audio's end without any frame."""
        if self._last_t is not None:
            frame_dt = ((self._last_t - self._first_t) / (self.n_frames - 1)
                        if self.n_frames > 1 else 0.0)
            return self._last_t + frame_dt
        return 0.0 if self._audio_next is None else self._audio_next / SAMPLE_RATE

    def finish(self, end: float | None = None, min_count: int = 0) -> list[ClosedSegment]:
        """End of stream (at `end` s if given, else where the data ends): close the remaining
        segments by the segment-count rule, and at least `min_count` in all (those past the
        data hold the last frame and are silent); later data is discarded."""
        now = time.monotonic()
        d = self.data_end() if end is None else min(end, self.data_end())
        n = max(segment_count(d), min_count)
        out = []
        while self.next < n:
            i = self.next
            partial = i < d < i + 1 - EPS
            out.append(self._close(i, now, end=round(d, 6) if partial else None))
        self._open.clear()
        return out

    def _close(self, i: int, now: float, end: float | None = None) -> ClosedSegment:
        s = self._open.pop(i, None) or _Open(FrameSelector(self.k))
        self.next = i + 1
        missing = []
        if s.last is None:
            missing.append(VIDEO)
            held = self._held or self._first
            s.picks = [(held, self.k)] if held is not None else []
        else:
            if s.selector.left:
                s.picks.append((s.last, s.selector.left))
            self._held = s.last
        if s.audio_samples == 0:
            missing.append(AUDIO)
        t0 = time.perf_counter()
        visual = None
        if self.frame_features is not None:
            if self.max_lag is not None:
                self._settle_at_close(s)
            self._compute(shot for shot, _ in s.picks)
            visual = mean_feature(tuple(s.picks))
        visual_ms = (time.perf_counter() - t0) * 1000
        return ClosedSegment(
            index=i, start=float(i), end=float(i + 1) if end is None else end, visual=visual,
            audio=s.audio, missing=tuple(missing), partial=end is not None, frames=s.frames,
            closed_at=now, last_capture=s.last_capture or now, visual_ms=visual_ms,
            picks=() if visual is not None else tuple(s.picks), shed=s.shed)
