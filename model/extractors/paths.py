"""Extractor paths on the CPU: the ways to run VGG19 or VGGish, the fidelity gate, the choice of
the fastest faithful one on this machine, and the per-machine cache of that choice.

    choice, run = choose("vgg19", net, x_probe, identity="random:seed=0", env=BuildEnv(2),
                         cache=ChoiceCache(cache_dir(), machine_key(cpu_info())))
    choice.describe()       # "VGG19 fp32: ...", one line with the why and the cosine figures
    feats = run(x)          # float32 (n, 3, 224, 224) -> (n, 512, 7, 7)

Paths (PATHS, tried in that order):
  fp32          eager fp32 channels_last: today's live path, and the reference of the gate
  bf16          the whole network cast to bf16 once (autocast re-casts every call), channels_last
  openvino      OpenVINO fp32 (optional: `pip install openvino`), converted from the network
  openvino-bf16 OpenVINO with bf16 inference
  openvino-int8 OpenVINO int8: NNCF post-training quantization, calibrated on generated inputs
                other than the probe set (optional: `pip install nncf`; CPUs with int8 dot
                products only: VNNI or AMX), gated at INT8_COSINE_FLOOR
  compile-fp32, compile-bf16   torch.compile with freezing (rebuilt at every start)
The gate: a candidate's output on a fixed probe set against fp32's; cosine >= its floor
(COSINE_FLOOR, int8 INT8_COSINE_FLOOR) for every item or the candidate is refused. The choice:
the fastest faithful candidate at batch 1 (interleaved rounds, median), if it beats fp32 by
MIN_SPEEDUP. Which candidates `choose` tries on this CPU is `skip_reason`'s rule (bf16 only where
the CPU has it in hardware, int8 only with int8 dot products, and torch.compile only where a
measured gain pays for its build at every start; benchmarks/RESULTS.md).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib.util
import io
import json
import logging
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from model.extractors.cpu import CpuInfo, cpu_info
from model.extractors.runtime import Runner, RunOptions, eager_runner, prepare
from model.files import atomic_write_text

REFERENCE = "fp32"
COSINE_FLOOR = 0.9999  # min over the probe items of cos(candidate, fp32)
# int8 rounds every activation: its floor is the cosine at which a trained model's labels still
# agree with fp32's on MIN_LABEL_AGREEMENT % of segments (benchmarks.extractor_labels, RESULTS.md)
INT8_COSINE_FLOOR = 0.998
CALIBRATION_ITEMS = 16  # generated inputs the int8 quantization is calibrated on
CALIBRATION_SEED = 1  # not the probe set's seed: the gate checks on inputs it was not fitted to
MIN_LABEL_AGREEMENT = 99.5  # % of a trained model's segment labels equal to fp32's: a faithful
# extractor path (benchmarks.extractor_labels) or window backend (tests/test_backends.py)
MIN_SPEEDUP = 1.1  # a candidate replaces fp32 only if this much faster (else: timing noise)
TIMING_ROUNDS = 5  # medians over this many interleaved rounds: the dev machine is shared
PROBE_ITEMS = 3
MAX_BATCH = 1024  # the largest batch an exported program takes
NETWORK_NAMES = {"vgg19": "VGG19", "vggish": "VGGish"}
CACHE_ENV = "JCA_LIVE_CACHE"
CACHE_FILE = "extractor-paths.json"
CACHE_FORMAT = "jca-live-extractor-paths"
CACHE_VERSION = 2


@dataclass(frozen=True)
class BuildEnv:
    threads: int  # intra-op threads of the runtimes that keep their own pool
    engines: Path | None = None  # where exported programs are kept between starts (None: not)
    # network inputs an int8 path is calibrated on, by network ("vgg19", "vggish")
    calibration: Mapping[str, np.ndarray] = field(default_factory=dict)


Build = Callable[[nn.Module, tuple[int, ...], BuildEnv], Runner]  # fp32 net, input shape (C, H, W)


# ---- the paths --------------------------------------------------------------------------------

def _modules_missing(*names: str) -> Callable[[], str | None]:
    def missing() -> str | None:
        for name in names:
            if importlib.util.find_spec(name) is None:
                return f"{name} is not installed (pip install {name})"
        return None

    return missing


def _compiler_missing() -> str | None:
    from model.backends.probe import cpp_compiler

    return None if cpp_compiler() else "no C++ compiler for torch.compile"


def _torch(dtype: torch.dtype, compiled: bool = False) -> Build:
    """Cast a copy of the network to `dtype` once, channels_last, optionally torch.compile'd
    with freezing (weights folded into the compiled kernels)."""
    def build(net: nn.Module, shape: tuple[int, ...], env: BuildEnv) -> Runner:
        low = copy.deepcopy(net).eval().to(dtype).to(memory_format=torch.channels_last)
        fn = torch.compile(low, options={"freezing": True}, dynamic=False) if compiled else low

        def run(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                xb = torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(dtype)
                return fn(xb.contiguous(memory_format=torch.channels_last)).float().numpy()

        run(np.zeros((1, *shape), np.float32))  # compiles now, not on the first real frame
        return run

    return build


def _reference(net: nn.Module, shape: tuple[int, ...], env: BuildEnv) -> Runner:
    opts = RunOptions(channels_last=True)
    return eager_runner(prepare(net, opts), opts)


def import_openvino() -> Any:
    """openvino with its usage telemetry off. Its model converter otherwise opts the user in
    unasked, writes ~/intel and posts to an analytics service from the site; blocking the
    telemetry package makes OpenVINO take its own stub, as it does where that package is not
    installed."""
    if "openvino.tools.ovc" not in sys.modules:
        sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
    import openvino as ov

    return ov


def cached_ir(net: nn.Module, shape: tuple[int, ...], env: BuildEnv, make: Callable[[], Any],
              **tags: str) -> Any:
    """The OpenVINO model `make()` gives, kept in `env.engines` as IR (.xml + .bin) named by a
    digest of the network's weights, the shape, the torch and OpenVINO versions and `tags`:
    made once, read back at later starts."""
    ov = import_openvino()
    if env.engines is None:
        return make()
    from model.backends.cache import weights_digest

    digest = weights_digest(net, {"shape": shape, "torch": torch.__version__,
                                  "openvino": ov.__version__, **tags})
    path = env.engines / f"{type(net).__name__.lower()}-{digest[:16]}.xml"
    if path.is_file() and path.with_suffix(".bin").is_file():
        return ov.Core().read_model(path)
    model = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:  # the .xml lands last
        ov.save_model(model, Path(tmp) / path.name, compress_to_fp16=False)
        os.replace(Path(tmp) / path.with_suffix(".bin").name, path.with_suffix(".bin"))
        os.replace(Path(tmp) / path.name, path)
    return model


def openvino_model(net: nn.Module, shape: tuple[int, ...], env: BuildEnv) -> Any:
    """The network as an OpenVINO model with a free batch axis (fp32 weights)."""
    def convert() -> Any:
        batch = torch.export.Dim("n", min=1, max=MAX_BATCH)
        program = torch.export.export(net.eval(), (torch.zeros(2, *shape),),
                                      dynamic_shapes=({0: batch},))
        return import_openvino().convert_model(program)

    return cached_ir(net, shape, env, convert)


def openvino_int8_model(net: nn.Module, shape: tuple[int, ...], env: BuildEnv) -> Any:
    """The network quantized to int8 by NNCF's post-training quantization, calibrated on
    `env.calibration` (its activation ranges); every convolution and matmul runs in int8."""
    name = type(net).__name__.lower()
    if name not in env.calibration:
        raise ValueError(f"no calibration inputs for the int8 quantization of {name}")
    import nncf

    calibration = np.ascontiguousarray(env.calibration[name], np.float32)

    def quantize() -> Any:
        nncf.set_log_level(logging.ERROR)
        items = nncf.Dataset([calibration[i:i + 1] for i in range(len(calibration))])
        # NNCF draws a progress bar on stdout, which a headless run keeps for its JSON lines
        with contextlib.redirect_stdout(io.StringIO()):
            return nncf.quantize(openvino_model(net, shape, env), items,
                                 subset_size=len(calibration))

    tag = hashlib.sha256(calibration.tobytes()).hexdigest()[:16]
    return cached_ir(net, shape, env, quantize, int8=f"nncf {nncf.__version__}", calibration=tag)


def _openvino(precision: str, int8: bool = False) -> Build:
    def build(net: nn.Module, shape: tuple[int, ...], env: BuildEnv) -> Runner:
        ov = import_openvino()
        model = (openvino_int8_model if int8 else openvino_model)(net, shape, env)
        compiled = ov.Core().compile_model(model, "CPU", {
            "INFERENCE_NUM_THREADS": env.threads, "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": precision})
        request, lock = compiled.create_infer_request(), threading.Lock()

        def run(x: np.ndarray) -> np.ndarray:
            with lock:  # one request, reused
                request.infer({0: np.ascontiguousarray(x, np.float32)})
                return request.get_output_tensor(0).data.astype(np.float32, copy=True)

        return run

    return build


@dataclass(frozen=True)
class PathSpec:
    summary: str
    build: Build
    missing: Callable[[], str | None] = lambda: None  # a library or compiler it needs
    bf16: bool = False  # computes in bf16: fast only where the CPU has bf16 in hardware
    compiles: bool = False  # torch.compile at every start (tens of seconds)
    int8: bool = False  # int8 arithmetic: fast only with int8 dot-product instructions
    cosine_floor: float = COSINE_FLOOR  # the gate


PATHS: dict[str, PathSpec] = {
    "fp32": PathSpec("eager fp32 channels_last", _reference),
    "bf16": PathSpec("eager, whole network cast to bf16, channels_last", _torch(torch.bfloat16),
                     bf16=True),
    "openvino": PathSpec("OpenVINO fp32", _openvino("f32"), _modules_missing("openvino")),
    "openvino-bf16": PathSpec("OpenVINO bf16", _openvino("bf16"), _modules_missing("openvino"),
                              bf16=True),
    "openvino-int8": PathSpec("OpenVINO int8 (NNCF post-training quantization)",
                              _openvino("f32", int8=True), _modules_missing("openvino", "nncf"),
                              int8=True, cosine_floor=INT8_COSINE_FLOOR),
    "compile-fp32": PathSpec("torch.compile (freezing) fp32", _torch(torch.float32, True),
                             _compiler_missing, compiles=True),
    "compile-bf16": PathSpec("torch.compile (freezing), whole network bf16",
                             _torch(torch.bfloat16, True), _compiler_missing, bf16=True,
                             compiles=True),
}


def cosine_floor(path: str) -> float:
    """The gate's floor of a path (paths outside PATHS, e.g. a benchmark's own: COSINE_FLOOR)."""
    spec = PATHS.get(path)
    return COSINE_FLOOR if spec is None else spec.cosine_floor


def cannot_run(spec: PathSpec, info: CpuInfo) -> str | None:
    """Why this machine cannot run the path as named (None: it can): a library it lacks, or
    bf16 it would only emulate (OpenVINO then quietly computes in fp32, another path)."""
    if (missing := spec.missing()) is not None:
        return missing
    if spec.bf16 and not info.native_bf16:
        return "bf16 is emulated on this CPU (no AVX-512-bf16 or AMX)"
    return None


def skip_reason(spec: PathSpec, info: CpuInfo) -> str | None:
    """Why `choose` does not try this path on this CPU (None: it does)."""
    if (why := cannot_run(spec, info)) is not None:
        return why
    if spec.int8 and not info.int8_dot:
        return "no int8 dot-product instructions on this CPU (no VNNI or AMX-int8)"
    if spec.compiles and not info.native_bf16:
        return "torch.compile gains too little here to pay for its build at every start"
    return None


# ---- the gate and the choice --------------------------------------------------------------------

def min_cosine(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Smallest cosine similarity between matching items (axis 0), in float64."""
    a = np.asarray(reference, np.float64).reshape(len(reference), -1)
    b = np.asarray(candidate, np.float64).reshape(len(candidate), -1)
    if a.shape != b.shape:
        return 0.0
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    dot = np.einsum("ij,ij->i", a, b)
    cos = np.where((na == 0) & (nb == 0), 1.0, dot / np.maximum(na * nb, 1e-300))
    return float(cos.min())


