"""The model a run labels with: a trained checkpoint (its classes, calibration and feature
recipe) or, to try the product without one, the paper's network with seeded random weights.

    m = load_model("runs/jca.pt")                      # m.net (eval, CPU), m.class_names, ...
    m = load_model(None, random_weights=True, seed=0)  # untrained, the 28 AVE classes

The live runtime (streamer.runtime) and the engine build step (python -m model.backends build)
both load through here, so an engine built for a model is found again when that model runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from model.calibration import calibrated_temperature
from model.classes import AVE_CLASSES
from model.errors import UserError
from model.provenance import Provenance
from model.recipe import FeatureRecipe


@dataclass(frozen=True)
class InferenceModel:
    net: nn.Module  # JCANet in eval mode, on the CPU
    class_names: tuple[str, ...]  # background last
    recipe: FeatureRecipe | None  # the features it was trained on (None: untrained)
    temperature: float  # calibrated softmax temperature (1: never calibrated)
    threshold: float  # calibrated event threshold (0: none)
    provenance: Provenance  # of the model alone; random live extractors add RANDOM FEATURES
    name: str  # for status lines: the checkpoint's file name, or "random weights"
    meta: dict = field(default_factory=dict)  # the checkpoint's meta


def load_model(checkpoint: str | Path | None, random_weights: bool = False,
               seed: int = 0) -> InferenceModel:
    """The checkpoint's model, or (random_weights) the paper preset seeded with `seed`; a
    missing or conflicting choice is a UserError naming both ways out."""
    if checkpoint and random_weights:
        raise UserError("--checkpoint and --random-weights exclude each other: pick one")
    if checkpoint:
        return _from_checkpoint(Path(checkpoint))
    if not random_weights:
        raise UserError("no checkpoint: pass --checkpoint FILE (train one with python -m "
                        "model.train), or --random-weights to run with untrained weights")
    from model.config import preset
    from model.network import JCANet

    torch.manual_seed(seed)
    net = JCANet(preset("paper", num_classes=len(AVE_CLASSES))).eval()
    return InferenceModel(net, AVE_CLASSES, None, 1.0, 0.0, Provenance.UNTRAINED,
                          "random weights")


def _from_checkpoint(path: Path) -> InferenceModel:
    from model.checkpoint import load_checkpoint

    if not path.is_file():
        raise UserError(f"no such checkpoint: {path}; train one with python -m model.train, "
                        "or pass --random-weights to run untrained")
    net, ckpt = load_checkpoint(path)
    calib = ckpt.meta.get("calibration") or {}
    random_features = bool(ckpt.meta.get("random_features")) or (
        ckpt.recipe is not None and ckpt.recipe.random_weights)
    return InferenceModel(net, tuple(ckpt.class_names), ckpt.recipe,
                          calibrated_temperature(ckpt.meta),
                          float(calib.get("event_threshold", 0.0)),
                          Provenance.of(untrained=False, random_features=random_features),
                          path.name, ckpt.meta)
