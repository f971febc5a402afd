"""Stamped items: what every source yields and the segmenter cuts into 1-second segments.

    Frame(t, rgb)              # a picture at stream time t (seconds), (H, W, 3) uint8
    Audio(t, samples, rate)    # mono float32 samples, the first at stream time t

A frame's picture may be given as a function that makes it (`Frame(t, convert)`): it runs on the
first read of `rgb`, so a consumer that uses few frames (offline extraction samples k a second)
converts only those.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

VIDEO, AUDIO = "video", "audio"
KINDS = (VIDEO, AUDIO)


class Frame:
    __slots__ = ("_rgb", "t", "wall")
    kind = VIDEO

    def __init__(self, t: float, rgb: np.ndarray | Callable[[], np.ndarray],
                 wall: float | None = None) -> None:
        self.t = t  # stream time of the frame, seconds
        self._rgb = rgb
        self.wall = time.monotonic() if wall is None else wall  # monotonic time of capture

    @property
    def rgb(self) -> np.ndarray:
        """(H, W, 3) uint8."""
        if callable(self._rgb):
            self._rgb = self._rgb()
        return self._rgb

    def __repr__(self) -> str:
        return f"Frame(t={self.t!r})"


@dataclass(frozen=True, slots=True, eq=False)
class Audio:
    t: float  # stream time of the first sample, seconds
    samples: np.ndarray  # (n,) float32 mono in [-1, 1]
    rate: int  # samples per second
    wall: float = field(default_factory=time.monotonic)
    kind = AUDIO

    @property
    def end(self) -> float:
        return self.t + len(self.samples) / self.rate


Item = Frame | Audio
