"""Latency of one 10-segment JCA window at batch 1 on the CPU, per preset (eager, inference_mode).

    python -m benchmarks.window_latency                          # paper + reference, 2 threads
    python -m benchmarks.window_latency --threads 1 2 --rounds 9 --pause 20
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

from model.backends.export import export_window
from model.config import ABLATIONS, PRESETS, preset
from model.errors import UserError, run_cli
from model.network import JCANet

RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "## JCA window latency"
NOTES = "### Notes"


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


def idle_percent(seconds: float = 2.0) -> float:
    """Share of the machine's CPU time that was idle over the next `seconds` (Linux)."""
    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return fields[3] + fields[4], sum(fields)  # idle + iowait, total

    idle0, total0 = sample()
    time.sleep(seconds)
    idle1, total1 = sample()
    return 100.0 * (idle1 - idle0) / max(total1 - total0, 1)


def wait_until_idle(percent: float, limit: float) -> float:
    """Wait (at most `limit` seconds) for a quiet moment; returns the last idle share seen."""
    deadline = time.monotonic() + limit
    while True:
        idle = idle_percent()
        if idle >= percent or time.monotonic() > deadline:
            return idle


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
    """Swap this benchmark's section of RESULTS.md (up to the next '## ') for a new one,
    keeping its hand-written '### Notes' block."""
    start = text.find(SECTION)
    if start < 0:
        return text.rstrip("\n") + "\n\n" + body
    end = text.find("\n## ", start + len(SECTION))
    old = text[start:] if end < 0 else text[start:end + 1]
    notes = old.find(NOTES)
    kept = "" if notes < 0 else "\n" + old[notes:].rstrip("\n") + "\n"
    return text[:start] + body + kept + ("" if end < 0 else "\n" + text[end + 1:])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=list(PRESETS), choices=sorted(PRESETS))
    p.add_argument("--ablations", action="store_true", help="also time every Table 2 row")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every model (repeatable)")
    p.add_argument("--exported", action="store_true",
                   help="also time each model's export_window program (RNNs decomposed)")
    p.add_argument("--threads", type=int, nargs="+", default=[2],
                   help="intra-op thread counts to time (each round visits all)")
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--pause", type=float, default=0.0, help="seconds to wait between rounds")
    p.add_argument("--wait-idle", type=float, default=0.0, metavar="PCT",
                   help="before each round wait (up to 10 min) until PCT%% of the CPU is idle")
    p.add_argument("--write", action="store_true", help=f"write the table into {RESULTS}")
    args = p.parse_args()
    overrides = parse_overrides(args.set)
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

    loads = [os.getloadavg()[0]]
    idles: list[float] = []
    rounds: dict[tuple[str, int], list[float]] = {
        (label, n): [] for n in args.threads for label in models}
    for r in range(args.rounds):
        if r and args.pause:
            time.sleep(args.pause)
        if args.wait_idle:
            idles.append(wait_until_idle(args.wait_idle, limit=600))
        for (label, threads), times in rounds.items():
            torch.set_num_threads(threads)
            times.append(time_round(models[label], audio, visual, args.runs, args.warmup))
        loads.append(os.getloadavg()[0])
        print(f"round {r + 1}/{args.rounds} (load {loads[-1]:.1f}"
              + (f", idle before {idles[-1]:.0f}%" if idles else "") + "): " + ", ".join(
            f"{label} x{n} {t[-1] * 1e3:.2f} ms" for (label, n), t in rounds.items()), flush=True)

    cmd = "python -m benchmarks.window_latency " + " ".join(
        a for a in sys.argv[1:] if a != "--write")
    lines = [
        SECTION, "",
        "One 10-segment window (audio (1, 10, 128), visual (1, 10, 7, 7, 512)) through JCANet. "
        "Target for the `paper` preset: at most 5 ms per window on 2 CPU cores; the original "
        "reference code takes about 67 ms per clip on this machine (FACTS section 2).", "",
        f"Command: `{cmd.strip()}`  ",
        f"Device: 2-core CPU (this dev machine), {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, batch 1, eager, `torch.inference_mode()`, float32.  ",
        f"Each figure: median over {args.rounds} rounds of the median of {args.runs} calls "
        f"after {args.warmup} warm-up calls; the rounds were interleaved across the rows. "
        f"Load average (1 min) before and after each round: "
        f"{', '.join(f'{x:.1f}' for x in loads)}: other processes shared the 2 cores."
        + (f" Each round started once the CPU was at least {args.wait_idle:.0f}% idle over 2 s "
           f"(idle seen: {', '.join(f'{x:.0f}%' for x in idles)}), so these figures describe a "
           "quiet moment of the machine; without --wait-idle they are slower and vary widely."
           if args.wait_idle else ""),
        *([f"Config overrides: `{overrides}`.", ""] if overrides else [""]),
        "| model | threads | parameters | ms / window (median) | fastest round "
        "| round medians, ms |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for (label, threads), times in rounds.items():
        ms = [t * 1e3 for t in times]
        params = sum(p.numel() for p in models[label].parameters())
        lines.append(f"| {label} | {threads} | {params:,} | {statistics.median(ms):.2f} | "
                     f"{min(ms):.2f} | {', '.join(f'{t:.2f}' for t in ms)} |")
    body = "\n".join(lines) + "\n"
    print(body)
    if args.write:
        text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
        RESULTS.write_text(replace_section(text, body))
        print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    run_cli(main)
