"""Raw logits of a split, from the windows a model is judged on (shared by confidence and
precision calibration).

    logits, labels = split_logits(model_forward(net), data, "val")            # whole clips
    logits, labels = split_logits(model_forward(net), data, "val", lookahead=0)  # live windows

lookahead=None: one call per clip (the offline evaluation, model.evaluate's accuracy).
lookahead=k: every segment labelled from the window a live stream starting at the clip's first
segment uses with lookahead k, warm-up padded (model.data.window_for_segment), as the detector
does. Returns logits (n, 10, C) float32 and labels (n, 10) int64 in the split's file order.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from model.data import SEGMENTS, AVEData, window_for_segment

Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (B,10,128), (B,10,7,7,512)


def model_forward(model: torch.nn.Module) -> Forward:
    model.eval()

    @torch.inference_mode()
    def run(audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        return model(audio, visual)

    return run


def split_logits(forward: Forward, data: AVEData, split: str, lookahead: int | None = None,
                 pad: str = "repeat-first", batch_size: int = 64
                 ) -> tuple[np.ndarray, np.ndarray]:
    logits, labels = [], []
    clips = batch_size if lookahead is None else max(1, batch_size // SEGMENTS)
    for audio, visual, y in data.batches(split, clips):
        if lookahead is None:
            out = forward(torch.from_numpy(audio), torch.from_numpy(visual))  # (B, 10, C)
            logits.append(out.float().cpu().numpy())
        else:
            logits.append(_live_logits(forward, audio, visual, lookahead, pad))
        labels.append(y)
    return np.concatenate(logits).astype(np.float32), np.concatenate(labels)


def _live_logits(forward: Forward, audio: np.ndarray, visual: np.ndarray, k: int,
                 pad: str) -> np.ndarray:
    """(B, 10, C): segment t of each clip from its own lookahead-k window."""
    wa, wv, pos = [], [], []
    for a, v in zip(audio, visual, strict=True):
        for t in range(SEGMENTS):
            wa_t, p = window_for_segment(a, t, k, pad)  # (10, 128), position of t
            wv.append(window_for_segment(v, t, k, pad)[0])  # (10, 7, 7, 512)
            wa.append(wa_t)
            pos.append(p)
    out = forward(torch.from_numpy(np.stack(wa)), torch.from_numpy(np.stack(wv)))  # (B*10, 10, C)
    out = out.float().cpu().numpy()
    picked = out[np.arange(len(pos)), np.array(pos)]  # (B * 10, C)
    return picked.reshape(len(audio), SEGMENTS, -1)
