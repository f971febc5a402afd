"""Turning logits into the probabilities a user sees: softmax at the checkpoint's calibrated
temperature (fitted by `python -m calibrate.confidence`, stored in meta["calibration"]).

One place for it, so evaluation, calibration and the live detector report the same numbers.
"""

from __future__ import annotations

import numpy as np

from model.errors import UserError


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """(..., C) logits -> probabilities (float64, each row sums to 1) of softmax(logits / T)."""
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def calibrated_temperature(meta: dict | None) -> float:
    """The temperature stored in a checkpoint's meta, 1.0 when it was never calibrated."""
    t = ((meta or {}).get("calibration") or {}).get("temperature", 1.0)
    if not isinstance(t, int | float) or not t > 0:
        raise UserError(f"checkpoint calibration temperature must be a positive number, got {t!r};"
                        " re-run python -m calibrate.confidence")
    return float(t)