@dataclass(frozen=True)
class Verdict:
    """One path's result on this machine."""

    path: str
    cosine: float | None = None  # min over the probe items against fp32
    ms: float | None = None  # median wall milliseconds per item at batch 1
    refused: str | None = None  # why it is not used (None: faithful)
    skipped: bool = False  # not tried on this CPU (`skip_reason`), as against refused by the gate


@dataclass(frozen=True)
class NetChoice:
    """The path one network runs on, why, and every candidate's verdict."""

    network: str  # "vgg19" | "vggish"
    path: str
    reason: str
    verdicts: tuple[Verdict, ...]
    cached: bool = False

    def verdict(self, path: str) -> Verdict:
        return next(v for v in self.verdicts if v.path == path)

    @property
    def ms(self) -> float | None:
        """Measured milliseconds per item of the chosen path at batch 1."""
        return self.verdict(self.path).ms

    def describe(self) -> str:
        refused = [f"{v.path} ({v.refused})" for v in self.verdicts
                   if v.refused is not None and not v.skipped]
        skipped = sum(v.skipped for v in self.verdicts)
        tail = (f"; refused: {', '.join(refused)}" if refused else "") + \
            (f"; {skipped} not tried here" if skipped else "")
        return f"{NETWORK_NAMES.get(self.network, self.network)} {self.path} ({self.reason}{tail})"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("cached")
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NetChoice:
        return cls(d["network"], d["path"], d["reason"],
                   tuple(Verdict(**v) for v in d["verdicts"]))


