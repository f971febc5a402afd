"""VGG19 up to pool5 in plain torch, its two public weight layouts, and its preprocessing.

    net = VGG19()
    net.load_state_dict(load_vgg19_weights("vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"))
    x = torch.from_numpy(preprocess(rgb_uint8, "ave"))  # (n, 3, 224, 224)
    pool5 = net(x)  # (n, 512, 7, 7)

Layouts: torchvision (`.pth`, keys `features.N.weight/bias`, kernels (out, in, 3, 3), input RGB)
and Keras (`.h5`, groups `blockB_convI`, kernels (3, 3, in, out), input BGR). Same-named layers
line up one to one; `torchvision_to_keras` / `keras_to_torchvision` convert between them.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import h5py
import numpy as np
import torch
import torch.nn as nn

from model.errors import UserError
from model.extractors.state import matching_state_dict

WIDTHS = (64, 128, 256, 512, 512)  # channels per block
CONVS_PER_BLOCK = (2, 2, 4, 4, 4)
IMAGE_SIZE = 224
CAFFE_BGR_MEAN = np.array([103.939, 116.779, 123.68], np.float32)  # Keras "caffe" mode
IMAGENET_RGB_MEAN = np.array([0.485, 0.456, 0.406], np.float32)  # torchvision
IMAGENET_RGB_STD = np.array([0.229, 0.224, 0.225], np.float32)


def conv_layout(widths: tuple[int, ...] = WIDTHS) -> list[tuple[int, str, int, int]]:
    """(torchvision index, Keras name, in, out) of every conv, in order."""
    out, index, c_in = [], 0, 3
    for b, (width, n) in enumerate(zip(widths, CONVS_PER_BLOCK, strict=True)):
        for i in range(n):
            out.append((index, f"block{b + 1}_conv{i + 1}", c_in, width))
            index, c_in = index + 2, width  # conv + ReLU
        index += 1  # max-pool
    return out


class VGG19(nn.Module):
    """VGG19 convolutional trunk; output = pool5 (`features[36]` in the torchvision layout)."""

    def __init__(self, widths: tuple[int, ...] = WIDTHS) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for width, n in zip(widths, CONVS_PER_BLOCK, strict=True):
            for _ in range(n):
                layers += [nn.Conv2d(c_in, width, 3, padding=1), nn.ReLU(inplace=True)]
                c_in = width
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.widths = tuple(widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, 3, H, W) -> (B, 512, H/32, W/32)

    def init_random(self, seed: int) -> None:
        """Seeded He-normal weights, zero biases: untrained but with well-scaled activations."""
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for m in self.features:
                if isinstance(m, nn.Conv2d):
                    std = (2.0 / (m.in_channels * 9)) ** 0.5
                    m.weight.copy_(torch.randn(m.weight.shape, generator=g) * std)
                    m.bias.zero_()


# ---- preprocessing -------------------------------------------------------------------------

RESIZE = "cv2 bilinear"  # `resize`'s interpolation, recorded in the feature recipe


def resize(rgb: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """(n, H, W, 3) uint8 -> (n, size, size, 3) uint8; whole frame, no crop, bilinear."""
    if rgb.ndim != 4 or rgb.shape[-1] != 3:
        raise ValueError(f"expected RGB frames (n, H, W, 3), got shape {rgb.shape}")
    if rgb.shape[1:3] == (size, size):
        return np.ascontiguousarray(rgb)
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_LINEAR) for f in rgb])


def normalize(rgb224: np.ndarray, recipe: str) -> np.ndarray:
    """(n, S, S, 3) uint8 RGB -> (n, 3, S, S) float32 network input.

    "ave": Keras caffe mode (RGB -> BGR, subtract the BGR ImageNet mean, no scaling).
    "torchvision": RGB / 255, then (x - mean) / std.
    """
    x = rgb224.astype(np.float32)  # (n, S, S, 3)
    if recipe == "ave":
        x = x[..., ::-1] - CAFFE_BGR_MEAN
    elif recipe == "torchvision":
        x = (x / 255.0 - IMAGENET_RGB_MEAN) / IMAGENET_RGB_STD
    else:
        raise ValueError(f"unknown visual preprocessing {recipe!r} (use 'ave' or 'torchvision')")
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # (n, 3, S, S)


def preprocess(rgb: np.ndarray, recipe: str, size: int = IMAGE_SIZE) -> np.ndarray:
    return normalize(resize(rgb, size), recipe)


# ---- weight layouts ------------------------------------------------------------------------

def keras_to_torchvision(layers: dict[str, tuple[np.ndarray, np.ndarray]],
                         widths: tuple[int, ...] = WIDTHS) -> dict[str, torch.Tensor]:
    """Keras {name: (kernel (3, 3, in, out), bias)} -> torchvision `features.*` state dict.

    Kernels transpose to (out, in, 3, 3). Input channel order is kept: the first conv still
    expects BGR, which is what the "ave" preprocessing feeds it.
    """
    sd = {}
    for index, name, c_in, c_out in conv_layout(widths):
        if name not in layers:
            raise KeyError(f"layer {name} missing")
        kernel, bias = layers[name]
        if kernel.shape != (3, 3, c_in, c_out) or bias.shape != (c_out,):
            raise ValueError(f"{name}: kernel {kernel.shape}, bias {bias.shape}; "
                             f"expected {(3, 3, c_in, c_out)}, {(c_out,)}")
        sd[f"features.{index}.weight"] = torch.from_numpy(
            np.ascontiguousarray(np.asarray(kernel, np.float32).transpose(3, 2, 0, 1)))
        sd[f"features.{index}.bias"] = torch.from_numpy(np.asarray(bias, np.float32).copy())
    return sd


def torchvision_to_keras(sd: dict[str, torch.Tensor], widths: tuple[int, ...] = WIDTHS,
                         swap_rgb_bgr: bool = True) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """torchvision state dict -> Keras {name: (kernel (3, 3, in, out), bias)}.

    With swap_rgb_bgr the first conv's input channels are reversed, so a network that took RGB
    now takes BGR and gives the same outputs on the same image (the Keras convention).
    """
    layers = {}
    for index, name, _, _ in conv_layout(widths):
        w = sd[f"features.{index}.weight"].detach().float().cpu().numpy()  # (out, in, 3, 3)
        if index == 0 and swap_rgb_bgr:
            w = w[:, ::-1]
        layers[name] = (np.ascontiguousarray(w.transpose(2, 3, 1, 0)),
                        sd[f"features.{index}.bias"].detach().float().cpu().numpy().copy())
    return layers


def save_keras_h5(path: str | Path, layers: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Write weights in the Keras applications layout (what `load_keras_h5` reads)."""
    with h5py.File(path, "w") as f:
        names = list(layers)
        f.attrs["layer_names"] = np.array([n.encode() for n in names])
        for name in names:
            kernel, bias = layers[name]
            g = f.create_group(name)
            wn = [f"{name}/kernel:0", f"{name}/bias:0"]
            g.attrs["weight_names"] = np.array([n.encode() for n in wn])
            g.create_dataset(wn[0], data=np.asarray(kernel, np.float32))
            g.create_dataset(wn[1], data=np.asarray(bias, np.float32))


