"""The detector: one model call per closed segment over the 10-segment window, softmax, lookahead.

    det = Detector(eager_backend(net), class_names, lookahead=2, temperature=1.3)
    for p in det.push(audio_feature, visual_feature):   # (128,), (7, 7, 512)
        print(p.segment, p.label, p.confidence)
    for p in det.flush(): ...                            # end of stream

With lookahead k (0..9) the call made when segment i closes labels segment i - k (window
position 9 - k), giving the backward RNNs k seconds of future context for k seconds of delay.
At the end of the stream the k segments still unlabelled are labelled from the last window
(position 9 - (n - 1 - j)), as model.data.window_for_segment does; their record's `lookahead`
says how much future they really had. Probabilities are softmax(logits / T), T the checkpoint's
calibrated temperature (1 without one).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from model.calibration import softmax
from model.data import SEGMENTS
from model.errors import UserError
from model.recipe import FeatureRecipe
from streamer.window import Window

# (audio (B, 10, 128), visual (B, 10, 7, 7, 512)) float32 tensors -> logits (B, 10, C),
# or (logits, attention (B, 10, 7, 7) | None)
Backend = Callable[[torch.Tensor, torch.Tensor], torch.Tensor | tuple[torch.Tensor, ...]]
BACKENDS = ("eager",)  # more come from model.backends when it is installed


def eager_backend(model: nn.Module, device: str = "cpu") -> Backend:
    """Plain PyTorch: the model in eval mode under inference_mode, with its attention map."""
    model = model.to(device).eval()

    @torch.inference_mode()
    def run(audio: torch.Tensor, visual: torch.Tensor):
        return model(audio, visual, return_attention=True)

    return run


def make_backend(name: str, model: nn.Module, device: str = "cpu", precision: str = "fp32",
                 meta: dict | None = None) -> Backend:
    """`eager` in fp32, or what model.backends.build_backend builds (compile, tensorrt, auto,
    other precisions). A precision the checkpoint's precision check (meta["precision"], python
    -m calibrate.precision) found to lose accuracy on this device type is refused."""
    from calibrate.policy import check_allowed

    note = check_allowed(meta, precision, device)
    if note is not None:
        print(f"note: {note}", file=sys.stderr)
    if name == "eager" and precision == "fp32":
        return eager_backend(model, device)
    try:
        from model.backends import build_backend
    except ImportError:
        raise UserError(f"backend {name!r} in {precision} is not available in this install; "
                        "use --backend eager") from None
    return build_backend(name, model, device, precision, attention=True)


def available_backends() -> list[str]:
    try:
        from model import backends
    except ImportError:
        return list(BACKENDS)
    names = getattr(backends, "BACKENDS", BACKENDS)
    return list(dict.fromkeys([*BACKENDS, *names]))


def check_recipe(trained: FeatureRecipe, live: FeatureRecipe, what: str) -> list[str]:
    """Strict disagreements -> UserError; tolerated ones come back as note lines."""
    bad = trained.mismatches(live)
    if bad:
        raise UserError(f"{what} was trained on features of another recipe ({'; '.join(bad)}); "
                        "run with the extractor weights and preprocessing it was trained on")
    return trained.notes(live)


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


class Detector:
    def __init__(self, backend: Backend, class_names: Sequence[str], lookahead: int = 0,
                 temperature: float = 1.0, device: str = "cpu", pad: str = "repeat-first") -> None:
        if not 0 <= lookahead < SEGMENTS:
            raise UserError(f"--lookahead must be in 0..{SEGMENTS - 1}, got {lookahead}")
        self.backend, self.class_names = backend, list(class_names)
        self.lookahead, self.temperature, self.device = lookahead, temperature, device
        self.window = Window(SEGMENTS, pad)
        self._probs: np.ndarray | None = None  # (10, C) of the last call
        self._attn: np.ndarray | None = None  # (10, 7, 7)
        self._warmup = True
        self._model_ms = 0.0
        self._next = 0  # the next segment to label

    def _call(self) -> None:
        audio, visual = self.window.arrays()  # (10, 128), (10, 7, 7, 512)
        a = torch.from_numpy(audio)[None].to(self.device)  # (1, 10, 128)
        v = torch.from_numpy(visual)[None].to(self.device)  # (1, 10, 7, 7, 512)
        t0 = time.perf_counter()
        out = self.backend(a, v)
        logits, attn = (out[0], out[1]) if isinstance(out, tuple) else (out, None)
        logits = logits[0].float().cpu().numpy()  # (10, C)
        self._model_ms = (time.perf_counter() - t0) * 1000
        if logits.shape[-1] != len(self.class_names):
            raise UserError(f"the model gives {logits.shape[-1]} classes but the checkpoint names "
                            f"{len(self.class_names)}; the checkpoint is inconsistent, re-save it")
        self._probs = softmax(logits, self.temperature)
        self._attn = None if attn is None else attn[0].float().cpu().numpy()  # (10, 7, 7)
        self._warmup = self.window.padded > 0

    def _predict(self, j: int) -> Prediction:
        assert self._probs is not None
        ahead = self.window.count - 1 - j
        pos = SEGMENTS - 1 - ahead
        probs = self._probs[pos]
        c = int(np.argmax(probs))
        return Prediction(segment=j, probs=probs, class_id=c, label=self.class_names[c],
                          confidence=float(probs[c]), lookahead=ahead, warmup=self._warmup,
                          attention=None if self._attn is None else self._attn[pos],
                          model_ms=self._model_ms)

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
