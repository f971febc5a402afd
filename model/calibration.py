"""What the calibration tools store in a checkpoint's meta, read back where a model runs.

    probs = softmax(logits, calibrated_temperature(ckpt.meta))   # meta["calibration"]
    note = check_precision_allowed(ckpt.meta, "bf16", "cpu")      # meta["precision"]

Probabilities: softmax at the calibrated temperature (`python -m calibrate.confidence`), one
place for it, so evaluation, calibration and the live detector report the same numbers.
Precisions: the rule `python -m calibrate.precision` measures against (MAX_DROP_POINTS) and the
runtime enforces when it builds its backend.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from model.errors import UserError

MAX_DROP_POINTS = 0.5  # accuracy points a reduced precision may lose against fp32


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


def check_precision_allowed(meta: dict[str, Any] | None, precision: str,
                            device: str) -> str | None:
    """Refuse (UserError) a precision the checkpoint's precision check measured on this device
    type and found to lose more than MAX_DROP_POINTS; a note when it was never checked.

    `python -m calibrate.precision` stores, per device type, which precisions kept the accuracy
    of fp32 within MAX_DROP_POINTS on the validation windows: meta["precision"]["cpu" | "cuda"]
    = {"allowed": [...], "results": {precision: {"delta_points", "agreement", "allowed", ...}}}.
    """
    if precision == "fp32":
        return None
    kind = device.split(":")[0]
    entry = ((meta or {}).get("precision") or {}).get(kind)
    how = "python -m calibrate.precision --data DIR --checkpoint CKPT" + (
        " --device cuda" if kind == "cuda" else "")
    if not entry:
        return f"precision {precision} on {kind} was never compared with fp32 for this model " \
               f"({how})"
    if precision in entry.get("allowed", ()):
        return None
    result = (entry.get("results") or {}).get(precision)
    if not result or "skipped" in result:
        return f"precision {precision} on {kind} was not measured for this model ({how})"
    allowed = ", ".join(entry.get("allowed", ["fp32"]))
    raise UserError(f"precision {precision} is not allowed for this model on {kind}: it changed "
                    f"accuracy by {result['delta_points']:+.2f} points against fp32 (limit "
                    f"-{MAX_DROP_POINTS}); use one of: {allowed}")