@dataclass(frozen=True)
class PathChoice:
    """Both networks' paths on this machine: what the live app prints in one line."""

    cpu: str  # CpuInfo.short()
    visual: NetChoice
    audio: NetChoice

    def describe(self) -> str:
        cached = " (cached)" if self.visual.cached and self.audio.cached else ""
        return (f"extractor paths{cached}: {self.visual.describe()}; {self.audio.describe()}; "
                f"CPU {self.cpu}")


def pick(verdicts: Sequence[Verdict], min_speedup: float = MIN_SPEEDUP) -> tuple[str, str]:
    """(path, reason): the fastest faithful timed verdict if it beats fp32 by `min_speedup`."""
    ref = next(v for v in verdicts if v.path == REFERENCE)
    faithful = [v for v in verdicts if v.refused is None and v.ms is not None]
    best = min(faithful, key=lambda v: v.ms or 0.0)
    others = len(faithful) - 1
    if best.path == REFERENCE or ref.ms is None or best.ms is None:
        return REFERENCE, f"the fastest of {others + 1} faithful, {ref.ms:.0f} ms/item"
    speedup = ref.ms / best.ms
    if speedup < min_speedup:
        return REFERENCE, (f"{best.path} only {speedup:.2f}x faster than fp32 "
                           f"({ref.ms:.0f} ms/item), under {min_speedup}x")
    return best.path, (f"{speedup:.1f}x fp32: {best.ms:.0f} vs {ref.ms:.0f} ms/item, "
                       f"min cosine {best.cosine:.6f}")