def _datasets(group: h5py.Group) -> list[np.ndarray]:
    found: list[np.ndarray] = []
    group.visititems(lambda _, obj: found.append(obj[()]) if isinstance(obj, h5py.Dataset)
                     else None)
    return found


def load_keras_h5(path: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Keras weights file -> {layer name: (kernel, bias)}; kernel = the 4-d array, bias the 1-d.

    Reads both the applications layout (layer groups at the root) and a whole saved model
    (layer groups under `model_weights`).
    """
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    with h5py.File(path, "r") as f:
        root = f.get("model_weights", f)
        for name, group in root.items():
            if not isinstance(group, h5py.Group):
                continue
            arrays = _datasets(group)
            kernels = [a for a in arrays if a.ndim == 4]
            biases = [a for a in arrays if a.ndim == 1]
            if len(kernels) == 1 and len(biases) == 1:
                out[name] = (kernels[0], biases[0])
    return out


def load_vgg19_weights(path: str | Path,
                       widths: tuple[int, ...] = WIDTHS) -> dict[str, torch.Tensor]:
    """A VGG19 weights file in either layout -> our state dict; a bad file -> UserError."""
    path = Path(path)
    try:
        if path.suffix in (".h5", ".hdf5", ".keras"):
            return keras_to_torchvision(load_keras_h5(path), widths)
        sd = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(sd, dict):
            raise ValueError("not a state dict")
        sd = {k: v for k, v in sd.items() if k.startswith("features.")}
        return matching_state_dict(sd, VGG19(widths).state_dict(),
                                   "the torchvision VGG19 layout")
    except (OSError, KeyError, ValueError, RuntimeError) as e:
        raise UserError(f"cannot load VGG19 weights from {path}: {e}; "
                        f"re-download with `python -m model.weights fetch`") from None
