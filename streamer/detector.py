"""The detector: one model call per closed segment over the 10-segment window, softmax, lookahead.

    det = Detector(live_backend("eager", net), class_names, lookahead=2, temperature=1.3)
    for p in det.push(audio_feature, visual_feature):   # (128,), (7, 7, 512)
        print(p.segment, p.label, p.confidence)
    for p in det.flush(): ...                            # end of stream

With lookahead k (0..9) the call made when segment i closes labels segment i - k (window
position 9 - k), giving the backward RNNs k seconds of future context for k seconds of delay.
At the end of the stream the k segments still unlabelled are labelled from the last window
(position 9 - (n - 1 - j)), as model.data.window_for_segment does; their record's `lookahead`
says how much future they really had. Probabilities are softmax(logits / T), T the checkpoint's
calibrated temperature (1 without one); a position whose probabilities are not finite (the model
overflowed) is labelled background with uniform probabilities and flagged `nonfinite`. The
backend is a model.backends WindowBackend (any backend, eager included): it takes the window's
arrays and gives float32 CPU tensors.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from model.calibration import softmax
from model.errors import UserError
from model.layout import SEGMENTS
from model.limits import check_lookahead
from streamer.window import Window

if TYPE_CHECKING:
    from model.backends.build import WindowBackend


@dataclass(frozen=True)
class Prediction:
    segment: int
    probs: np.ndarray  # (C,) float64
    class_id: int
    label: str
    confidence: float
    lookahead: int  # future segments the window really held for this one
    warmup: bool  # the window was padded
    attention: np.ndarray | None  # (7, 7) early-fusion attention of this segment, if any
    model_ms: float  # the model call that produced it
    nonfinite: bool = False  # the model gave no finite probabilities: background, uniform


class Detector:
    def __init__(self, backend: WindowBackend, class_names: Sequence[str], lookahead: int = 0,
                 temperature: float = 1.0, pad: str = "repeat-first") -> None:
        self.backend, self.class_names = backend, list(class_names)
        self.lookahead, self.temperature = check_lookahead(lookahead), temperature
        self.window = Window(SEGMENTS, pad)
        self._probs: np.ndarray | None = None  # (10, C) of the last call
        self._finite = np.ones(SEGMENTS, bool)  # (10,) which gave finite probabilities
        self._attn: np.ndarray | None = None  # (10, 7, 7)
        self._warmup = True
        self._model_ms = 0.0
        self._next = 0  # the next segment to label

    def _call(self) -> None:
        audio, visual = self.window.arrays()  # (10, 128), (10, 7, 7, 512)
        t0 = time.perf_counter()
        out = self.backend(audio[None], visual[None])  # (1, 10, C) or ((1, 10, C), attention)
        logits, attn = (out[0], out[1]) if isinstance(out, tuple) else (out, None)
        logits = np.asarray(logits[0], np.float32)  # (10, C)
        self._model_ms = (time.perf_counter() - t0) * 1000
        if logits.shape[-1] != len(self.class_names):
            raise UserError(f"the model gives {logits.shape[-1]} classes but the checkpoint names "
                            f"{len(self.class_names)}; the checkpoint is inconsistent, re-save it")
        with np.errstate(invalid="ignore", over="ignore"):  # non-finite rows are handled here
            probs = softmax(logits, self.temperature)  # (10, C)
        self._finite = np.isfinite(probs).all(axis=-1)
        probs[~self._finite] = 1.0 / len(self.class_names)
        self._probs = probs
        self._attn = None if attn is None else np.asarray(attn[0], np.float32)  # (10, 7, 7)
        self._warmup = self.window.padded > 0

    def _predict(self, j: int) -> Prediction:
        assert self._probs is not None
        ahead = self.window.count - 1 - j
        pos = SEGMENTS - 1 - ahead
        probs, finite = self._probs[pos], bool(self._finite[pos])
        c = int(np.argmax(probs)) if finite else len(self.class_names) - 1  # background
        return Prediction(segment=j, probs=probs, class_id=c, label=self.class_names[c],
                          confidence=float(probs[c]), lookahead=ahead, warmup=self._warmup,
                          attention=None if self._attn is None else self._attn[pos],
                          model_ms=self._model_ms, nonfinite=not finite)

    def push(self, audio: np.ndarray, visual: np.ndarray) -> list[Prediction]:
        """Add a closed segment's features; returns the prediction that became due, if any."""
        self.window.push(audio, visual)
        self._call()
        out = []
        while self._next <= self.window.count - 1 - self.lookahead:
            out.append(self._predict(self._next))
            self._next += 1
        return out

    def flush(self) -> list[Prediction]:
        """End of stream: label the segments still waiting for their lookahead."""
        out = []
        while self._next < self.window.count:
            out.append(self._predict(self._next))
            self._next += 1
        return out
