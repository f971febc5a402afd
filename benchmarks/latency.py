"""Latency of the whole streaming pipeline, per stage, in one command (docs/BENCHMARKS.md).

    python -m benchmarks.latency --synthetic --random-weights                   # 20 s, real time
    python -m benchmarks.latency --replay clip.mp4 --checkpoint runs/jca.pt --fast
    python -m benchmarks.latency --synthetic --random-weights --compare incremental --repeat 2 \\
        --streams 1 2 4 --json runs/latency.json
    python -m benchmarks.latency --synthetic --random-weights --fast --duration 8 \\
        --compare frames backends
    python -m benchmarks.latency --synthetic --random-weights --device cuda --streams 50 100 150

Takes main.py's source and model flags and runs the real pipeline (main.py's runtime,
streamer.runtime.load_runtime, assembled with each run's source: streamer.runtime.assemble) on a
replayed file or a synthetic stream, paced in real time (default, --realtime) or as fast as it
goes (--fast). Reports, per stage, p50 / p95 / p99 / max latency (benchmarks/latency_run.py
says what each stage is), the segment-close -> label latency, the real-time factor (compute time
per second of stream), drops, and the device, backend, precision and frames per segment used.
Writes JSON (--json), a markdown table (stdout and --markdown) and a PNG of the stage
distributions (--png).

Comparisons (--compare, each variant --compare-seconds long, in the main run's mode, repeated
--repeat times interleaved; ratios are variant / baseline within the same repeat):
  incremental  VGG19 on each selected frame as it arrives vs all K frames at segment close
  backends     every window-model backend that runs on the device (--backends to pick)
  frames       frames per segment (--frames, default 1 2 4 8 16)
--streams N ...: N concurrent real-time streams of the same source on one device, VGG19,
VGGish and the window model each a shared worker batching across streams; tried in order, the
sweep stops at the first N that falls behind (real-time factor >= 1 or drops).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from benchmarks.latency_report import markdown, plot
from benchmarks.latency_run import Parts, RunSpec, measure
from benchmarks.latency_streams import run_streams
from model.errors import UserError, run_cli
from model.limits import check_frames_per_segment, check_positive, check_range
from streamer.options import GPU_FRAMES, add_source_and_model_args, app_options

COMPARISONS = ("incremental", "backends", "frames")
FRAMES = (1, 2, 4, 8, 16)
GPU_CLOSE_TO_LABEL_P99_MS = 5.0
GPU_STREAMS = 100
CPU_SLACK_MS = 50.0


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    add_source_and_model_args(ap)
    ap.add_argument("--realtime", action="store_true",
                    help="pace the stream like a live one (the default; excludes --fast)")
    ap.add_argument("--compare", nargs="+", default=[], choices=COMPARISONS, metavar="WHAT",
                    help=f"side-by-side comparisons: {', '.join(COMPARISONS)}")
    ap.add_argument("--compare-seconds", type=float, default=8.0, metavar="S",
                    help="stream length of each compared run (default 8)")
    ap.add_argument("--repeat", type=int, default=1, metavar="R",
                    help="run each comparison R times, interleaved (default 1)")
    ap.add_argument("--frames", type=int, nargs="+", default=list(FRAMES), metavar="K",
                    help="frames per segment for --compare frames (default 1 2 4 8 16)")
    ap.add_argument("--backends", nargs="+", metavar="NAME",
                    help="for --compare backends (default: every one that runs on the device)")
    ap.add_argument("--streams", type=int, nargs="+", metavar="N",
                    help="concurrent real-time streams to try, in order")
    ap.add_argument("--streams-seconds", type=float, default=8.0, metavar="S",
                    help="stream length of each --streams run (default 8)")
    ap.add_argument("--json", default="runs/latency.json", metavar="OUT",
                    help="JSON report (default runs/latency.json)")
    ap.add_argument("--markdown", metavar="OUT", help="markdown table (default: the JSON's "
                    "name with .md); it also goes to stdout")
    ap.add_argument("--png", metavar="OUT", help="stage distributions (default: the JSON's name "
                    "with .png)")
    a = ap.parse_args(argv)
    if a.camera is not None:
        raise UserError("benchmarks.latency measures a replayed file or a synthetic stream: "
                        "use --replay FILE or --synthetic instead of --camera")
    if a.fast and a.realtime:
        raise UserError("--fast and --realtime exclude each other: pick one")
    check_positive("--compare-seconds", a.compare_seconds)
    check_positive("--streams-seconds", a.streams_seconds)
    check_range("--repeat", a.repeat, 1)
    for k in a.frames:
        check_frames_per_segment(k)
    for n in a.streams or ():
        check_range("--streams", n, 1)
    return a


def available_backends(device: str) -> tuple[list[str], dict[str, str]]:
    """Window-model backends that run on `device` (auto left out: it is one of them), and
    why each other one does not."""
    from model.backends.probe import BACKENDS, unavailable

    ok, skipped = [], {}
    for name in BACKENDS:
        if name == "auto":
            continue
        why = unavailable(name, device)
        if why is None:
            ok.append(name)
        else:
            skipped[name] = why
    return ok, skipped


def ratios(runs: list[dict], base: list[dict], stage: str, q: str) -> list[float | None]:
    out: list[float | None] = []
    for r, b in zip(runs, base, strict=True):
        d = b["stages"][stage][q]
        out.append(round(r["stages"][stage][q] / d, 3) if d > 0 else None)
    return out


def rtf_ratios(runs: list[dict], base: list[dict]) -> list[float | None]:
    return [round(r["rtf"] / b["rtf"], 3) if r["rtf"] and b["rtf"] else None
            for r, b in zip(runs, base, strict=True)]


def variant_summary(runs: list[dict], base: list[dict]) -> dict[str, Any]:
    """One variant over its repeats: medians of its percentiles, ratios per repeat."""
    def med(stage: str, q: str) -> float:
        return round(statistics.median([r["stages"][stage][q] for r in runs]), 3)

    return {
        "variant": runs[0]["name"], "k": runs[0]["k"], "mode": runs[0]["mode"],
        "close_to_label": {q: med("close_to_label", q) for q in ("p50", "p95", "p99", "max")},
        "extraction_p50": med("extraction", "p50"), "model_p50": med("model", "p50"),
        "frame_p50": med("frame", "p50"), "rtf": [r["rtf"] for r in runs],
        "drops": sum(sum(r["drops"].values()) for r in runs),
        "ratio_close_to_label_p50": ratios(runs, base, "close_to_label", "p50"),
        "ratio_close_to_label_p95": ratios(runs, base, "close_to_label", "p95"),
        "ratio_model_p50": ratios(runs, base, "model", "p50"),
        "ratio_rtf": rtf_ratios(runs, base),
    }


def compare(parts: Parts, name: str, title: str, variants: list[RunSpec], repeat: int,
            tmp: Path, skipped: dict[str, str] | None = None) -> dict[str, Any]:
    """Every variant `repeat` times, interleaved (A B C A B C ...), side by side."""
    runs: list[dict] = []
    for r in range(repeat):
        for i, spec in enumerate(variants):
            res = measure(parts, spec, tmp / f"{name}-{i}-{r}.jsonl")
            res["repeat"] = r
            runs.append(res)
            c = res["stages"]["close_to_label"]
            say(f"{name} [{spec.name}] repeat {r + 1}/{repeat}: close->label p50 "
                f"{c['p50']:.1f} ms, p95 {c['p95']:.1f} ms, RTF {res['rtf']}, "
                f"load {res['load_avg_1m'][1]}")
    by_variant = [[x for x in runs if x["name"] == spec.name] for spec in variants]
    return {"name": name, "title": title, "baseline": variants[0].name,
            "variants": [variant_summary(v, by_variant[0]) for v in by_variant],
            "skipped": skipped or {}, "runs": runs}


def stream_sweep(parts: Parts, ns: list[int], spec: RunSpec, tmp: Path) -> dict[str, Any]:
    runs, best = [], 0
    for n in ns:
        folder = tmp / f"streams-{n}"
        folder.mkdir()
        res = run_streams(parts, replace(spec, name=f"N={n}"), n, folder)
        runs.append(res)
        say(f"streams N={n}: RTF (worst) {res['rtf']}, drops {res['drops']}, close->label p95 "
            f"{res['stages']['close_to_label']['p95']:.1f} ms, load {res['load_avg_1m'][1]}")
        if not res["kept_up"]:
            break
        best = max(best, n)
    return {"mode": "realtime", "k": spec.k, "seconds": spec.seconds, "backend": spec.backend,
            "runs": runs, "max_realtime": best}


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets for this device; `met` None where this run did not measure them."""
    cfg, main = report["config"], report["main"]
    stages = main["stages"]
    out: list[dict[str, Any]] = []
    drops = sum(main["drops"].values())
    if cfg["device"] == "cpu":
        at_default = cfg["frames_default"] and main["k"] == cfg["k"]
        out.append({"target": "real time at the CPU default K (--frames-per-segment auto) "
                              "(RTF < 1, no drops)",
                    "measured": f"RTF {main['rtf']}, drops {drops} (K = {main['k']})",
                    "limit": "< 1, 0",
                    "met": (main["rtf"] < 1 and drops == 0) if at_default else None})
        limit = stages["frame"]["p50"] + CPU_SLACK_MS
        p95 = stages["close_to_label"]["p95"]
        out.append({"target": "segment close -> label p95 < one frame's VGG19 (p50) + 50 ms",
                    "measured": f"{p95:.1f} ms", "limit": f"{limit:.1f} ms",
                    "met": p95 < limit if at_default and stages["frame"]["n"] else None})
    else:
        p99 = stages["close_to_label"]["p99"]
        out.append({"target": f"GPU: segment close -> label p99 < "
                              f"{GPU_CLOSE_TO_LABEL_P99_MS:g} ms at K = {GPU_FRAMES}",
                    "measured": f"{p99:.2f} ms (K = {main['k']})",
                    "limit": f"{GPU_CLOSE_TO_LABEL_P99_MS:g} ms",
                    "met": p99 < GPU_CLOSE_TO_LABEL_P99_MS if main["k"] == GPU_FRAMES else None})
        s = report.get("streams")
        out.append({"target": f"GPU: >= {GPU_STREAMS} real-time streams at K = {GPU_FRAMES}",
                    "measured": "-" if not s else f"{s['max_realtime']} (K = {s['k']})",
                    "limit": f">= {GPU_STREAMS}",
                    "met": None if not s or s["k"] != GPU_FRAMES
                    else s["max_realtime"] >= GPU_STREAMS})
    return out


