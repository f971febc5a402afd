"""A flash-and-click test clip with a known A/V offset, to check calibrate.sync end to end.

    script = FlashClick(offset=0.15)                  # the clicks sound 150 ms after the flashes
    streamer.synthetic.write_media("sync.mkv", script, fps=25)
    python -m calibrate.sync --replay sync.mkv        # -> about +150 ms

Each event is a flash (the whole picture bright for `flash_frames` frames, starting on a frame)
and a short click of decaying noise `offset` seconds after the flash's first frame. Events come
at irregular intervals (a steady beat would align equally well one beat away); the background is
a dim picture with sensor-like noise and faint audio noise. Frames and samples are pure functions
of time and sample index (the streamer.synthetic.Script interface that write_media encodes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from streamer.synthetic import SAMPLE_RATE, noise

VIDEO_NOISE, CLICK_NOISE = 1 << 40, 1 << 41  # separate index ranges of the one noise function
# event times in seconds: irregular gaps of 0.9 to 1.7 s
EVENTS = (0.6, 1.52, 2.88, 3.6, 4.96, 6.2, 7.04, 8.44, 9.6, 10.76)


@dataclass(frozen=True)
class FlashClick:
    offset: float = 0.0  # s the clicks come after their flashes (negative: before)
    events: tuple[float, ...] = EVENTS  # flash times, rounded down to a frame
    duration: float = 12.0
    fps: float = 25.0
    size: tuple[int, int] = (48, 64)  # (H, W)
    flash_frames: int = 3
    click_ms: float = 8.0
    seed: int = 0

    def flash_frame(self, t: float) -> int:
        return math.floor(t * self.fps + 1e-9)

    def frame(self, t: float) -> np.ndarray:
        i = round(t * self.fps)
        lit = any(0 <= i - self.flash_frame(e) < self.flash_frames for e in self.events)
        h, w = self.size
        idx = np.arange(h * w * 3, dtype=np.int64) + i * h * w * 3 + VIDEO_NOISE
        grain = noise(idx, self.seed).reshape(h, w, 3) * 4.0
        return np.clip((210.0 if lit else 50.0) + grain, 0, 255).astype(np.uint8)

    def click_times(self) -> list[float]:
        """When each click starts: its flash's first frame time plus the offset."""
        return [self.flash_frame(e) / self.fps + self.offset for e in self.events]

    def samples(self, start: int, n: int, rate: int = SAMPLE_RATE) -> np.ndarray:
        idx = np.arange(start, start + n, dtype=np.int64)
        out = noise(idx, self.seed) * 0.005
        length = round(self.click_ms / 1000 * rate)
        for c in self.click_times():
            k = idx - round(c * rate)
            on = (k >= 0) & (k < length)
            if on.any():
                decay = np.exp(-k[on] / (0.3 * length))
                out[on] += 0.7 * noise(idx[on] + CLICK_NOISE, self.seed) * decay
        return out.astype(np.float32)

    def frame_count(self) -> int:
        return math.ceil(self.duration * self.fps - 1e-9)

    def sample_count(self, rate: int = SAMPLE_RATE) -> int:
        return round(self.duration * rate)
