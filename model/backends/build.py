"""Build a backend for the JCA window model or an extractor network, and call it on batches.

    be = build_backend("auto", net, "cpu")                       # be.name, be.reason, be.cache
    logits = be(audio, visual)   # (B, T, 128), (B, T, 7, 7, 512) -> (B, T, C) float32 on the CPU
    be = live_backend("eager", net)                              # what the live detector calls
    vgg = build_extractor_backend("compile", vgg19_net, "cpu", "bf16", batch_size=8)
    pool5 = vgg(x)               # (B, 3, 224, 224) -> (B, 512, 7, 7) float32 on the CPU

Backends:
  eager     the module itself under inference_mode (any batch size)
  export    the decomposed ExportedProgram (RNNs unrolled) run by PyTorch; cached on disk
  compile   torch.compile over that program (inductor JIT; CUDA graphs on the GPU); for an
            extractor over the module itself (no RNN; autocast must reach its convolutions)
  aot       AOTInductor over that program: native code compiled once, cached on disk
  tensorrt  torch-tensorrt over that program; the engine is cached on disk
  auto      window: an aot or tensorrt engine already in the cache for this model, shapes,
            precision and device (built ahead by `python -m model.backends build`), else eager;
            it never builds one. Extractors: the fastest that runs here (probe.py). `.reason`
            says which and why.

Precision: fp32; fp16 (GPU only) runs a half copy of the model on half inputs, in every
backend; bf16 autocasts the fp32 model (eager, export, compile). aot and tensorrt have no bf16:
autocast cannot reach kernels fixed at build time, and a whole-bf16 copy drifts (probe.py).

Exported backends have fixed shapes: a call is cut into chunks of `batch_size`, the last one
padded by repeating its last row, and the padding dropped from the outputs.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from model.backends import engines
from model.backends.cache import (
    CacheStatus,
    EngineCache,
    EngineKey,
    engine_cache_dir,
    library_versions,
)
from model.backends.export import export_window
from model.backends.probe import (
    check_precision,
    engine_backends,
    resolve_backend,
    unavailable,
)
from model.errors import UserError
from model.limits import resolve_device
from model.network import JCANet

EXTRACTOR_INPUTS = {"VGG19": (3, 224, 224), "VGGish": (1, 96, 64)}  # per-example input shapes
ENGINE_SUFFIX = {"export": ".pt2", "aot": ".pt2", "tensorrt": ".ep"}  # engine files in the cache
ARRAY = Tensor | np.ndarray
T = TypeVar("T")
log = logging.getLogger("model.backends")


class Backend:
    """A model behind one call: tensors or arrays on any device in, float32 CPU tensors out."""

    def __init__(self, fn: Callable[..., object], *, name: str, kind: str, device: str,
                 precision: str, batch_size: int, fixed: bool, input_dtype: torch.dtype,
                 autocast: torch.dtype | None, reason: str, cache: CacheStatus | None,
                 shapes: Sequence[tuple[int, ...]], channels_last: bool = False) -> None:
        self.fn = fn
        self.shapes = [tuple(s) for s in shapes]  # each input's shape without the batch axis
        self.name, self.kind, self.device, self.precision = name, kind, device, precision
        self.batch_size, self.fixed, self.reason, self.cache = batch_size, fixed, reason, cache
        self.input_dtype, self.autocast, self.channels_last = input_dtype, autocast, channels_last

    def __repr__(self) -> str:
        return (f"Backend({self.kind}: {self.name} {self.precision} on {self.device}, "
                f"batch {self.batch_size})")

    def describe(self) -> str:
        """One line for logs and dashboards: what runs, why, and the engine cache's state."""
        parts = [f"{self.name} {self.precision} on {self.device} (batch {self.batch_size})",
                 self.reason]
        if self.cache is not None:
            parts.append(str(self.cache))
        return "; ".join(parts)

    def _prepare(self, x: ARRAY) -> Tensor:
        x = torch.as_tensor(x).to(self.device, self.input_dtype, non_blocking=True)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _run(self, xs: list[Tensor]) -> tuple[Tensor | None, ...]:
        dev_type = torch.device(self.device).type
        amp = (torch.autocast(dev_type, dtype=self.autocast) if self.autocast is not None
               else contextlib.nullcontext())
        with amp:
            out = self.fn(*xs)
        outs = tuple(out) if isinstance(out, tuple | list) else (out,)
        return tuple(None if o is None else o.float().cpu() for o in outs)

    @torch.inference_mode()
    def run(self, *inputs: ARRAY) -> tuple[Tensor | None, ...]:
        """All outputs as a tuple, batch-first, float32 on the CPU."""
        xs = [self._prepare(x) for x in inputs]
        got = [tuple(x.shape) for x in xs]
        ok = (len(got) == len(self.shapes) and len({g[0] for g in got}) == 1
              and all(g[1:] == s for g, s in zip(got, self.shapes, strict=True)))
        if not ok:  # compiled engines do not check shapes themselves
            want = ", ".join(str(("B", *s)) for s in self.shapes)
            raise ValueError(f"{self.kind} backend takes inputs {want}, got {got}")
        n = xs[0].shape[0]
        if n == 0:
            raise ValueError("empty batch")
        chunks = []
        for lo in range(0, n, self.batch_size):
            part = [x[lo:lo + self.batch_size] for x in xs]
            real = part[0].shape[0]
            if self.fixed and real < self.batch_size:
                part = [torch.cat([p, p[-1:].expand(self.batch_size - real, *p.shape[1:])])
                        for p in part]
            chunks.append(tuple(None if o is None else o[:real] for o in self._run(part)))
        return tuple(None if c[0] is None else torch.cat(c) for c in zip(*chunks, strict=True))


