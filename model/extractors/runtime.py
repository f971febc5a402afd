"""Where and how the extractor networks run: device, precision, memory format, batching.

    opts = RunOptions(device="cuda", precision="fp16", batch_size=64)
    net = prepare(VGG19(), opts)
    out = in_batches(eager_runner(net, opts), x_float32, opts.batch_size)  # float32 numpy

A `Runner` is one way of running a network: float32 numpy (n, ...) in, float32 numpy out.
`eager_runner(net, opts)` is the plain PyTorch one; `model.extractors.paths` builds the others
(whole-model bf16, compiled, OpenVINO) and picks one per machine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from model.errors import UserError
from model.limits import check_range, resolve_device

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}

Runner = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class RunOptions:
    device: str = "cpu"  # "cpu", "cuda", "cuda:1", ...
    precision: str = "fp32"  # "fp32", or autocast to "fp16" / "bf16"
    channels_last: bool = True  # NHWC memory format for the convs (faster on CPU)
    threads: int | None = None  # torch intra-op threads (process-wide); None leaves it alone
    batch_size: int = 16  # images or audio examples per forward pass

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UserError(f"unknown precision {self.precision!r}: use one of "
                            f"{sorted(PRECISIONS)}")
        check_range("--batch-size", self.batch_size, 1)
        if self.threads is not None:
            check_range("--threads", self.threads, 1)
        object.__setattr__(self, "device", resolve_device(self.device))  # "auto" -> cpu / cuda


def prepare(net: nn.Module, opts: RunOptions) -> nn.Module:
    """Eval mode, on the device, NHWC if asked; sets the thread count if asked."""
    if opts.threads:
        torch.set_num_threads(opts.threads)
    net = net.eval().to(opts.device)
    if opts.channels_last:
        net = net.to(memory_format=torch.channels_last)
    return net


def eager_runner(net: nn.Module, opts: RunOptions) -> Runner:
    """Run the (prepared) `net` as it is, autocast to `opts.precision` if not fp32."""
    dtype = PRECISIONS[opts.precision]
    device_type = "cuda" if opts.device.startswith("cuda") else "cpu"

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), torch.autocast(device_type, dtype=dtype or torch.bfloat16,
                                                    enabled=dtype is not None):
            xb = torch.from_numpy(np.ascontiguousarray(x, np.float32))
            xb = xb.to(opts.device, non_blocking=True)
            if opts.channels_last and xb.ndim == 4:
                xb = xb.contiguous(memory_format=torch.channels_last)
            return net(xb).float().cpu().numpy()

    return run


def eager_path(opts: RunOptions) -> str:
    """The name of `eager_runner`'s path: "fp32" (the paths' reference) or "autocast-<p>"."""
    return "fp32" if opts.precision == "fp32" else f"autocast-{opts.precision}"


def in_batches(run: Runner, x: np.ndarray, batch_size: int) -> np.ndarray:
    """`run` over a float32 array (n, ...) in batches of `batch_size`; float32 numpy out."""
    outs = [run(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)]
    if not outs:
        return np.zeros((0,), np.float32)
    return np.concatenate(outs)