def machine(device: str) -> dict[str, Any]:
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(device)
    else:
        name = f"{os.cpu_count()}-core CPU ({platform.machine()})"
    return {"device_name": name, "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version()}


def run(a: argparse.Namespace, parts: Parts, command: str) -> dict[str, Any]:
    """Every run the flags ask for; the report (JSON object)."""
    base = RunSpec("main", k=parts.k, fast=a.fast, seconds=a.duration, backend=a.backend,
                   lookahead=parts.runtime.lookahead)
    with tempfile.TemporaryDirectory(prefix="jca-latency-") as tmp_name:
        tmp = Path(tmp_name)
        parts.warm_up(a.backend)
        say(f"main run: {'fast' if a.fast else 'real time'}, K = {parts.k}, {a.backend} on "
            f"{parts.device}")
        main = measure(parts, base, tmp / "main.jsonl")
        say(f"main: close->label p50 {main['stages']['close_to_label']['p50']:.1f} ms, p95 "
            f"{main['stages']['close_to_label']['p95']:.1f} ms, RTF {main['rtf']}")
        short = replace(base, seconds=a.compare_seconds)
        comparisons = []
        if "incremental" in a.compare:
            comparisons.append(compare(
                parts, "incremental",
                f"Incremental extraction vs the K = {parts.k} selected frames at close",
                [replace(short, name="incremental"),
                 replace(short, name="all at close", incremental=False)], a.repeat, tmp))
        if "backends" in a.compare:
            names, skipped = available_backends(parts.device)
            if a.backends:
                skipped = {n: w for n, w in skipped.items() if n in a.backends}
                names = [n for n in a.backends if n not in skipped]
            names = sorted(names, key=lambda n: n != "eager")  # eager is the baseline
            specs = []
            for n in names:
                try:
                    parts.backend(n)
                except UserError as e:
                    skipped[n] = str(e)
                    continue
                specs.append(replace(short, name=n, backend=n))
            if specs:
                comparisons.append(compare(parts, "backends", "Window-model backends", specs,
                                           a.repeat, tmp, skipped))
        if "frames" in a.compare:
            comparisons.append(compare(
                parts, "frames", "Frames per segment",
                [replace(short, name=f"K={k}", k=k) for k in a.frames], a.repeat, tmp))
        streams = None
        if a.streams:
            streams = stream_sweep(parts, a.streams, replace(base, fast=False,
                                                             seconds=a.streams_seconds), tmp)
    picked = parts.backends[a.backend]
    report = {
        "command": command, "machine": machine(parts.device),
        "config": {"source": parts.opts.source if parts.opts.source != "replay"
                   else f"replay {Path(parts.opts.replay or '').name}",
                   "device": parts.device, "backend": a.backend,
                   "backend_picked": picked.name,  # what auto resolved to
                   "backend_precision": picked.precision,
                   "extractor_precision": parts.runtime.extractor_precision, "k": parts.k,
                   "frames_default": parts.opts.frames_per_segment is None,
                   "frames_reason": parts.runtime.frames_reason,
                   "lookahead": parts.runtime.lookahead,
                   **parts.runtime.provenance.fields(),
                   "setup_s": parts.setup_s},
        "main": main, "comparisons": comparisons, "streams": streams,
    }
    report["targets"] = targets(report)
    return report


def write(report: dict[str, Any], a: argparse.Namespace) -> str:
    out = Path(a.json)
    text = markdown(report)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1) + "\n")
        md = Path(a.markdown) if a.markdown else out.with_suffix(".md")
        md.parent.mkdir(parents=True, exist_ok=True)
        md.write_text(text + "\n")
        png = plot(report, a.png if a.png else out.with_suffix(".png"))
    except OSError as e:
        raise UserError(f"cannot write the report ({e}); pass writable --json/--markdown/--png "
                        "paths") from None
    say(f"wrote {out}, {md}, {png}")
    return text


def benchmark(argv: list[str], parts: Parts | None = None) -> dict[str, Any]:
    """Run what the flags ask for, write the files; the report. `parts`: a runtime made of
    stand-ins (tests); by default main.py's runtime for the same flags."""
    a = parse_args(argv)
    for path in (a.json, a.markdown, a.png):  # fail now, not after minutes of measuring
        folder = Path(path or a.json).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create {folder} ({e.strerror}); pass writable "
                            "--json/--markdown/--png paths") from None
        if not os.access(folder, os.W_OK):
            raise UserError(f"{folder} is not writable; pass writable --json/--markdown/--png "
                            "paths")
    opts = app_options(a, log=None, events=None, headless=True)
    parts = parts or Parts.load(opts)
    report = run(a, parts, "python -m benchmarks.latency " + shlex.join(argv))
    print(write(report, a), flush=True)
    return report


def main(argv: list[str] | None = None) -> int:
    benchmark(sys.argv[1:] if argv is None else argv)
    return 0


if __name__ == "__main__":
    run_cli(main)
