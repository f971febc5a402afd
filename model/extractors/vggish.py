"""VGGish network, its two public weight layouts, and its postprocessing.

    net = VGGish()
    net.load_state_dict(load_vggish_weights("vggish-10086976.pth"))
    emb = net(torch.from_numpy(examples)[:, None])  # (n, 1, 96, 64) -> (n, 128), before ReLU
    feats = postprocess(emb.numpy(), "ave")          # ReLU'd, as the released AVE features

Layouts: the PyTorch port (`features.N.*`, `embeddings.{0,2,4}.*`) and torchaudio's
(`features_network.N.*`, `embedding_network.{0,2,4}.*`); same indices, same tensors.
Conv features are moved to channels-last before flattening, as in the TF model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from model.errors import UserError
from model.extractors.state import matching_state_dict

WIDTHS = (64, 128, 256, 512)
HIDDEN = 4096
EMBEDDING_SIZE = 128
PCA_CLIP = 2.0  # clip PCA'd embeddings to [-2, 2], then quantise to 0..255
POSTPROCESS = ("ave", "raw", "pca")
_LAYOUTS = {"features_network.": "features.", "embedding_network.": "embeddings."}


class VGGish(nn.Module):
    """Input (B, 1, 96, 64) log-mel examples; output (B, 128) embedding before any ReLU."""

    def __init__(self, widths: tuple[int, ...] = WIDTHS, hidden: int = HIDDEN) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for b, width in enumerate(widths):
            for _ in range(1 if b < 2 else 2):  # blocks 1-2: one conv, 3-4: two
                layers += [nn.Conv2d(c_in, width, 3, padding=1), nn.ReLU(inplace=True)]
                c_in = width
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(
            nn.Linear(widths[-1] * 6 * 4, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, EMBEDDING_SIZE),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, 512, 6, 4)
        x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)  # (B, 6 * 4 * 512), channels-last
        return self.embeddings(x)  # (B, 128)

    def init_random(self, seed: int) -> None:
        """Seeded He-normal weights, zero biases."""
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Conv2d | nn.Linear):
                    fan_in = m.weight[0].numel()
                    m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                    m.bias.zero_()


def to_port_layout(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename torchaudio keys to the PyTorch-port layout (a port-layout dict passes unchanged)."""
    out = {}
    for k, v in sd.items():
        for old, new in _LAYOUTS.items():
            if k.startswith(old):
                k = new + k[len(old):]
        out[k] = v
    return out


def load_vggish_weights(path: str | Path, widths: tuple[int, ...] = WIDTHS,
                        hidden: int = HIDDEN) -> dict[str, torch.Tensor]:
    """A VGGish `.pth`/`.pt` in either layout -> our state dict; a bad file -> UserError."""
    path = Path(path)
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(sd, dict):
            raise ValueError("not a state dict")
        sd = to_port_layout(sd)
        return matching_state_dict(sd, VGGish(widths, hidden).state_dict(), "a VGGish layout")
    except (OSError, KeyError, ValueError, RuntimeError) as e:
        raise UserError(f"cannot load VGGish weights from {path}: {e}; "
                        f"re-download with `python -m model.weights fetch`") from None


def load_pca_params(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """PCA file (the port's `.pth` or TF's `.npz`) -> (eigenvectors (128, 128), means (128,))."""
    path = Path(path)
    try:
        if path.suffix == ".npz":
            with np.load(path) as z:
                d = {k: z[k] for k in z.files}
        else:
            d = torch.load(path, map_location="cpu", weights_only=True)
        vecs = np.asarray(d["pca_eigen_vectors"], np.float64)
        means = np.asarray(d["pca_means"], np.float64).reshape(-1)
        if vecs.shape != (EMBEDDING_SIZE, EMBEDDING_SIZE) or means.shape != (EMBEDDING_SIZE,):
            raise ValueError(f"shapes {vecs.shape} and {means.shape}, expected (128, 128), (128,)")
        return vecs, means
    except (OSError, KeyError, ValueError, RuntimeError) as e:
        raise UserError(f"cannot load VGGish PCA parameters from {path}: {e}; "
                        f"re-download with `python -m model.weights fetch`") from None


def postprocess(emb: np.ndarray, mode: str,
                pca: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """(n, 128) embeddings before ReLU -> (n, 128) float32 features.

    "ave": ReLU (the released AVE features); "raw": unchanged; "pca": TF VGGish's
    postprocessor on the raw embedding: PCA, clip to [-2, 2], quantise to integers 0..255
    (truncating, as TF's astype(uint8)), returned as float32.
    """
    emb = np.asarray(emb, np.float32)
    if mode == "ave":
        return np.maximum(emb, 0.0)
    if mode == "raw":
        return emb
    if mode == "pca":
        if pca is None:
            raise ValueError("postprocess 'pca' needs the PCA parameters")
        vecs, means = pca
        projected = (emb.astype(np.float64) - means) @ vecs.T  # (n, 128)
        clipped = np.clip(projected, -PCA_CLIP, PCA_CLIP)
        quantised = ((clipped + PCA_CLIP) * (255.0 / (2 * PCA_CLIP))).astype(np.uint8)
        return quantised.astype(np.float32)
    raise ValueError(f"unknown audio postprocess {mode!r} (use one of {POSTPROCESS})")
