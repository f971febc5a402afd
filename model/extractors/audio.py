"""Audio features: one VGGish embedding per 1-second segment of 16 kHz mono audio.

    ext = AudioExtractor(net, postprocess="ave")
    ext(samples)            # (n,) float32 of one segment -> (128,)
    ext.segments(batch)     # list of segments or (N, n) -> (N, 128)

Each segment's example is its first 96 log-mel frames = its first 15,600 samples; a shorter
segment is zero-padded at the end (see `vggish_frontend`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from model.extractors import vggish
from model.extractors.runtime import (
    Runner,
    RunOptions,
    eager_path,
    eager_runner,
    in_batches,
    prepare,
)
from model.extractors.vggish_frontend import SAMPLE_RATE, segment_example


class AudioExtractor:
    """VGGish embeddings of 16 kHz mono segments, postprocessed as the recipe says."""

    sample_rate = SAMPLE_RATE

    def __init__(self, net: vggish.VGGish, postprocess: str = "ave",
                 pca: tuple[np.ndarray, np.ndarray] | None = None,
                 options: RunOptions | None = None, identity: str = "unknown",
                 runner: Runner | None = None, path: str | None = None) -> None:
        """`runner`: how the net runs (`model.extractors.paths`), named `path`; None runs it
        eagerly as `options` say."""
        if postprocess not in vggish.POSTPROCESS:
            raise ValueError(f"unknown audio postprocess {postprocess!r}")
        if postprocess == "pca" and pca is None:
            raise ValueError("audio postprocess 'pca' needs the PCA parameters")
        self.options = options or RunOptions(channels_last=False)
        self.net = prepare(net, self.options)
        self.run = runner or eager_runner(self.net, self.options)
        self.path = path or eager_path(self.options)
        self.postprocess = postprocess
        self.pca = pca
        self.identity = identity

    def examples(self, segments: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Segments -> (N, 1, 96, 64) float32 log-mel examples."""
        return np.stack([segment_example(s) for s in segments])[:, None] if len(segments) else \
            np.zeros((0, 1, 96, 64), np.float32)

    def segments(self, segments: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Many segments (each (n,) float32 in [-1, 1] at 16 kHz) -> (N, 128) float32."""
        x = self.examples(segments)  # (N, 1, 96, 64)
        if x.shape[0] == 0:
            return np.zeros((0, vggish.EMBEDDING_SIZE), np.float32)
        emb = in_batches(self.run, x, self.options.batch_size)  # (N, 128)
        return vggish.postprocess(emb, self.postprocess, self.pca)

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        """One segment's samples (n,) -> (128,) float32."""
        return self.segments([np.asarray(samples, np.float32).reshape(-1)])[0]
