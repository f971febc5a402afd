"""The model window: the last 10 segments' features, left-padded during warm-up.

    w = Window()
    w.push(audio_feature, visual_feature)       # (128,), (7, 7, 512)
    audio, visual = w.arrays()                  # (10, 128), (10, 7, 7, 512)

The padding policy is model.data.window_for_segment's ("repeat-first": until 10 segments exist
the window starts with copies of segment 0), so live windows equal the offline ones; only the
first segment and the last 10 are kept, whatever the stream's length.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from model.layout import PAD_MODES, SEGMENTS


class Window:
    def __init__(self, size: int = SEGMENTS, pad: str = "repeat-first") -> None:
        if pad not in PAD_MODES:
            raise ValueError(f"pad must be one of {PAD_MODES}, got {pad!r}")
        self.size, self.pad = size, pad
        self._audio: deque[np.ndarray] = deque(maxlen=size)
        self._visual: deque[np.ndarray] = deque(maxlen=size)
        self._first: tuple[np.ndarray, np.ndarray] | None = None
        self.count = 0  # segments pushed so far

    def push(self, audio: np.ndarray, visual: np.ndarray) -> None:
        audio = np.asarray(audio, np.float32)
        visual = np.asarray(visual, np.float32)
        if self._first is None:
            self._first = (audio, visual)
        self._audio.append(audio)
        self._visual.append(visual)
        self.count += 1

    @property
    def padded(self) -> int:
        """Padding rows at the start of the window (warm-up while > 0)."""
        return self.size - len(self._audio)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(size, 128), (size, 7, 7, 512) float32; the newest segment is the last row."""
        if self._first is None:
            raise ValueError("the window is empty")
        audio, visual = list(self._audio), list(self._visual)
        if self.padded:
            fa, fv = self._first
            if self.pad == "zeros":
                fa, fv = np.zeros_like(fa), np.zeros_like(fv)
            audio = [fa] * self.padded + audio
            visual = [fv] * self.padded + visual
        return np.stack(audio), np.stack(visual)
