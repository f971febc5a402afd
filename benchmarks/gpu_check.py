"""`make gpu-check`: the GPU half of the design measured in one command on any CUDA machine.

    PYTHONPATH=. python3 -m benchmarks.gpu_check              # on the GPU machine, as it is
    PYTHONPATH=. python3 -m benchmarks.gpu_check --dry-run    # CPU only, tiny sizes, seconds

Runs from a checkout against the torch (>= 2.11, CUDA) the machine has, installs nothing and
needs no network (PyAV and the other extras are optional: the synthetic source needs none), and
stops starting new sections when its budget (8 minutes) runs out. Sections, in order:
  tests      the `gpu`-marked tests (pytest -m gpu), if pytest is importable
  extractors VGG19 and VGGish frames/s (random weights) in fp32 / fp16 / bf16, batch 1, 16, 64
  window     the JCA window (paper preset) per backend: eager, torch.compile with CUDA graphs
             ("reduce-overhead", model.backends' compile), TensorRT when torch_tensorrt imports;
             batch 1 and 64; ms per call and windows/s
  latency    segment close -> label p50 / p95 / p99 at K = 16 on the synthetic source, real time
  streams    the most real-time synthetic streams at K = 16 on shared batched workers (the
             many-streams machinery of benchmarks.latency_streams), doubling then bisecting,
             stopping at 200
Writes gpu-check.json and gpu-check.md (a block for benchmarks/RESULTS.md) into --out. A section
that fails records its error and the others still run. `--dry-run` runs the same code on the CPU
at tiny sizes (its figures mean nothing) so a CPU test keeps it working.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

BUDGET_S = 480.0  # the whole check: 8 minutes
MAX_STREAMS = 200
GPU_FRAMES = 16  # the AVE recipe
PRECISIONS = ("fp32", "fp16", "bf16")
SECTIONS = ("tests", "extractors", "window", "latency", "streams")
MIN_TORCH = (2, 11)


@dataclass(frozen=True)
class Sizes:
    """What a run measures: the real check, or the dry run's tiny copy of it."""

    device: str
    batches: tuple[int, ...]  # extractor batches
    window_batches: tuple[int, ...]
    backends: tuple[str, ...]  # window backends tried (tensorrt only when it imports)
    image: int  # VGG19 input side (224; the dry run's is smaller: pool5 is then 1x1)
    timed_s: float  # per extractor / window case, after warm-up
    k: int  # frames per segment of the latency and streams runs
    latency_s: float  # seconds of synthetic stream of the latency run
    streams_s: float  # seconds of each streams run
    max_streams: int
    tests: tuple[str, ...]  # pytest arguments after -m gpu
    reserve_s: float  # window builds stop this long before the deadline (latency + streams)
    narrow: int = 1  # extractor widths divided by this (the dry run's networks are tiny)
    fast: bool = False  # the latency and streams runs as fast as they go (the dry run)


REAL = Sizes(device="cuda", batches=(1, 16, 64), window_batches=(1, 64),
             backends=("eager", "compile", "tensorrt"), image=224, timed_s=1.0, k=GPU_FRAMES,
             latency_s=30.0, streams_s=8.0, max_streams=MAX_STREAMS, tests=("tests",),
             reserve_s=150.0)
DRY = Sizes(device="cpu", batches=(1, 2), window_batches=(1, 2), backends=("eager",), image=32,
            timed_s=0.05, k=1, latency_s=2.0, streams_s=2.0, max_streams=2,
            tests=("tests/test_backends.py",), reserve_s=0.0, narrow=32, fast=True)


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def torch_ok(version: str) -> bool:
    """torch >= 2.11 (any build: "2.11.0+cu128", "2.12.0a0")."""
    m = re.match(r"(\d+)\.(\d+)", version)
    return bool(m) and (int(m.group(1)), int(m.group(2))) >= MIN_TORCH


# ---- timing ------------------------------------------------------------------------------------