class WindowBackend(Backend):
    """The JCA model on windows: `(audio (B, T, 128), visual (B, T, 7, 7, 512)) -> logits
    (B, T, C)`, or `(logits, attention (B, T, 7, 7) | None)` when built with attention=True."""

    attention: bool = False

    def __call__(self, audio: ARRAY, visual: ARRAY) -> Tensor | tuple[Tensor, Tensor | None]:
        out = self.run(audio, visual)
        if not self.attention:
            return out[0]
        return out[0], (out[1] if len(out) > 1 else None)


class ExtractorBackend(Backend):
    """An extractor network: `x (B, C, H, W) -> features`, float32 on the CPU."""

    def __call__(self, x: ARRAY) -> Tensor:
        return self.run(x)[0]


def _program_dtype(precision: str) -> torch.dtype:
    """dtype of the weights and inputs of what runs: a half copy for fp16; bf16 autocasts."""
    return torch.float16 if precision == "fp16" else torch.float32


def _autocast(precision: str) -> torch.dtype | None:
    return torch.bfloat16 if precision == "bf16" else None


@dataclass
class _Packaged:
    path: Path  # the package file the runner was loaded from
    runner: Callable[..., object]


def _cached(cache: EngineCache | None, key: Callable[[], EngineKey], build: Callable[[], T],
            save: Callable[[T, Path], None], load: Callable[[Path], T],
            suffix: str) -> tuple[T, CacheStatus]:
    if cache is None:
        t0 = time.perf_counter()
        return build(), CacheStatus("off", None, "", time.perf_counter() - t0)
    return cache.load_or_build(key(), build, save, load, suffix)


def _program(module: nn.Module, kind: str, export: Callable[[nn.Module], object],
             shapes: list[tuple[int, ...]], dtype: torch.dtype, cache: EngineCache | None,
             extra: dict | None) -> tuple[nn.Module, list[Tensor], Callable[[], tuple]]:
    """(CPU copy of the module in `dtype`, zero inputs, a function giving the decomposed program
    and its cache status). The program is cached as backend "export" on the CPU."""
    low = copy.deepcopy(module).to("cpu", dtype).eval()
    inputs = [torch.zeros(s, dtype=dtype) for s in shapes]

    def key() -> EngineKey:
        return EngineKey.of(kind, "export", low, shapes, dtype, "cpu", library_versions("export"),
                            extra)

    def program() -> tuple[torch.export.ExportedProgram, CacheStatus]:
        return _cached(cache, key, lambda: export(low), engines.save_program,
                       engines.load_program, ".pt2")

    return low, inputs, program


