"""How many VGG19 frames per segment this machine keeps up with: the rule behind
`--frames-per-segment auto`, from measured costs (pure: no timing here).

    k = frames_for_realtime(frame_ms=120.0, segment_ms=40.0, window_ms=3.0)
    k.frames, k.rtf, k.reason   # 5, 0.643, "5 frames per segment: 5 x 120 ms VGG19 + ..."

Per 1-s segment the pipeline computes K VGG19 frames, one VGGish example (and its log-mel front
end) and one JCA window; its real-time factor is that compute over the segment's second. The
largest K <= MAX_FRAMES (the AVE recipe's 16) with RTF <= TARGET_RTF leaves the rest of the
second to capture, decoding and the dashboard, which share the same cores.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_FRAMES = 16  # the AVE recipe: 16 frames averaged per segment
TARGET_RTF = 0.7
SEGMENT_MS = 1000.0


@dataclass(frozen=True)
class FramesChoice:
    frames: int  # K, VGG19 frames per segment
    rtf: float  # the real-time factor at K from the given costs
    reason: str  # one line: what was picked and why


def realtime_factor(frames: int, frame_ms: float, segment_ms: float, window_ms: float) -> float:
    """Compute per segment over the segment's duration."""
    return (frames * frame_ms + segment_ms + window_ms) / SEGMENT_MS


def frames_for_realtime(frame_ms: float, segment_ms: float, window_ms: float = 0.0, *,
                        max_frames: int = MAX_FRAMES,
                        target_rtf: float = TARGET_RTF) -> FramesChoice:
    """The largest K in 1..max_frames with realtime_factor(K) <= target_rtf, from the measured
    VGG19 cost per frame, VGGish cost per segment and JCA window cost (all milliseconds). When
    even K = 1 is over the target, K = 1 and the reason says the machine cannot keep up."""
    costs = {"frame_ms": frame_ms, "segment_ms": segment_ms, "window_ms": window_ms}
    for name, value in costs.items():
        if not value >= 0:  # NaN too
            raise ValueError(f"{name} must be a measured cost >= 0, got {value}")
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    fits = [k for k in range(1, max_frames + 1)
            if realtime_factor(k, frame_ms, segment_ms, window_ms) <= target_rtf]
    k = max(fits, default=1)
    rtf = realtime_factor(k, frame_ms, segment_ms, window_ms)
    sums = (f"{k} x {frame_ms:.0f} ms VGG19 + {segment_ms:.0f} ms VGGish + {window_ms:.0f} ms "
            f"window = RTF {rtf:.2f}")
    if not fits:
        why = f"even 1 frame is over RTF {target_rtf}: {sums} (segments may be dropped)"
    elif k == max_frames:
        why = f"the AVE recipe fits: {sums} <= {target_rtf}" if max_frames == MAX_FRAMES else \
            f"the most allowed: {sums} <= {target_rtf}"
    else:
        over = realtime_factor(k + 1, frame_ms, segment_ms, window_ms)
        why = f"{sums} <= {target_rtf}; {k + 1} frames would be RTF {over:.2f}"
    return FramesChoice(k, rtf, f"{k} frames per segment: {why}")
