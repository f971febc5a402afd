"""Latency of one 10-segment JCA window at batch 1 on the CPU, per preset (eager, inference_mode).

    python -m benchmarks.window_latency                          # paper + reference, 2 threads
    python -m benchmarks.window_latency --ablations --rounds 5 --exported
    python -m benchmarks.window_latency --set embed=128 --set layers=2 --presets paper
    python -m benchmarks.window_latency --write                  # update benchmarks/RESULTS.md

Each round times `--runs` single calls after `--warmup` calls and takes their median; rounds
are interleaved across models so a burst of load from other processes hits all of them alike.
Reported: the median over rounds, the spread of round medians, and the load average, because the
machine is shared and its load moves the figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from model.config import ABLATIONS, PRESETS, preset
from model.errors import UserError, run_cli
from model.network import JCANet, export_window

RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "## JCA window latency"


def time_round(model: torch.nn.Module, audio: torch.Tensor, visual: torch.Tensor, runs: int,
               warmup: int) -> float:
    """Median seconds of one window over `runs` calls."""
    with torch.inference_mode():
        for _ in range(warmup):
            model(audio, visual)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            model(audio, visual)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def parse_overrides(items: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise UserError(f"--set {item!r}: write it as key=value, e.g. --set embed=128")
        value: object = raw
        if raw in ("true", "false"):
            value = raw == "true"
        else:
            for kind in (int, float):
                try:
                    value = kind(raw)
                    break
                except ValueError:
                    pass
        out[key] = value
    return out


def replace_section(text: str, body: str) -> str:
    """Swap this benchmark's section of RESULTS.md (up to the next '## ') for a new one."""
    start = text.find(SECTION)
    if start < 0:
        return text.rstrip("\n") + "\n\n" + body
    end = text.find("\n## ", start + len(SECTION))
    return text[:start] + body + ("" if end < 0 else text[end + 1:])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=list(PRESETS), choices=sorted(PRESETS))
    p.add_argument("--ablations", action="store_true", help="also time every Table 2 row")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every model (repeatable)")
    p.add_argument("--exported", action="store_true",
                   help="also time each model's export_window program (RNNs decomposed)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--write", action="store_true", help=f"write the table into {RESULTS}")
    args = p.parse_args()
    overrides = parse_overrides(args.set)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    models: dict[str, torch.nn.Module] = {}
    for name in args.presets:
        for ablation in (None, *ABLATIONS) if args.ablations else (None,):
            label = name + (f" / {ablation}" if ablation else "")
            try:
                models[label] = JCANet(preset(name, ablation, **overrides)).eval()
            except (TypeError, ValueError) as e:
                raise UserError(f"bad --set for {label}: {e}") from None
    if args.exported:
        for label in list(models):
            models[f"{label} (exported)"] = export_window(models[label]).module()
    audio = torch.rand(1, 10, 128)  # (1, T, 128)
    visual = torch.rand(1, 10, 7, 7, 512)  # (1, T, 7, 7, 512)

    load_before = os.getloadavg()[0]
    rounds: dict[str, list[float]] = {label: [] for label in models}
    for r in range(args.rounds):
        for label, model in models.items():
            rounds[label].append(time_round(model, audio, visual, args.runs, args.warmup))
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(
            f"{label} {rounds[label][-1] * 1e3:.2f} ms" for label in models), flush=True)
    load_after = os.getloadavg()[0]

    cmd = "python -m benchmarks.window_latency " + " ".join(
        a for a in sys.argv[1:] if a != "--write")
    lines = [
        SECTION, "",
        f"Command: `{cmd.strip()}`  ",
        f"Device: 2-core CPU (this dev machine), {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {args.threads} intra-op threads, batch 1, "
        "eager, `torch.inference_mode()`, float32.  ",
        f"Each figure: median over {args.rounds} rounds of the median of {args.runs} calls "
        f"after {args.warmup} warm-up calls. Load average (1 min) {load_before:.1f} before, "
        f"{load_after:.1f} after: other processes shared the cores while this ran.",
        *([f"Config overrides: `{overrides}`.", ""] if overrides else [""]),
        "| model | parameters | ms / window (median) | round medians, ms |",
        "|---|---:|---:|---|",
    ]
    for label, model in models.items():
        med = statistics.median(rounds[label]) * 1e3
        spread = ", ".join(f"{t * 1e3:.2f}" for t in rounds[label])
        params = sum(p.numel() for p in model.parameters())
        lines.append(f"| {label} | {params:,} | {med:.2f} | {spread} |")
    body = "\n".join(line for line in lines) + "\n"
    print(body)
    if args.write:
        text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
        RESULTS.write_text(replace_section(text, body))
        print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    run_cli(main)
