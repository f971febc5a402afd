"""Checking a loaded weights file against the network it is for."""

from __future__ import annotations

import torch


def matching_state_dict(sd: dict[str, torch.Tensor], expected: dict[str, torch.Tensor],
                        layout: str) -> dict[str, torch.Tensor]:
    """`sd` as float32 when its keys and shapes are exactly those of `expected` (a fresh
    network's state dict); else KeyError / ValueError naming the first differences."""
    if set(sd) != set(expected):
        missing = sorted(set(expected) - set(sd))[:3]
        extra = sorted(set(sd) - set(expected))[:3]
        raise KeyError(f"keys do not match {layout} (missing {missing}, unexpected {extra})")
    for k, v in expected.items():
        if sd[k].shape != v.shape:
            raise ValueError(f"{k}: shape {tuple(sd[k].shape)}, expected {tuple(v.shape)}")
    return {k: v.float() for k, v in sd.items()}
