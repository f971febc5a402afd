"""Small deterministic stand-ins for the extractors, shared by the streaming tests.

They implement the real interfaces (frame_features: (n, H, W, 3) uint8 -> (n, 7, 7, 512);
audio: (16000,) float32 -> (128,)) with cheap functions of the content, so tests are fast and
any change in which frames or samples reach them changes the features.
"""

from __future__ import annotations

import numpy as np
import torch

from model.config import preset
from model.network import JCANet

CLASSES = ("beep", "whistle", "hum", "background")


class FakeVisual:
    def __init__(self, seed: int = 0) -> None:
        self.proj = np.random.default_rng(seed).standard_normal((3, 512)).astype(np.float32)
        self.calls = 0  # frames computed

    def frame_features(self, rgb: np.ndarray) -> np.ndarray:
        rgb = np.asarray(rgb)
        n, h, w, _ = rgb.shape
        self.calls += n
        ys = np.linspace(0, h, 8).astype(int)
        xs = np.linspace(0, w, 8).astype(int)
        cells = np.empty((n, 7, 7, 3), np.float32)
        for i in range(7):
            for j in range(7):
                block = rgb[:, ys[i]:max(ys[i + 1], ys[i] + 1), xs[j]:max(xs[j + 1], xs[j] + 1)]
                cells[:, i, j] = block.reshape(n, -1, 3).mean(axis=1) / 255.0
        return np.maximum(cells @ self.proj, 0).astype(np.float32)  # (n, 7, 7, 512)


class FakeAudio:
    def __call__(self, samples: np.ndarray) -> np.ndarray:
        x = np.asarray(samples, np.float64).reshape(-1)
        spec = np.abs(np.fft.rfft(x, 16000))[:7936]  # 1 Hz bins up to 7.9 kHz
        bands = spec.reshape(128, 62).mean(axis=1)
        return np.log1p(bands).astype(np.float32)  # (128,)


SMALL = dict(hidden=16, embed=32, attn_hidden=16, attn_dim=16, joint_hidden=16, joint_embed=32,
             mlp_hidden=16, layers=2)


def tiny_model(seed: int = 0, num_classes: int = len(CLASSES)) -> JCANet:
    """The real JCANet, narrow enough for fast tests."""
    torch.manual_seed(seed)
    return JCANet(preset("paper", num_classes=num_classes, **SMALL)).eval()
