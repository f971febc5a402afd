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

import argparse
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from model.checkpoint import Checkpoint, load_checkpoint
from model.cli_args import open_from_args
from model.data import SEGMENTS, AVEData, window_for_segment
from model.errors import UserError
from model.evaluate import check_compatible

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


def check_writable(*paths: Path) -> None:
    """Fail before any work when an output's folder is missing."""
    for p in paths:
        if not p.parent.is_dir():
            raise UserError(f"cannot write {p}: directory {p.parent} does not exist")


@contextlib.contextmanager
def checkpoint_and_split(args: argparse.Namespace, verb: str
                         ) -> Iterator[tuple[torch.nn.Module, Checkpoint, AVEData]]:
    """The --checkpoint model and the dataset of the data flags, checked to belong together
    and to hold clips in --split (`verb` says what the split is for in that error)."""
    model, ckpt = load_checkpoint(args.checkpoint)
    with open_from_args(args) as data:
        check_compatible(ckpt, data)
        if len(data.split(args.split)) == 0:
            raise UserError(f"the {args.split} split is empty; {verb} on a split with clips")
        yield model, ckpt, data