class EngineNotCached(RuntimeError):
    """`auto` found no usable engine in the cache; it never builds one."""


def _engine_key(backend: str, low: nn.Module, kind: str, shapes: list[tuple[int, ...]],
                dtype: torch.dtype, device: str, extra: dict | None) -> EngineKey:
    """The cache key of `backend`'s engine for `low` (the CPU copy in the program dtype)."""
    return EngineKey.of(kind, backend, low, shapes, dtype, device, library_versions(backend),
                        extra)


def _compiled(name: str, module: nn.Module, kind: str, export: Callable[[nn.Module], object],
              shapes: list[tuple[int, ...]], device: str, precision: str, cache_dir: Path | None,
              extra: dict | None, load_only: bool = False
              ) -> tuple[Callable[..., object], CacheStatus]:
    """The callable for export/compile/aot/tensorrt, through the engine cache when there is one.

    All start from the decomposed program of a CPU copy of the module in the program dtype.
    load_only: an aot or tensorrt engine must come from the cache (EngineNotCached otherwise).
    """
    dtype = _program_dtype(precision)
    cache = EngineCache(cache_dir) if cache_dir is not None else None
    low, inputs, program = _program(module, kind, export, shapes, dtype, cache, extra)

    def key(backend: str) -> Callable[[], EngineKey]:
        return lambda: _engine_key(backend, low, kind, shapes, dtype, device, extra)

    def or_refuse(build: Callable[[], T]) -> Callable[[], T]:
        if not load_only:
            return build

        def refuse() -> T:
            raise EngineNotCached(f"no usable {name} engine in the cache")
        return refuse

    if name in ("export", "compile"):
        ep, status = program()
        gm = engines.program_on(ep, device).module()
        return (gm if name == "export" else engines.compile_program(gm, device)), status

    if name == "aot":
        with tempfile.TemporaryDirectory() as tmp:
            def build_aot() -> _Packaged:
                ep = engines.program_on(program()[0], device)
                path = engines.aot_compile(ep, Path(tmp) / "engine.pt2")
                return _Packaged(path, engines.aot_load(path))

            packaged, status = _cached(
                cache, key("aot"), or_refuse(build_aot),
                lambda p, dest: shutil.copyfile(p.path, dest),
                lambda path: _Packaged(path, engines.aot_load(path)), ENGINE_SUFFIX["aot"])
        return packaged.runner, status

    dev_inputs = [x.to(device) for x in inputs]
    timing = None if cache is None else cache.dir / "tensorrt-timing.bin"
    return _cached(cache, key("tensorrt"),
                   or_refuse(lambda: engines.tensorrt_compile(program()[0], inputs, device,
                                                              timing)),
                   lambda m, path: engines.tensorrt_save(m, path, dev_inputs),
                   engines.tensorrt_load, ENGINE_SUFFIX["tensorrt"])


def _auto_window(module: nn.Module, kind: str, shapes: list[tuple[int, ...]], device: str,
                 precision: str, extra: dict | None, cache_dir: Path | None) -> tuple[str, str]:
    """(backend, why) for the window's `auto`: the first engine backend that runs here and has
    a trusted engine for this model in the cache, else eager. Nothing is built."""
    runnable, skipped = engine_backends(device, precision)
    if not runnable:
        return "eager", "auto picked eager: " + "; ".join(skipped)
    if cache_dir is None:
        return "eager", "auto picked eager: the engine cache is off"
    dtype = _program_dtype(precision)
    low = copy.deepcopy(module).to("cpu", dtype).eval()
    cache = EngineCache(cache_dir)
    unusable = []
    for name in runnable:
        key = _engine_key(name, low, kind, shapes, dtype, device, extra)
        why = cache.check(key, ENGINE_SUFFIX[name])
        if why is None:
            return name, (f"auto picked {name}: its engine for this model ({precision}, "
                          f"{device}) is in the cache {cache_dir}")
        if why != "missing":
            unusable.append(f"{name}: {why}")
    lead = f" ({'; '.join(unusable)})" if unusable else ""
    return "eager", (f"auto picked eager: no {' or '.join(runnable)} engine for this model "
                     f"({precision}, {device}) is cached{lead}; python -m model.backends build "
                     "(--checkpoint FILE | --random-weights) builds one")


