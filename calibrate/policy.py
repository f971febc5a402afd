"""The precision rule the streamer applies when it builds its backend (light: no model code).

    note = check_allowed(ckpt.meta, "bf16", "cpu")   # UserError if measured and not allowed

`python -m calibrate.precision` stores, per device type, which precisions kept the accuracy of
fp32 within MAX_DROP_POINTS on the validation windows: meta["precision"]["cpu" | "cuda"] =
{"allowed": [...], "results": {precision: {"delta_points", "agreement", "allowed", ...}}}.
"""

from __future__ import annotations

from typing import Any

import torch

from model.errors import UserError

MAX_DROP_POINTS = 0.5  # accuracy points a reduced precision may lose against fp32


def check_allowed(meta: dict[str, Any] | None, precision: str, device: str) -> str | None:
    """Refuse (UserError) a precision this checkpoint's precision check measured on this device
    type and found to lose more than MAX_DROP_POINTS; a note when it was never checked."""
    if precision == "fp32":
        return None
    kind = torch.device(device).type
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
