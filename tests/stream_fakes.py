"""Small deterministic stand-ins for the extractors, shared by the streaming tests.

They implement the real interfaces (frame_features: (n, H, W, 3) uint8 -> (n, 7, 7, 512);
audio: (16000,) float32 -> (128,)) with cheap functions of the content, so tests are fast and
any change in which frames or samples reach them changes the features.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from model.config import preset
from model.extractors import vgg19
from model.network import JCANet
from model.recipe import FeatureRecipe

CLASSES = ("beep", "whistle", "hum", "background")
FIRST_RECORD_S = 300  # start-up (torch, extractors) on a loaded 2-core machine, then 1 segment


class TinyVisualNet(torch.nn.Module):
    """Stands in for VGG19 where only the extraction logic is under test: (B, 3, 224, 224) ->
    (B, 512, 7, 7) like pool5, at a tiny fraction of the cost."""

    widths = (512,)

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.pool = torch.nn.AvgPool2d(32)
        self.mix = torch.nn.Conv2d(3, 512, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.mix(self.pool(x)))  # (B, 512, 7, 7)


class FakeVisual:
    """Frames resized to 224 like VGG19's input, 7x7 cell means projected to 512 channels."""

    def __init__(self, seed: int = 0) -> None:
        self.proj = np.random.default_rng(seed).standard_normal((3, 512)).astype(np.float32)
        self.calls = 0  # frames computed

    def frame_features(self, rgb: np.ndarray) -> np.ndarray:
        x = vgg19.resize(np.asarray(rgb)).astype(np.float32) / 255.0  # (n, 224, 224, 3)
        self.calls += len(x)
        cells = x.reshape(len(x), 7, 32, 7, 32, 3).mean(axis=(2, 4))  # (n, 7, 7, 3)
        return np.maximum(cells @ self.proj, 0).astype(np.float32)  # (n, 7, 7, 512)


class FakeAudio:
    """Log band energies of the segment's spectrum (short segments zero-padded)."""

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        x = np.asarray(samples, np.float64).reshape(-1)
        spec = np.abs(np.fft.rfft(x, 16000))[:7936]  # 1 Hz bins up to 7.9 kHz
        bands = spec.reshape(128, 62).mean(axis=1)
        return np.log1p(bands).astype(np.float32)  # (128,)

    def segments(self, segments) -> np.ndarray:  # the offline (model.extract) interface
        return np.stack([self(s) for s in segments]) if len(segments) else np.zeros((0, 128))


def fake_extractors(k: int) -> SimpleNamespace:
    """Stands in for model.extractors.Extractors (visual, audio, recipe) in model.extract."""
    recipe = FeatureRecipe.ave(visual_weights="fake", audio_weights="fake", frames_per_segment=k)
    return SimpleNamespace(visual=FakeVisual(), audio=FakeAudio(), recipe=recipe)


SMALL = dict(hidden=16, embed=32, attn_hidden=16, attn_dim=16, joint_hidden=16, joint_embed=32,
             mlp_hidden=16, layers=2)


def tiny_model(seed: int = 0, num_classes: int = len(CLASSES)) -> JCANet:
    """The real JCANet, narrow enough for fast tests."""
    torch.manual_seed(seed)
    return JCANet(preset("paper", num_classes=num_classes, **SMALL)).eval()


class Records:
    """A sink that keeps every record."""

    def __init__(self) -> None:
        self.records: list[dict] = []

    def on_segment(self, record: dict) -> None:
        self.records.append(record)

    def close(self) -> None:
        pass


def fake_runtime(k: int = 2):
    """A live runtime on the tiny model and the fake extractors (untrained)."""
    from model.backends import live_backend
    from model.inference import InferenceModel
    from model.provenance import Provenance
    from streamer.runtime import Runtime

    model = InferenceModel(tiny_model(), CLASSES, None, 1.0, 0.0, Provenance.UNTRAINED, "tiny")
    return Runtime(model, FakeVisual().frame_features, FakeAudio(),
                   live_backend("eager", model.net), "cpu", k, Provenance.UNTRAINED)


def wait_for_first_record(proc: subprocess.Popen, log: Path) -> None:
    """Polls the log (the process's own exit ends the wait too) until one whole line is in."""
    for _ in range(FIRST_RECORD_S * 5):
        if log.is_file() and log.read_text().endswith("\n"):
            return
        try:
            proc.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            continue
        raise AssertionError(f"main.py ended (status {proc.returncode}) before its first record")
    proc.kill()
    raise AssertionError("no record in the log in time")