def window_program(model: JCANet, precision: str = "fp32", backend: str = "tensorrt", *,
                   batch_size: int = 1, attention: bool = False,
                   cache_dir: str | Path | None = None,
                   cache: bool = False) -> tuple[torch.export.ExportedProgram, list[Tensor]]:
    """The decomposed program and example inputs (on the CPU) that `backend` compiles for this
    precision: what torch_tensorrt receives (moved to the GPU), checkable without one."""
    kind, shapes, export, extra = _window_parts(model, batch_size, attention)
    why = unavailable(backend, "cpu", precision) if precision == "bf16" else None
    if why is not None:
        raise UserError(why)
    dtype = _program_dtype(precision)
    folder = EngineCache(engine_cache_dir(cache_dir)) if cache else None
    _, inputs, program = _program(model, kind, export, shapes, dtype, folder, extra)
    return program()[0], inputs


def _build(name: str, module: nn.Module, kind: str, export: Callable[[nn.Module], object],
           eager: Callable[[nn.Module], Callable[..., object]], shapes: list[tuple[int, ...]],
           device: str, precision: str, batch_size: int, cache_dir: str | Path | None, cache: bool,
           warmup: bool, extra: dict | None, cls: type[Backend], what: str = "window",
           channels_last: bool = False) -> Backend:
    """Resolve `name`, build it; `auto` falls back to eager if its pick fails to load or build.

    The window's compile runs over the decomposed program (nn.LSTM would break the graph); an
    extractor's over the module itself, so that autocast reaches its convolutions.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = resolve_device(device)
    check_precision(precision, device)
    auto_window = name == "auto" and what == "window"
    if auto_window:
        chosen, reason = _auto_window(module, kind, shapes, device, precision, extra,
                                      engine_cache_dir(cache_dir) if cache else None)
    else:
        chosen, reason = resolve_backend(name, device, precision, what)

    def eager_net() -> nn.Module:
        net = copy.deepcopy(module).eval().to(device, _program_dtype(precision))
        return net.to(memory_format=torch.channels_last) if channels_last else net

    common = dict(kind=kind, device=device, precision=precision, batch_size=batch_size,
                  input_dtype=_program_dtype(precision), autocast=_autocast(precision),
                  shapes=[s[1:] for s in shapes])
    if chosen != "eager":
        try:
            on_module = chosen == "compile" and what == "extractor"
            if on_module:
                fn, status = engines.compile_program(eager_net(), device), None
            else:
                fn, status = _compiled(chosen, module, kind, export, shapes, device, precision,
                                       engine_cache_dir(cache_dir) if cache else None, extra,
                                       load_only=auto_window)
            backend = cls(fn, name=chosen, fixed=True, reason=reason, cache=status,
                          channels_last=channels_last and on_module, **common)
            if warmup:  # compile now, not on the first real call; CUDA graphs record on the 2nd
                zeros = [torch.zeros(s) for s in shapes]
                for _ in range(3 if chosen == "compile" and device != "cpu" else 1):
                    backend.run(*zeros)
            return backend
        except Exception as e:
            if name != "auto":
                raise
            step = "load" if auto_window else "build"
            line = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
            log.warning("backend %s failed to %s (%s: %s); using eager", chosen, step,
                        type(e).__name__, line)
            reason = f"auto fell back to eager: {chosen} failed to {step} ({type(e).__name__})"
    return cls(eager(eager_net()), name="eager", fixed=False, reason=reason, cache=None,
               channels_last=channels_last, **common)


def _window_parts(model: JCANet, batch_size: int, attention: bool) -> tuple[
        str, list[tuple[int, ...]], Callable[[nn.Module], torch.export.ExportedProgram], dict]:
    """(kind, input shapes, export function, key extras) of the JCA window at batch_size."""
    cfg = model.cfg
    hw = cfg.visual_hw
    shapes = [(batch_size, cfg.segments, cfg.audio_dim),
              (batch_size, cfg.segments, hw, hw, cfg.visual_dim)]
    with_attention = attention and cfg.modality != "audio"
    kind = "jca-window+attention" if with_attention else "jca-window"

    def export(net: nn.Module) -> torch.export.ExportedProgram:
        return export_window(net, batch=batch_size, attention=with_attention)

    return kind, shapes, export, {"config": cfg.to_dict()}


def build_backend(name: str, model: JCANet, device: str = "cpu", precision: str = "fp32", *,
                  batch_size: int = 1, attention: bool = False, cache_dir: str | Path | None = None,
                  cache: bool = True, warmup: bool = True) -> WindowBackend:
    """A backend for the JCA model on windows of `model.cfg.segments` segments.

    name: auto | eager | export | compile | aot | tensorrt. batch_size: windows per call of the
    compiled engine (fixed shapes). attention=True also returns the early fusion's attention
    map (None for an audio-only model). cache_dir: where engines are kept (default
    `$JCA_LIVE_ENGINES` or ~/.cache/jca-live/engines); cache=False builds every time.
    A backend that cannot run here raises UserError naming the missing piece.
    """
    kind, shapes, export, extra = _window_parts(model, batch_size, attention)
    with_attention = kind.endswith("+attention")

    def eager(net: nn.Module) -> Callable[..., object]:
        return lambda a, v: net(a, v, return_attention=with_attention)

    backend = _build(name, model, kind, export, eager, shapes, device, precision, batch_size,
                     cache_dir, cache, warmup, extra, WindowBackend)
    backend.attention = attention
    return backend  # type: ignore[return-value]


def live_backend(name: str, model: JCANet, device: str = "cpu", precision: str = "fp32",
                 **kwargs: object) -> WindowBackend:
    """The window backend the live detector calls: one window per call, with the attention
    map. The engine build step builds this one, so `auto` finds its engine at run time."""
    return build_backend(name, model, device, precision, batch_size=1, attention=True,
                         **kwargs)  # type: ignore[arg-type]


def build_extractor_backend(name: str, net: nn.Module, device: str = "cpu",
                            precision: str = "fp32", *, batch_size: int = 16,
                            input_shape: Sequence[int] | None = None, channels_last: bool = True,
                            cache_dir: str | Path | None = None, cache: bool = True,
                            warmup: bool = True) -> ExtractorBackend:
    """A backend for an extractor network (VGG19 to pool5, VGGish, or any one-input module).

    input_shape: one example's (C, H, W); known for VGG19 (3, 224, 224) and VGGish (1, 96, 64).
    channels_last: NHWC memory format for eager and compile (faster convolutions on the CPU
    and on tensor cores). `auto` on the CPU is eager (see probe.py). Other arguments as in
    build_backend.
    """
    cls_name = type(net).__name__
    if input_shape is None:
        if cls_name not in EXTRACTOR_INPUTS:
            raise ValueError(f"input_shape is needed for a {cls_name}")
        input_shape = EXTRACTOR_INPUTS[cls_name]
    shapes = [(batch_size, *input_shape)]

    def export(module: nn.Module) -> torch.export.ExportedProgram:
        dtype = next(module.parameters()).dtype
        return engines.export_program(module, [torch.zeros(shapes[0], dtype=dtype)])

    backend = _build(name, net, cls_name.lower(), export, lambda m: m, shapes, device, precision,
                     batch_size, cache_dir, cache, warmup, None, ExtractorBackend,
                     what="extractor", channels_last=channels_last)
    return backend  # type: ignore[return-value]
