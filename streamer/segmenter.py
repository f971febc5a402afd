"""Cut a stream of stamped frames and audio blocks into 1-second segments, by timestamp.

    seg = Segmenter(frame_features, k=2, kinds=("video", "audio"), av_offset=0.0)
    for item in source:
        for s in seg.push(item):   # ClosedSegment: visual (7, 7, 512), audio (16000,)
            ...
    closed = seg.finish()           # end of stream: the remaining segments (see below)

Segment i covers stream time [i, i + 1). The rules (docs/STREAMING.md):
- frames: the model.extractors.sampling.select_frames rule, applied causally: each frame takes
  the targets j / k it is the first frame at or after, and goes through VGG19 as soon as
  it arrives if it takes any; targets left when the segment's video is complete take its last
  frame. The visual feature is the mean over the k selections. With `incremental=False`
  (a comparison baseline for benchmarks.latency) the selected frames wait and go through
  VGG19 in one batch at close instead.
- audio: placed by timestamp at 16 kHz (stream time minus `av_offset`), exactly 16,000 samples
  per segment; gaps are silence (zeros), samples of closed segments are dropped.
- a segment closes once every kind has data past its end (a frame at or after i + 1, audio up
  to i + 1), or for a live source at `tick` once now >= i + 1 + grace, another kind has data
  past its end and nothing of the kinds it waits for is queued (a stalled camera or
  microphone, not a busy consumer nor the end of the stream).
- a segment with no frame holds the last frame before it (the stream's first frame if none
  came before; zeros if the stream has no frame at all), as model.extract does; one with no
  audio is silence; both are listed in `missing`.
- end of stream at D seconds (the video's end; the audio's without video): floor(D + 0.5)
  segments; a trailing partial segment of at least 0.5 s (1 ms tolerance) is kept and flagged
  `partial`; audio missing before D is silence.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from model.extractors.sampling import targets as sampling_targets
from model.extractors.vggish_frontend import SAMPLE_RATE
from streamer.sources import AUDIO, KINDS, VIDEO, Audio, Frame, Item

SEGMENT_SAMPLES = SAMPLE_RATE  # 1-second segments
VISUAL_SHAPE = (7, 7, 512)
EPS = 1e-3  # seconds: tolerance on segment boundaries and on the partial-segment threshold
SNAP = 2  # audio blocks within this many samples of the expected position are contiguous


def segment_count(duration: float) -> int:
    """Segments a stream of `duration` seconds gives: full seconds, plus a trailing partial
    segment of at least 0.5 s."""
    return max(0, math.floor(duration + 0.5 + EPS))


def rms_db(x: np.ndarray) -> float:
    """Level of a float signal in dBFS (a full-scale sine is -3 dB), floored at -120."""
    if len(x) == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
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


@dataclass
class ClosedSegment:
    index: int
    start: float  # stream seconds
    end: float  # start + 1, or the end of the stream for a partial last segment
    visual: np.ndarray  # (7, 7, 512) float32, mean over the k selected frames
    audio: np.ndarray  # (16000,) float32 mono at 16 kHz
    missing: tuple[str, ...] = ()  # kinds with no data in this segment
    partial: bool = False
    frames: int = 0  # frames that arrived in the segment
    closed_at: float = 0.0  # monotonic time its data was complete
    last_capture: float = 0.0  # monotonic capture time of its newest item
    visual_ms: float = 0.0  # VGG19 time spent after close (the last frame's fill)

    @property
    def audio_rms_db(self) -> float:
        return rms_db(self.audio)


@dataclass
class _Open:
    """A segment still being filled."""

    selector: FrameSelector
    visual_sum: np.ndarray | None = None  # (7, 7, 512) float64, sum over selections
    frames: int = 0
    last_rgb: np.ndarray | None = None
    last_feature: np.ndarray | None = None  # the last frame's feature, if it was computed
    pending: list[tuple[np.ndarray, int]] = field(default_factory=list)  # (rgb, targets taken)
    audio: np.ndarray = field(default_factory=lambda: np.zeros(SEGMENT_SAMPLES, np.float32))
    audio_samples: int = 0
    last_capture: float = 0.0


class Segmenter:
    def __init__(self, frame_features: Callable[[np.ndarray], np.ndarray], k: int,
                 kinds: Sequence[str] = KINDS, av_offset: float = 0.0,
                 grace: float = 0.5, incremental: bool = True) -> None:
        """frame_features: rgb (n, H, W, 3) uint8 -> (n, 7, 7, 512); k frames per segment;
        av_offset: seconds the audio lags the picture (audio time is shifted back by it);
        grace: how long past a segment's end a live `tick` waits for late data;
        incremental: VGG19 on each selected frame as it arrives (else all of them at close)."""
        self.frame_features, self.k = frame_features, k
        self.incremental = incremental
        self.kinds = tuple(kinds)
        self.av_offset, self.grace = av_offset, grace
        self.next = 0  # the oldest segment not yet closed
        self._open: dict[int, _Open] = {}
        self._first_rgb: np.ndarray | None = None  # the stream's first frame
        self._held: tuple[np.ndarray, np.ndarray | None] | None = None  # last closed frame
        # video
        self._video_seg = -1  # segment of the newest frame
        self._first_t: float | None = None
        self._last_t: float | None = None
        self._n_frames = 0
        # audio (global sample index at 16 kHz, offset-corrected)
        self._audio_next: int | None = None
        self.late = dict.fromkeys(KINDS, 0)  # items (video) / samples (audio) after their close
        self.visual_frame_ms: list[float] = []  # VGG19 time of every frame computed

    # ------------------------------------------------------------------ input
    def push(self, item: Item) -> list[ClosedSegment]:
        now = time.monotonic()
        if isinstance(item, Frame):
            self._push_frame(item)
        else:
            self._push_audio(item)
        return self._close_ready(now)

    def _segment(self, i: int) -> _Open:
        if i not in self._open:
            self._open[i] = _Open(FrameSelector(self.k))
        return self._open[i]

    def _features(self, rgb: np.ndarray) -> np.ndarray:
        return self._batch_features(rgb[None])[0]  # (7, 7, 512)

    def _batch_features(self, rgbs: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        f = np.asarray(self.frame_features(rgbs), np.float32)  # (n, 7, 7, 512)
        ms = (time.perf_counter() - t0) * 1000
        self.visual_frame_ms.extend([ms / len(rgbs)] * len(rgbs))
        return f

    def _push_frame(self, f: Frame) -> None:
        i = math.floor(f.t)
        if f.t < 0 or i < self.next or (self._last_t is not None and f.t <= self._last_t):
            self.late[VIDEO] += 1  # before the stream, after its segment closed, or out of order
            return
        if self._first_t is None:
            self._first_t, self._first_rgb = f.t, f.rgb
        self._last_t, self._video_seg = f.t, i
        self._n_frames += 1
        s = self._segment(i)
        s.frames += 1
        s.last_capture = max(s.last_capture, f.wall)
        taken = s.selector.offer(f.t - i)
        s.last_rgb, s.last_feature = f.rgb, None
        if taken and not self.incremental:
            s.pending.append((f.rgb, taken))
        elif taken:
            feat = self._features(f.rgb)
            s.last_feature = feat
            s.visual_sum = (np.zeros(VISUAL_SHAPE, np.float64) if s.visual_sum is None
                            else s.visual_sum)
            s.visual_sum += taken * feat.astype(np.float64)

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

    def _complete(self, i: int) -> bool:
        return not self._waiting_for(i)

    def _close_ready(self, now: float) -> list[ClosedSegment]:
        out = []
        while self._complete(self.next):
            out.append(self._close(self.next, now))
        return out

    def tick(self, now: float, stream_now: float,
             drained: Iterable[str] = KINDS) -> list[ClosedSegment]:
        """Live sources: close a segment whose end is `grace` s past (stream time `stream_now`)
        when another kind has data past its end and the kinds it still waits for are `drained`
        (nothing of them queued: stalled, not merely behind); their late data is then dropped.
        With every kind silent nothing is closed: the stream may have ended."""
        drained = set(drained)
        out = self._close_ready(now)
        while self.next + 1 + self.grace <= stream_now:
            waiting = self._waiting_for(self.next)
            if waiting == set(self.kinds) or not waiting <= drained:
                break
            out.append(self._close(self.next, now))
        return out

    def data_end(self) -> float:
        """Where the stream's data ends: the video's end (its last frame lasts one mean frame
        interval), as model.extract measures a clip; the audio's end without any frame."""
        if self._last_t is not None:
            frame_dt = ((self._last_t - self._first_t) / (self._n_frames - 1)
                        if self._n_frames > 1 else 0.0)
            return self._last_t + frame_dt
        return 0.0 if self._audio_next is None else self._audio_next / SAMPLE_RATE

    def finish(self, end: float | None = None) -> list[ClosedSegment]:
        """End of stream (at `end` s if given, else where the data ends): close the remaining
        segments by the segment-count rule; later data is discarded."""
        now = time.monotonic()
        d = self.data_end() if end is None else min(end, self.data_end())
        n = segment_count(d)
        out = []
        while self.next < n:
            i = self.next
            partial = d < i + 1 - EPS
            out.append(self._close(i, now, end=round(d, 6) if partial else None))
        self._open.clear()
        return out

    def _held_feature(self) -> np.ndarray:
        """The feature a segment without frames takes: the last frame before it, or the
        stream's first frame, or zeros."""
        if self._held is None:
            if self._first_rgb is None:
                return np.zeros(VISUAL_SHAPE, np.float32)
            self._held = (self._first_rgb, None)
        rgb, feature = self._held
        if feature is None:
            feature = self._features(rgb)
            self._held = (rgb, feature)
        return feature

    def _close(self, i: int, now: float, end: float | None = None) -> ClosedSegment:
        s = self._open.pop(i, None) or _Open(FrameSelector(self.k))
        self.next = i + 1
        t0 = time.perf_counter()
        missing = []
        if s.last_rgb is None:
            missing.append(VIDEO)
            visual = self._held_feature()
        else:
            total = np.zeros(VISUAL_SHAPE, np.float64) if s.visual_sum is None else s.visual_sum
            if s.pending:  # not incremental: the selected frames (+ the last for the rest)
                rgbs = [rgb for rgb, _ in s.pending]
                last_pending = s.pending[-1][0] is s.last_rgb
                if s.selector.left and not last_pending:
                    rgbs.append(s.last_rgb)
                feats = self._batch_features(np.stack(rgbs))  # (n, 7, 7, 512)
                for (_, taken), feat in zip(s.pending, feats, strict=False):
                    total = total + taken * feat.astype(np.float64)
                if last_pending or s.selector.left:
                    s.last_feature = feats[-1]
            if s.selector.left:
                if s.last_feature is None:
                    s.last_feature = self._features(s.last_rgb)
                total = total + s.selector.left * s.last_feature.astype(np.float64)
            visual = (total / self.k).astype(np.float32)
            self._held = (s.last_rgb, s.last_feature)
        visual_ms = (time.perf_counter() - t0) * 1000
        if s.audio_samples == 0:
            missing.append(AUDIO)
        return ClosedSegment(
            index=i, start=float(i), end=float(i + 1) if end is None else end, visual=visual,
            audio=s.audio, missing=tuple(missing), partial=end is not None, frames=s.frames,
            closed_at=now, last_capture=s.last_capture or now, visual_ms=visual_ms)
