"""The training protocol: what model.train, model.ablations and the benchmarks train with.

    opts = TrainOptions(epochs=30, lr=1e-3, loss="ce", overrides=(("hidden", 64),))
    opts = TrainOptions(online=True, lookahead=0)   # trained for the live edge (model.online)
    cfg = opts.config(num_classes=29)     # the JCAConfig it trains; bad values -> UserError
    online_lookahead(ckpt.meta)           # the lookahead a checkpoint was trained for, or None

Defaults are the reference implementation's (FACTS section 2). Options are checked when made.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from model.config import ABLATIONS, PRESETS, JCAConfig, preset
from model.errors import UserError
from model.limits import check_lookahead

LOSSES = ("msl", "ce", "bce")


@dataclass(frozen=True)
class TrainOptions:
    epochs: int = 300
    lr: float = 1e-4
    batch_size: int = 64
    loss: str = "msl"  # "msl": reference (MultiLabelSoftMargin on softmax), "ce", "bce"
    val_every: int = 5  # validate every N epochs and after the last one
    plateau_factor: float = 0.5  # ReduceLROnPlateau on the epoch's training loss
    plateau_patience: int = 10
    weight_decay: float = 0.0
    seed: int = 0
    preset: str = "paper"
    ablation: str | None = None
    overrides: tuple[tuple[str, Any], ...] = ()  # JCAConfig field overrides, e.g. (("hidden", 64),)
    # the online protocol (model.online); off: the paper's whole-clip training
    online: bool = False
    lookahead: int = 0  # the live lookahead it is trained for
    online_ends: int = 3  # live windows per clip and epoch, besides the whole clip
    edge_weight: float = 4.0  # extra loss weight of the positions a live run labels from

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise UserError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        for name in ("epochs", "batch_size", "val_every", "plateau_patience"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1, got "
                                f"{getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UserError(f"--lr must be a positive number, got {self.lr}")
        if self.preset not in PRESETS:
            raise UserError(f"unknown preset {self.preset!r}; choose one of {sorted(PRESETS)}")
        if self.ablation is not None and self.ablation not in ABLATIONS:
            raise UserError(f"unknown ablation {self.ablation!r}; choose one of "
                            f"{sorted(ABLATIONS)}")
        check_lookahead(self.lookahead)
        if not self.online and self.lookahead:
            raise UserError("--lookahead sets what --online trains for: add --online, or drop "
                            "--lookahead")
        if self.online_ends < 0:
            raise UserError(f"--online-ends must be >= 0, got {self.online_ends}")
        if not (self.edge_weight >= 0 and math.isfinite(self.edge_weight)):
            raise UserError(f"--edge-weight must be a number >= 0, got {self.edge_weight}")

    def config(self, num_classes: int) -> JCAConfig:
        try:
            return preset(self.preset, self.ablation, num_classes=num_classes,
                          **dict(self.overrides))
        except (TypeError, ValueError) as e:
            raise UserError(f"bad model configuration: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["overrides"] = dict(self.overrides)
        return d


def online_lookahead(meta: dict[str, Any]) -> int | None:
    """The lookahead a checkpoint was trained for with the online protocol; None for the paper's
    protocol (and for checkpoints older than the online protocol)."""
    protocol = (meta.get("train") or {}).get("protocol") or {}
    return int(protocol.get("lookahead", 0)) if protocol.get("online") else None