def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def time_calls(call: Callable[[], object], device: str, seconds: float,
               warmup: int = 2) -> dict[str, float]:
    """Warm-up calls, then calls until `seconds` have passed: calls and ms per call (median)."""
    for _ in range(warmup):
        call()
    sync(device)
    times = []
    start = time.perf_counter()
    while not times or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        call()
        sync(device)
        times.append(1e3 * (time.perf_counter() - t0))
    times.sort()
    return {"calls": len(times), "ms": round(times[len(times) // 2], 4)}


# ---- sections ----------------------------------------------------------------------------------

def section_tests(sizes: Sizes, deadline: float) -> dict[str, Any]:
    if importlib.util.find_spec("pytest") is None:
        return {"skipped": "pytest is not importable here"}
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
           *sizes.tests]
    left = deadline - time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=min(BUDGET_S / 3, left))
    lines = [x for x in p.stdout.splitlines() if x.strip()]
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|deselected|error)",
                                               lines[-1] if lines else "")}
    return {"command": " ".join(cmd[1:]), "exit": p.returncode, "counts": counts,
            "summary": lines[-1] if lines else p.stderr.strip()[-300:]}


def _cast(module: Any, precision: str) -> Any:
    import torch

    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    return module.to(dtype), dtype


def section_extractors(sizes: Sizes, deadline: float) -> dict[str, Any]:
    import torch

    from model.extractors import vgg19, vggish

    def widths(full: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(max(w // sizes.narrow, 1) for w in full)

    nets = {"vgg19": (vgg19.VGG19(widths(vgg19.WIDTHS)), (3, sizes.image, sizes.image)),
            "vggish": (vggish.VGGish(widths(vggish.WIDTHS), vggish.HIDDEN // sizes.narrow),
                       (1, 96, 64))}
    rows = []
    for name, (net, shape) in nets.items():
        net.init_random(0)
        net.eval().to(sizes.device)
        for precision in PRECISIONS:
            run, dtype = _cast(net, precision)
            for batch in sizes.batches:
                x = torch.rand(batch, *shape, device=sizes.device, dtype=dtype)
                try:
                    with torch.inference_mode():
                        t = time_calls(lambda run=run, x=x: run(x), sizes.device, sizes.timed_s)
                    rows.append({"network": name, "precision": precision, "batch": batch,
                                 **t, "frames_per_s": round(1e3 * batch / t["ms"], 1)})
                except Exception as e:  # a dtype this device cannot run: say so, go on
                    rows.append({"network": name, "precision": precision, "batch": batch,
                                 "error": str(e).splitlines()[0][:200]})
        net.to("cpu")
    return {"rows": rows}


def section_window(sizes: Sizes, deadline: float) -> dict[str, Any]:
    import numpy as np

    from model.backends.build import build_backend
    from model.inference import load_model

    net = load_model(None, random_weights=True, seed=0).net
    cfg = net.cfg
    rows, not_run = [], {}
    for name in sizes.backends:
        if name == "tensorrt" and importlib.util.find_spec("torch_tensorrt") is None:
            not_run[name] = "torch_tensorrt is not importable here"
            continue
        for batch in sizes.window_batches:
            if time.monotonic() > deadline - sizes.reserve_s:
                not_run[f"{name} batch {batch}"] = "out of time (kept for latency and streams)"
                continue
            a = np.random.default_rng(0).random((batch, cfg.segments, cfg.audio_dim), np.float32)
            v = np.random.default_rng(1).random(
                (batch, cfg.segments, cfg.visual_hw, cfg.visual_hw, cfg.visual_dim), np.float32)
            try:
                t0 = time.perf_counter()
                backend = build_backend(name, net, sizes.device, "fp32", batch_size=batch,
                                        cache=False)
                build_s = round(time.perf_counter() - t0, 2)
                t = time_calls(lambda b=backend, a=a, v=v: b(a, v), sizes.device, sizes.timed_s)
                rows.append({"backend": name, "batch": batch, "build_s": build_s, **t,
                             "windows_per_s": round(1e3 * batch / t["ms"], 1)})
            except Exception as e:
                rows.append({"backend": name, "batch": batch,
                             "error": str(e).splitlines()[0][:200]})
    return {"rows": rows, "not_run": not_run,
            "note": "numpy in, float32 CPU tensors out, as the live detector calls it"}


@functools.cache
def _parts(sizes: Sizes) -> Any:
    """main.py's runtime on the synthetic source, loaded once for the latency and streams runs
    (each run gives its own length)."""
    from benchmarks.latency_run import Parts
    from streamer.options import AppOptions

    parts = Parts.load(AppOptions(source="synthetic", random_weights=True, device=sizes.device,
                                  frames_per_segment=sizes.k, backend="eager",
                                  duration=sizes.latency_s, log=None, events=None,
                                  headless=True))
    parts.warm_up("eager")
    return parts


def section_latency(sizes: Sizes, deadline: float) -> dict[str, Any]:
    from benchmarks.latency_run import RunSpec, measure

    parts = _parts(sizes)
    spec = RunSpec(f"K={sizes.k}", k=sizes.k, fast=sizes.fast, seconds=sizes.latency_s)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        res = measure(parts, spec, Path(tmp) / "log.jsonl")
    close = res["stages"]["close_to_label"]
    return {"k": sizes.k, "seconds": sizes.latency_s, "segments": res["segments"],
            "rtf": res["rtf"], "drops": res["drops"],
            "close_to_label_ms": {q: close[q] for q in ("p50", "p95", "p99", "max")}}


def next_count(ok: int, bad: int | None, limit: int) -> int | None:
    """The next stream count to try, knowing `ok` kept up and `bad` (None: none yet) did not:
    double until one fails (at most `limit`), then bisect; None when the answer is known."""
    if bad is None:
        return None if ok >= limit else min(max(2 * ok, 1), limit)
    return None if bad - ok <= 1 else (ok + bad) // 2


def section_streams(sizes: Sizes, deadline: float) -> dict[str, Any]:
    from benchmarks.latency_run import RunSpec
    from benchmarks.latency_streams import run_streams

    parts = _parts(sizes)
    spec = RunSpec(f"K={sizes.k}", k=sizes.k, fast=sizes.fast, seconds=sizes.streams_s)
    ok, bad, runs = 0, None, []
    n = next_count(ok, bad, sizes.max_streams)
    while n is not None and time.monotonic() + 2 * sizes.streams_s < deadline:
        with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
            res = run_streams(parts, replace(spec, name=f"N={n}"), n, tmp)
        runs.append({"streams": n, "kept_up": res["kept_up"], "rtf": res["rtf"],
                     "drops": res["drops"],
                     "close_to_label_p95_ms": res["stages"]["close_to_label"]["p95"]})
        say(f"gpu-check streams N={n}: kept up {res['kept_up']}, RTF {res['rtf']}")
        ok, bad = (n, bad) if res["kept_up"] else (ok, n)
        n = next_count(ok, bad, sizes.max_streams)
    return {"k": sizes.k, "seconds": sizes.streams_s, "max_realtime": ok,
            "complete": n is None, "capped": ok >= sizes.max_streams, "runs": runs}


# ---- report ------------------------------------------------------------------------------------

def machine(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda,
                            "python": platform.python_version(), "cpu_count": os.cpu_count()}
    if device.startswith("cuda"):
        info["device_name"] = torch.cuda.get_device_name(device)
        info["capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
    else:
        info["device_name"] = f"CPU ({platform.machine()})"
    return info


def markdown(report: dict[str, Any]) -> str:
    """The block for benchmarks/RESULTS.md."""
    m, s = report["machine"], report["sections"]
    out = [f"### GPU check: {m['device_name']}" + (" (DRY RUN: CPU, tiny sizes, figures "
                                                    "mean nothing)" if report["dry_run"] else ""),
           "", f"`{report['command']}`; torch {m['torch']}, CUDA {m['cuda']}; "
           f"{report['wall_s']:.0f} s.", ""]
    for name in SECTIONS:
        sec = s.get(name, {})
        out.append(f"**{name}**: " + (f"error: {sec['error']}" if "error" in sec else
                                       f"skipped: {sec['skipped']}" if "skipped" in sec else ""))
        if name == "tests" and "counts" in sec:
            out[-1] += f"`{sec['command']}`: {sec['summary']}"
        elif name == "extractors" and "rows" in sec:
            out += ["", "| network | precision | batch | ms/call | frames/s |",
                    "|---|---|---|---|---|"]
            out += [f"| {r['network']} | {r['precision']} | {r['batch']} | "
                    + (f"{r['ms']} | {r['frames_per_s']} |" if "ms" in r else
                       f"- | {r['error']} |") for r in sec["rows"]]
        elif name == "window" and "rows" in sec:
            out += ["", "| backend | batch | ms/call | windows/s | build s |",
                    "|---|---|---|---|---|"]
            out += [f"| {r['backend']} | {r['batch']} | "
                    + (f"{r['ms']} | {r['windows_per_s']} | {r['build_s']} |" if "ms" in r else
                       f"- | {r['error']} | - |") for r in sec["rows"]]
            out += [f"- {b}: {why}" for b, why in sec.get("not_run", {}).items()]
        elif name == "latency" and "close_to_label_ms" in sec:
            c = sec["close_to_label_ms"]
            out[-1] += (f"K = {sec['k']}, {sec['segments']} segments: close -> label p50 "
                        f"{c['p50']:.1f} / p95 {c['p95']:.1f} / p99 {c['p99']:.1f} ms, "
                        f"RTF {sec['rtf']}, drops {sec['drops']}")
        elif name == "streams" and "max_realtime" in sec:
            out[-1] += (f"K = {sec['k']}: {sec['max_realtime']} real-time streams"
                        + (" (the cap)" if sec["capped"] else "")
                        + ("" if sec["complete"] else " (search cut short by the budget)")
                        + "; tried " + ", ".join(f"{r['streams']}{'' if r['kept_up'] else ' x'}"
                                                 for r in sec["runs"]))
        out.append("")
    return "\n".join(out)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from model.errors import UserError

    if not torch_ok(torch.__version__):
        raise UserError(f"torch {torch.__version__} is too old: the GPU check needs torch >= "
                        f"{MIN_TORCH[0]}.{MIN_TORCH[1]}")
    if not args.dry_run and not torch.cuda.is_available():
        raise UserError(f"no CUDA device (torch {torch.__version__}, CUDA {torch.version.cuda}): "
                        "run this on a GPU machine, or --dry-run to check the code on a CPU")
    sizes = DRY if args.dry_run else REAL
    start = time.monotonic()
    deadline = start + args.budget_s
    sections: dict[str, Any] = {}
    for name in args.sections:
        if time.monotonic() >= deadline:
            sections[name] = {"skipped": "out of time"}
            continue
        say(f"gpu-check: {name}")
        t0 = time.monotonic()
        try:
            sections[name] = SECTION_RUNS[name](sizes, deadline)
        except Exception as e:  # one broken section does not hide the others
            sections[name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
        sections[name]["wall_s"] = round(time.monotonic() - t0, 1)
    return {"format": "jca-live-gpu-check", "version": 1, "dry_run": args.dry_run,
            "command": "python -m benchmarks.gpu_check " + " ".join(args.argv),
            "machine": machine(sizes.device), "sections": sections,
            "wall_s": round(time.monotonic() - start, 1)}


SECTION_RUNS: dict[str, Callable[[Sizes, float], dict[str, Any]]] = {
    "tests": section_tests, "extractors": section_extractors, "window": section_window,
    "latency": section_latency, "streams": section_streams}


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check",
                                 description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--out", default="runs/gpu-check", type=Path,
                    help="folder of gpu-check.json and gpu-check.md (default runs/gpu-check)")
    ap.add_argument("--dry-run", action="store_true",
                    help="CPU only, tiny sizes: checks the code, measures nothing")
    ap.add_argument("--budget-s", type=float, default=BUDGET_S,
                    help=f"no section starts after this many seconds (default {BUDGET_S:g})")
    ap.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    a = ap.parse_args(argv)
    a.argv = argv
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    report = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu-check.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "gpu-check.md").write_text(markdown(report))
    say(f"gpu-check: {args.out / 'gpu-check.json'}, {args.out / 'gpu-check.md'} "
        f"({report['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    from model.errors import run_cli

    run_cli(main)
