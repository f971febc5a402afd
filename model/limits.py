"""The allowed values of the options every command shares, each checked here and nowhere else.

    k = check_lookahead(args.lookahead)                 # 0..9, else UserError
    k = check_frames_per_segment(args.frames_per_segment)
    s = check_av_offset(args.av_offset)                 # finite, within ±10 s
    check_choice("--backend", name, BACKENDS)
    device = resolve_device("auto")                     # "cuda" with a GPU, else "cpu"

Each check raises UserError with one line naming the flag, its allowed range and the value
given; called where options are built (streamer.options.AppOptions, the CLIs). Light: torch is
imported only to resolve a device.
"""

from __future__ import annotations

import math
import re

from model.errors import UserError
from model.layout import SEGMENTS

MIN_FRAMES_PER_SEGMENT = 1
MAX_FRAMES_PER_SEGMENT = 64  # past what a 60 fps camera gives in one second
MAX_AV_OFFSET_S = 10.0  # a camera and microphone further apart than this are not one stream
MAX_SEED = 2**32 - 1  # what every random generator here accepts (numpy's legacy seeds)
DEVICES = "auto, cpu or cuda[:N]"
DEVICE_NAME = re.compile(r"(cpu|cuda)(:\d+)?")
BACKENDS = ("auto", "eager", "export", "compile", "aot", "tensorrt")  # model.backends
PRECISIONS = ("fp32", "fp16", "bf16")  # of the window model (model.backends)
EXTRACTOR_PATHS = ("auto", "fp32")  # how the extractors run on a CPU (model.extractors.paths)


def check_range(flag: str, value: int, low: int, high: int | None = None) -> int:
    """A whole number in low..high (high None: no upper end)."""
    if value < low or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"in {low}..{high}"
        raise UserError(f"{flag} must be {allowed}, got {value}")
    return value


def check_lookahead(k: int) -> int:
    """Seconds of future context a label waits for: 0..SEGMENTS - 1 (the window's last
    position is the newest segment)."""
    return check_range("--lookahead", k, 0, SEGMENTS - 1)


def check_frames_per_segment(k: int) -> int:
    """VGG19 frames per one-second segment."""
    return check_range("--frames-per-segment", k, MIN_FRAMES_PER_SEGMENT, MAX_FRAMES_PER_SEGMENT)


def check_seed(seed: int) -> int:
    return check_range("--seed", seed, 0, MAX_SEED)


def check_positive(flag: str, value: float | None) -> float | None:
    """A length in seconds (--duration, --seconds ...): None (unbounded) or finite and > 0."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise UserError(f"{flag} must be a finite number of seconds > 0, got {value}")
    return value


def check_non_negative(flag: str, value: float) -> float:
    """A length in seconds that may be 0 (--min-event, --min-gap): finite and >= 0."""
    if not (math.isfinite(value) and value >= 0):
        raise UserError(f"{flag} must be a finite number of seconds >= 0, got {value}")
    return value


def check_av_offset(seconds: float | None) -> float | None:
    """Seconds the audio lags the picture: None (the saved offset, else 0) or finite and within
    ±MAX_AV_OFFSET_S."""
    if seconds is not None and not (math.isfinite(seconds) and abs(seconds) <= MAX_AV_OFFSET_S):
        raise UserError(f"--av-offset must be a finite number of seconds within "
                        f"±{MAX_AV_OFFSET_S:g}, got {seconds}")
    return seconds


def check_choice(flag: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise UserError(f"unknown {flag} {value!r}: use one of {', '.join(allowed)}")
    return value


def check_device_name(device: str) -> str:
    """"cpu" or "cuda[:N]", by name only, not checked to exist here (a Ray cluster's actors may
    hold the GPU this machine lacks)."""
    if not DEVICE_NAME.fullmatch(device):
        raise UserError(f"unknown --device {device!r}: use cpu or cuda[:N]")
    return device


def resolve_device(device: str) -> str:
    """"auto" -> "cuda" when a CUDA GPU is here, else "cpu"; "cpu" or "cuda[:N]" checked to
    exist here and normalised (torch's spelling)."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not DEVICE_NAME.fullmatch(device):
        raise UserError(f"unknown --device {device!r}: use {DEVICES}")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {device}: this machine has no CUDA GPU (torch "
                            f"{torch.__version__}); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"--device {device} does not exist: this machine has "
                            f"{torch.cuda.device_count()} GPU(s)")
    return str(dev)
