"""The allowed values of the options every command shares, each checked here and nowhere else.

    k = check_lookahead(args.lookahead)                 # 0..9, else UserError
    k = check_frames_per_segment(args.frames_per_segment)
    check_choice("--backend", name, BACKENDS)
    device = resolve_device("auto")                     # "cuda" with a GPU, else "cpu"

Each check raises UserError with one line naming the flag, its allowed range and the value
given; called where options are built (streamer.options.AppOptions, the CLIs). Light: torch is
imported only to resolve a device.
"""

from __future__ import annotations

from model.errors import UserError
from model.layout import SEGMENTS

MIN_FRAMES_PER_SEGMENT = 1
DEVICES = "auto, cpu or cuda[:N]"
BACKENDS = ("auto", "eager", "export", "compile", "aot", "tensorrt")  # model.backends
PRECISIONS = ("fp32", "fp16", "bf16")  # of the window model (model.backends)
EXTRACTOR_PATHS = ("auto", "fp32")  # how the extractors run on a CPU (model.extractors.paths)


def check_lookahead(k: int) -> int:
    """Seconds of future context a label waits for: 0..SEGMENTS - 1 (the window's last
    position is the newest segment)."""
    if not 0 <= k < SEGMENTS:
        raise UserError(f"--lookahead must be in 0..{SEGMENTS - 1}, got {k}")
    return k


def check_frames_per_segment(k: int) -> int:
    """VGG19 frames per one-second segment: at least one."""
    if k < MIN_FRAMES_PER_SEGMENT:
        raise UserError(f"--frames-per-segment must be >= {MIN_FRAMES_PER_SEGMENT}, got {k}")
    return k


def check_positive(flag: str, value: float | None) -> float | None:
    """A length in seconds (--duration, --seconds ...): None (unbounded) or > 0."""
    if value is not None and not value > 0:
        raise UserError(f"{flag} must be positive, got {value}")
    return value


def check_choice(flag: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise UserError(f"unknown {flag} {value!r}: use one of {', '.join(allowed)}")
    return value


def resolve_device(device: str) -> str:
    """"auto" -> "cuda" when a CUDA GPU is here, else "cpu"; "cpu" or "cuda[:N]" checked to
    exist here and normalised (torch's spelling)."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise UserError(f"unknown --device {device!r}: use {DEVICES}") from None
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"unknown --device {device!r}: use {DEVICES}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {device}: this machine has no CUDA GPU (torch "
                            f"{torch.__version__}); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"--device {device} does not exist: this machine has "
                            f"{torch.cuda.device_count()} GPU(s)")
    return str(dev)