Timer = Callable[[Mapping[str, Runner], np.ndarray], dict[str, float]]


def interleaved_ms(runners: Mapping[str, Runner], x: np.ndarray,
                   rounds: int = TIMING_ROUNDS) -> dict[str, float]:
    """Median wall milliseconds per item of each runner on `x`, in interleaved rounds (A B A B:
    a burst of load from other processes hits them all alike)."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            t0 = time.perf_counter()
            run(x)
            times[name].append(1e3 * (time.perf_counter() - t0) / len(x))
    return {name: statistics.median(ts) for name, ts in times.items()}


@contextlib.contextmanager
def noting_interrupts() -> Iterator[list[int]]:
    """The Ctrl+C signals that arrive meanwhile (in the main thread; the handler before it still
    runs). A converter that calls back into Python turns the KeyboardInterrupt raised there into
    its own error (OpenVINO does); the list tells such a failure from a real one."""
    seen: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return
    previous = signal.getsignal(signal.SIGINT)

    def note(signum: int, frame: Any) -> None:
        seen.append(signum)
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, note)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)


def probe_paths(network: str, net: nn.Module, probe: np.ndarray, env: BuildEnv, info: CpuInfo,
                paths: Mapping[str, PathSpec], timer: Timer = interleaved_ms
                ) -> tuple[NetChoice, dict[str, Runner]]:
    """Gate every path `skip_reason` lets run here against fp32 on `probe`, time the faithful
    ones at batch 1, pick. Returns the choice and the faithful runners."""
    shape = tuple(probe.shape[1:])
    runners = {REFERENCE: paths[REFERENCE].build(net, shape, env)}
    expected = runners[REFERENCE](probe)
    verdicts: dict[str, Verdict] = {REFERENCE: Verdict(REFERENCE, 1.0)}
    for name, spec in paths.items():
        if name == REFERENCE:
            continue
        if (why := skip_reason(spec, info)) is not None:
            verdicts[name] = Verdict(name, refused=why, skipped=True)
            continue
        with noting_interrupts() as interrupts:
            try:
                run = spec.build(net, shape, env)
                cos = min_cosine(expected, run(probe))
            except Exception as e:  # a runtime that cannot take this network is refused
                if interrupts:  # Ctrl+C, swallowed: not a verdict to keep
                    raise KeyboardInterrupt from None
                verdicts[name] = Verdict(name, refused=f"failed: {str(e).splitlines()[0][:120]}")
                continue
        if not cos >= spec.cosine_floor:  # NaN fails too
            verdicts[name] = Verdict(name, cos,
                                     refused=f"cosine {cos:.6f} < {spec.cosine_floor}")
            continue
        verdicts[name] = Verdict(name, cos)
        runners[name] = run
    timings = timer(runners, probe[:1])
    verdicts.update({n: replace(verdicts[n], ms=ms) for n, ms in timings.items()})
    ordered = tuple(verdicts[n] for n in paths if n in verdicts)
    path, reason = pick(ordered)
    return NetChoice(network, path, reason, ordered), runners


# ---- the per-machine cache ----------------------------------------------------------------------

def cache_dir(override: str | Path | None = None) -> Path:
    """`override`, else `$JCA_LIVE_CACHE`, else `~/.cache/jca-live`."""
    if override is not None:
        return Path(override).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path.home() / ".cache" / "jca-live"


class ChoiceCache:
    """Measurements of one machine (its `machine_key`) in a JSON file shared by all machines:
    `load(slot)` / `store(slot, dict)`; entries made under another key are never read."""

    def __init__(self, directory: str | Path, key: str) -> None:
        self.path = Path(directory) / CACHE_FILE
        self.key = key

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        ok = (isinstance(data, dict) and data.get("format") == CACHE_FORMAT
              and data.get("version") == CACHE_VERSION
              and isinstance(data.get("machines", {}), dict)
              and all(isinstance(m, dict) for m in data.get("machines", {}).values()))
        return data if ok else {}  # a damaged cache is measured again

    def load(self, slot: str) -> dict[str, Any] | None:
        return self._read().get("machines", {}).get(self.key, {}).get(slot)

    def store(self, slot: str, entry: dict[str, Any]) -> None:
        data = self._read() or {"format": CACHE_FORMAT, "version": CACHE_VERSION}
        machine = data.setdefault("machines", {}).setdefault(self.key, {})
        machine[slot] = entry
        atomic_write_text(self.path, json.dumps(data, indent=1, sort_keys=True))

    def forget(self, prefix: str) -> int:
        """Drop this machine's entries whose slot starts with `prefix`; how many there were."""
        data = self._read()
        machine = data.get("machines", {}).get(self.key, {})
        gone = [slot for slot in machine if slot.startswith(prefix)]
        for slot in gone:
            del machine[slot]
        if gone:
            atomic_write_text(self.path, json.dumps(data, indent=1, sort_keys=True))
        return len(gone)


