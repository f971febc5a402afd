"""Visual features: VGG19 pool5 per frame, averaged over the sampled frames of a segment.

    ext = VisualExtractor(net, preprocess="ave")
    f = ext.frame_features(rgb)                   # (n, H, W, 3) uint8 -> (n, 7, 7, 512)
    seg = ext.segment_feature(frames, times, k=16)  # -> (7, 7, 512), mean of select_frames
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from model.extractors import vgg19
from model.extractors.runtime import (
    Runner,
    RunOptions,
    eager_path,
    eager_runner,
    in_batches,
    prepare,
)
from model.extractors.sampling import select_frames


class VisualExtractor:
    """VGG19 pool5 features of RGB frames, channels-last like the AVE files."""

    def __init__(self, net: vgg19.VGG19, preprocess: str = "ave",
                 options: RunOptions | None = None, identity: str = "unknown",
                 runner: Runner | None = None, path: str | None = None) -> None:
        """`runner`: how the net runs (`model.extractors.paths`), named `path`; None runs it
        eagerly as `options` say."""
        vgg19.normalize(np.zeros((1, 1, 1, 3), np.uint8), preprocess)  # validates the name
        self.options = options or RunOptions()
        self.net = prepare(net, self.options)
        self.run = runner or eager_runner(self.net, self.options)
        self.path = path or eager_path(self.options)
        self.preprocess = preprocess
        self.identity = identity

    def frame_features(self, rgb: np.ndarray) -> np.ndarray:
        """(n, H, W, 3) uint8 RGB -> (n, 7, 7, 512) float32 pool5 (any H, W; resized to 224)."""
        rgb = np.asarray(rgb)
        if rgb.ndim == 3:
            rgb = rgb[None]
        if rgb.shape[0] == 0:
            return np.zeros((0, 7, 7, self.net.widths[-1]), np.float32)
        x = vgg19.preprocess(rgb, self.preprocess)  # (n, 3, 224, 224)
        out = in_batches(self.run, x, self.options.batch_size)  # (n, 512, 7, 7)
        return np.ascontiguousarray(out.transpose(0, 2, 3, 1))  # (n, 7, 7, 512)

    def segment_feature(self, frames: np.ndarray, times: Sequence[float], k: int) -> np.ndarray:
        """One segment's frames (m, H, W, 3) with times in [0, 1) -> (7, 7, 512) mean feature.

        The k selections of `select_frames` are averaged; a frame selected several times
        counts that many times but goes through the network once. Raises ValueError if the
        segment has no frames.
        """
        idx = select_frames(times, k)
        if not idx:
            raise ValueError("segment has no frames")
        unique = sorted(set(idx))
        feats = self.frame_features(np.asarray(frames)[unique])  # (u, 7, 7, 512)
        weights = np.array([idx.count(i) for i in unique], np.float64) / len(idx)
        return np.tensordot(weights, feats.astype(np.float64), axes=1).astype(np.float32)
