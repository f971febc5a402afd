"""What can run here: each backend's missing piece, and the `auto` rules.

    unavailable("tensorrt", "cpu")   # -> "backend tensorrt runs only on a CUDA GPU: ..." or None
    engine_backends("cpu")           # -> (["aot"], []): the engines `auto` may load here
    resolve_backend("auto", "cpu", what="extractor")  # -> ("eager", "auto picked eager: ...")

The window model's `auto` never builds: it loads an engine that `python -m model.backends
build` put in the cache for this model, shapes, precision and device, else runs eager
(build.py). The engines it looks for, best first (benchmarks/RESULTS.md "Backends"):
  CUDA GPU:  tensorrt (torch-tensorrt installed) > aot (AOTInductor; needs Triton).
  CPU:       aot (needs a C++ compiler). Its gain over eager on the CPU is within load noise,
             which is why it is built ahead, not at the first start (30-63 s).
  aot and tensorrt run fp32 and fp16 only (bf16 autocast cannot reach their kernels), so bf16
  runs eager (or --backend compile).
Extractors' `auto` (benchmarks): on a GPU tensorrt > compile > eager; on the CPU eager
(compiled ones measured faster for VGG19, slower for VGGish).
The probes are cheap (an import, `<compiler> --version`); nothing is timed at start-up.
"""

from __future__ import annotations

import functools
import importlib.util

import torch

from model.errors import UserError
from model.limits import BACKENDS, PRECISIONS, check_choice, resolve_device

ENGINES = {"cuda": ("tensorrt", "aot"), "cpu": ("aot",)}  # what window `auto` loads, best first
EXTRACTOR_AUTO = {"cuda": ("tensorrt", "compile", "eager"), "cpu": ("eager",)}
TENSORRT_INSTALL = "pip install -e '.[tensorrt]' on a machine with a CUDA GPU"


def check_precision(precision: str, device: str) -> None:
    check_choice("--precision", precision, PRECISIONS)
    cuda = torch.device(device).type == "cuda"
    if precision == "fp16" and not cuda:
        raise UserError("precision fp16 needs a CUDA GPU: on the CPU use --precision fp32 or bf16")
    if precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise UserError(f"this GPU ({torch.cuda.get_device_name(device)}) has no bf16: use "
                        "--precision fp16 or fp32")


@functools.cache
def cpp_compiler() -> str | None:
    """The C++ compiler inductor would use on the CPU, or None if it finds none that runs."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        return get_cpp_compiler()
    except Exception:  # inductor raises its own InvalidCxxCompiler, or fails to import
        return None


@functools.cache
def has_triton() -> bool:
    try:
        from torch.utils._triton import has_triton as triton_ok

        return bool(triton_ok())
    except Exception:
        return False


@functools.cache
def tensorrt_version() -> str | None:
    """torch-tensorrt's version if it imports (it fails to on a CPU build of torch), else None."""
    if importlib.util.find_spec("torch_tensorrt") is None:
        return None
    try:
        import torch_tensorrt

        return str(torch_tensorrt.__version__)
    except Exception:  # its CUDA libraries missing: ImportError, OSError, RuntimeError...
        return None


def unavailable(name: str, device: str, precision: str = "fp32",
                what: str = "window") -> str | None:
    """None if backend `name` can run `what` ("window" or "extractor") on `device` at
    `precision`, else one line naming the missing piece and the fix."""
    cuda = torch.device(device).type == "cuda"
    if precision == "bf16" and name == "export" and what == "extractor":
        return ("backend export runs an extractor's decomposed aten.convolution, which autocast "
                "does not reach: use bf16 with --backend eager or compile")
    if precision == "bf16" and name in ("aot", "tensorrt"):
        # their kernels are fixed at build time, so bf16 would mean a whole-bf16 model, whose
        # labels drift from fp32's (99.4% agreement measured in tests/test_backends.py)
        return (f"backend {name} has no mixed bf16 (a whole-bf16 model's labels drift): use "
                f"--precision {'fp16 or fp32' if cuda else 'fp32'}, or bf16 with --backend "
                "eager or compile")
    if name in ("eager", "export"):
        return None
    if name == "compile":
        if cuda and not has_triton():
            return ("backend compile on a GPU needs Triton, which did not import: "
                    "pip install triton (CUDA builds of torch ship it), or use --backend eager")
        if not cuda and cpp_compiler() is None:
            return ("backend compile on the CPU needs a C++ compiler for inductor and none runs: "
                    "install one (apt-get install g++), or use --backend export")
        return None
    if name == "aot":
        if cpp_compiler() is None:
            return ("backend aot needs a C++ compiler for AOTInductor and none runs: install one "
                    "(apt-get install g++), or use --backend eager")
        if cuda and not has_triton():
            return ("backend aot on a GPU needs Triton, which did not import: pip install triton, "
                    "or use --backend compile")
        return None
    if name == "tensorrt":
        if not cuda:
            return ("backend tensorrt runs only on a CUDA GPU: pass --device cuda on a GPU "
                    "machine, or use --backend compile on the CPU")
        if tensorrt_version() is None:
            return ("backend tensorrt needs torch-tensorrt, which is not installed: "
                    f"{TENSORRT_INSTALL}")
        return None
    check_choice("--backend", name, BACKENDS)
    raise AssertionError(f"backend {name} has no availability rule")


def engine_backends(device: str, precision: str = "fp32") -> tuple[list[str], list[str]]:
    """The engine backends the window's `auto` may load on this device, best first, and the
    missing piece of each other one."""
    runnable, skipped = [], []
    for name in ENGINES[torch.device(device).type]:
        why = unavailable(name, device, precision)
        if why is None:
            runnable.append(name)
        else:
            skipped.append(why)
    return runnable, skipped


def resolve_backend(name: str, device: str = "cpu", precision: str = "fp32",
                    what: str = "window") -> tuple[str, str]:
    """(backend to build, why) for a named backend, or an extractor's `auto` (the first of
    EXTRACTOR_AUTO that can run). A named backend that cannot run raises UserError with the
    missing piece. The window's `auto` depends on the engine cache: build.build_backend."""
    device = resolve_device(device)
    if name != "auto":
        why = unavailable(name, device, precision, what)
        if why is not None:
            raise UserError(why)
        return name, f"{name}: asked for"
    if what == "window":
        raise ValueError("the window's auto depends on the engine cache: call build_backend")
    skipped = []
    for candidate in EXTRACTOR_AUTO[torch.device(device).type]:
        why = unavailable(candidate, device, precision, what)
        if why is None:
            return candidate, _auto_reason(candidate, device, skipped)
        skipped.append(why.split(":")[0])  # "backend tensorrt needs torch-tensorrt, which ..."
    raise AssertionError("eager is always available")


def _auto_reason(name: str, device: str, skipped: list[str]) -> str:
    if name == "tensorrt":
        gpu = torch.cuda.get_device_name(device)
        because = f"a CUDA GPU ({gpu}) and torch-tensorrt {tensorrt_version()} are here"
    elif name == "compile":
        because = "torch.compile with CUDA graphs is the fastest path without TensorRT"
    elif torch.device(device).type == "cpu":
        because = ("on the CPU compiled extractors were mixed (faster for VGG19, slower for "
                   "VGGish, and compile recompiles at every start); --backend compile with bf16 "
                   "is the fastest for VGG19")
    else:
        because = "nothing faster can run here"
    lead = "; ".join(skipped)
    return f"auto picked {name}: {because}" + (f" ({lead})" if lead else "")