def choose(network: str, net: nn.Module, probe: np.ndarray, *, identity: str, env: BuildEnv,
           cache: ChoiceCache | None = None, info: CpuInfo | None = None,
           paths: Mapping[str, PathSpec] | None = None,
           timer: Timer = interleaved_ms) -> tuple[NetChoice, Runner]:
    """The path `network` (fp32 weights in `net`, identified by `identity`) runs on here, and
    its runner. A choice cached for this machine key, weights and thread count is reused as it
    is (no probe); else the paths are probed (`probe_paths`) and the choice stored."""
    info = info or cpu_info()
    paths = PATHS if paths is None else paths
    slot = f"{network}|{identity}|threads={env.threads}"
    cached = cache.load(slot) if cache is not None else None
    if cached is not None:
        try:
            hit = replace(NetChoice.from_dict(cached), cached=True)
        except (KeyError, TypeError):
            hit = None
        if hit is not None and hit.path in paths:
            return hit, paths[hit.path].build(net, tuple(probe.shape[1:]), env)
    choice, runners = probe_paths(network, net, probe, env, info, paths, timer)
    if cache is not None:
        cache.store(slot, choice.to_dict())
    return choice, runners[choice.path]


# ---- probe inputs -----------------------------------------------------------------------------

def probe_rgb(n: int = PROBE_ITEMS, size: int = 224, seed: int = 0) -> np.ndarray:
    """(n, size, size, 3) uint8 generated frames: gradients, a bright disc, a dark bar, noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size  # (size, size) each
    frames = []
    for i in range(n):
        r = 255 * ((xx * (i + 1)) % 1.0)
        g = 255 * yy
        b = 128 + 100 * np.sin(2 * np.pi * (xx + yy) * (i + 2))
        img = np.stack([r, g, b], -1)  # (size, size, 3)
        cx, cy = rng.uniform(0.25, 0.75, 2)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < 0.02] = (250, 240, 40)
        img[np.abs(yy - rng.uniform(0.2, 0.8)) < 0.05] *= 0.2
        img += rng.normal(0, 12, img.shape)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(frames)


def probe_segments(n: int = PROBE_ITEMS, rate: int = 16000, seed: int = 0) -> list[np.ndarray]:
    """n one-second float32 segments, in turn a tone with harmonics, noise and a chirp."""
    rng = np.random.default_rng(seed)
    t = np.arange(rate) / rate
    kinds = [0.3 * sum(np.sin(2 * np.pi * 440 * h * t) / h for h in (1, 2, 3)),
             0.1 * rng.standard_normal(rate),
             0.3 * np.sin(2 * np.pi * (200 * t + 1900 * t ** 2))]  # 200 Hz -> 4 kHz
    return [kinds[i % len(kinds)].astype(np.float32) for i in range(n)]
