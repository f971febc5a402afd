"""One-file checkpoints: config, class names, feature recipe, meta and weights.

    >>> save_checkpoint("runs/jca.pt", net, class_names, FeatureRecipe.ave(), meta={"train": {}})
    >>> net, ckpt = load_checkpoint("runs/jca.pt")    # model rebuilt from the file alone, eval()
    >>> ckpt.class_names[-1]                          # background is always the last class
    'background'

The file is `torch.save` of plain types only (str, int, float, bool, None, list, dict, tensors),
so it loads with `weights_only=True` (no pickled code runs). It is written to a temporary file
beside the target and moved into place with os.replace, so a crash never leaves half a file.

    {"format": "jca-live-checkpoint", "version": 1, "config": {...}, "class_names": [...],
     "recipe": {...} | None, "meta": {...}, "state_dict": {name: tensor}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from model.config import JCAConfig
from model.errors import UserError
from model.files import atomic_path
from model.network import JCANet
from model.recipe import FeatureRecipe

FORMAT = "jca-live-checkpoint"
VERSION = 1
KEYS = ("format", "version", "config", "class_names", "recipe", "meta", "state_dict")


class CheckpointError(UserError):
    """A checkpoint file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Checkpoint:
    path: str
    config: JCAConfig
    class_names: tuple[str, ...]
    recipe: FeatureRecipe | None
    meta: dict[str, Any] = field(default_factory=dict)
    version: int = VERSION


def save_checkpoint(path: str | Path, model: JCANet, class_names: list[str] | tuple[str, ...],
                    recipe: FeatureRecipe | None, meta: dict[str, Any] | None = None) -> None:
    """Write model + everything needed to rebuild and trust it, atomically."""
    cfg: JCAConfig = model.cfg
    names = [str(n) for n in class_names]
    if len(names) != cfg.num_classes:
        raise ValueError(f"{len(names)} class names for a model of {cfg.num_classes} classes")
    meta = dict(meta or {})
    try:
        meta = json.loads(json.dumps(meta, allow_nan=False))  # JSON types only, copied
    except (TypeError, ValueError) as e:
        raise ValueError(f"checkpoint meta must hold JSON types only: {e}") from e
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": cfg.to_dict(),
        "class_names": names,
        "recipe": None if recipe is None else recipe.to_dict(),
        "meta": meta,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }
    atomic_torch_save(payload, Path(path))


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file beside `path`, moved over it: a reader (or a crash, or
    Ctrl+C) sees the old file or the new one, never half of one."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def read_checkpoint(path: str | Path) -> tuple[Checkpoint, dict[str, torch.Tensor]]:
    """Read and validate a checkpoint file without building the model."""
    path = Path(path)

    def fail(problem: str, fix: str = "point to a checkpoint written by python -m model.train"
             ) -> CheckpointError:
        return CheckpointError(f"checkpoint {path}: {problem}; {fix}")

    if not path.is_file():
        raise fail("no such file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch raises many kinds for foreign or cut-off bytes
        raise fail("not a readable checkpoint (truncated, or not written by torch.save)"
                   ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise fail(f"not a {FORMAT} file")
    if data.get("version") != VERSION:
        raise fail(f"format version {data.get('version')!r}, this program reads version "
                   f"{VERSION}", "re-export it with this version of jca-live")
    missing = [k for k in KEYS if k not in data]
    if missing:
        raise fail(f"missing {', '.join(missing)}")
    try:
        cfg = JCAConfig.from_dict(data["config"])
    except (TypeError, ValueError) as e:
        raise fail(f"bad config ({e})") from None
    names = data["class_names"]
    if (not isinstance(names, list) or not all(isinstance(n, str) for n in names)
            or len(names) != cfg.num_classes):
        raise fail(f"class_names must be {cfg.num_classes} strings")
    try:
        recipe = None if data["recipe"] is None else FeatureRecipe.from_dict(data["recipe"])
    except (TypeError, ValueError) as e:
        raise fail(f"bad feature recipe ({e})") from None
    meta = data["meta"]
    if not isinstance(meta, dict):
        raise fail("meta is not a dict")
    state = data["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise fail("state_dict is not a dict of tensors")
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise fail(f"weights {', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''} hold NaN or "
                   "infinite values (training diverged)",
                   "use an earlier checkpoint or retrain with a lower learning rate")
    ckpt = Checkpoint(path=str(path), config=cfg, class_names=tuple(names), recipe=recipe,
                      meta=meta, version=data["version"])
    return ckpt, state


def load_checkpoint(path: str | Path) -> tuple[JCANet, Checkpoint]:
    """Rebuild the model from the file alone; returns it in eval mode, on the CPU."""
    ckpt, state = read_checkpoint(path)
    model = JCANet(ckpt.config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = [f"{label} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                 for label, keys in (("missing weights", missing), ("unexpected weights",
                                     unexpected), ("wrong shapes for", wrong)) if keys]
        raise CheckpointError(f"checkpoint {path}: weights do not match its config "
                              f"({'; '.join(parts)}); re-save it with save_checkpoint")
    dtype = next(iter(state.values())).dtype if state else torch.float32
    model.to(dtype).load_state_dict(state)
    return model.eval(), ckpt
