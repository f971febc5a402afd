"""The online training protocol (`python -m model.train --online`): JCA trained on the windows a
live run labels from, not only on whole clips.

    batch = live_windows(audio, visual, labels, lookahead=0, ends=3, edge_weight=4.0, rng=rng)
    loss = weighted_loss("msl", model(batch.audio, batch.visual), batch.labels, batch.weights)

A live stream over a clip calls the model once per closed segment e, on the 10-segment window
that ends at e (left-padded during the first 9 s, model.data.window_for_segment, the live
detector's rule), and with lookahead k labels segment e - k from it (window position 9 - k);
at the end of the stream the last window labels the rest. The paper trains on whole clips only
(the window ending at 9), so nothing it sees has its newest second labelled from a padded,
half-empty window. Here every clip contributes, each epoch, its whole-clip window plus `ends`
windows ending at seconds drawn from k..8 (seeded). Every real segment of a window is a target
(weight 1; padded positions 0); the positions a live run at lookahead k takes its labels from
get `edge_weight` on top, so the loss leans toward the segment that gets labelled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from model.data import window_for_segment
from model.layout import SEGMENTS

LIVE_PAD = "repeat-first"  # the live detector's warm-up padding (streamer.window)


@dataclass(frozen=True)
class WindowBatch:
    audio: np.ndarray  # (W, 10, 128)
    visual: np.ndarray  # (W, 10, 7, 7, 512)
    labels: np.ndarray  # (W, 10) class ids
    weights: np.ndarray  # (W, 10) float32 loss weight of each position


def labelled_positions(end: int, lookahead: int) -> range:
    """The positions of the window ending at `end` (of a 10-segment clip) that a live run at
    `lookahead` takes labels from: 9 - k before the end of the clip, 9 - k .. 9 at its end."""
    first = SEGMENTS - 1 - lookahead
    return range(first, SEGMENTS) if end == SEGMENTS - 1 else range(first, first + 1)


def live_windows(audio: np.ndarray, visual: np.ndarray, labels: np.ndarray, lookahead: int,
                 ends: int, edge_weight: float, rng: np.random.Generator) -> WindowBatch:
    """Each clip's whole window plus `ends` live windows ending at seconds drawn from
    lookahead..8, with their labels and loss weights (module docstring)."""
    last = SEGMENTS - 1
    choices = np.arange(lookahead, last)  # window ends that label a segment before the clip ends
    n = min(ends, len(choices))
    wa, wv, wy, ww = [], [], [], []
    for a, v, y in zip(audio, visual, labels, strict=True):
        for e in (last, *rng.choice(choices, size=n, replace=False)):
            wa.append(window_for_segment(a, int(e), 0, LIVE_PAD)[0])
            wv.append(window_for_segment(v, int(e), 0, LIVE_PAD)[0])
            wy.append(window_for_segment(y, int(e), 0, LIVE_PAD)[0])
            w = np.zeros(SEGMENTS, np.float32)
            w[last - int(e):] = 1.0  # the real segments; the padding before them is no target
            w[list(labelled_positions(int(e), lookahead))] += edge_weight
            ww.append(w)
    return WindowBatch(np.stack(wa), np.stack(wv), np.stack(wy), np.stack(ww))


def segment_losses(name: str, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-segment loss (B, T) of the training losses (model.protocol.LOSSES): logits (B, T, C),
    labels (B, T); their mean is the paper protocol's loss (model.train.compute_loss). msl: the
    reference's MultiLabelSoftMarginLoss applied to the softmax outputs."""
    c = logits.shape[-1]
    if name == "ce":
        return F.cross_entropy(logits.reshape(-1, c), labels.reshape(-1),
                               reduction="none").reshape(labels.shape)
    onehot = F.one_hot(labels, c).to(logits.dtype)  # (B, T, C)
    if name == "bce":
        return F.binary_cross_entropy_with_logits(logits, onehot, reduction="none").mean(-1)
    return F.multilabel_soft_margin_loss(torch.softmax(logits, -1).reshape(-1, c),
                                         onehot.reshape(-1, c),
                                         reduction="none").reshape(labels.shape)


def weighted_loss(name: str, logits: torch.Tensor, labels: torch.Tensor,
                  weights: torch.Tensor) -> torch.Tensor:
    """sum(weights * segment loss) / sum(weights): logits (W, T, C), labels and weights (W, T)."""
    return (segment_losses(name, logits, labels) * weights).sum() / weights.sum()
