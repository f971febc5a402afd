"""Costs of calibration on the CPU: the A/V offset measurement, and one JCA window per precision.

    python -m benchmarks.calibrate                 # sync on a 12 s clip + paper-preset window
    python -m benchmarks.calibrate --rounds 5 --runs 30 --threads 1

Sync: a generated 12 s, 25 fps, 64x48 flash+click clip (calibrate.pattern) decoded by the
streamer's replay source (--fast) and measured (calibrate.sync.record + measure), and the
analysis alone (avsync.estimate_offset) on the recorded arrays. Precision: the paper-preset
JCANet (29 classes, random weights) on one window at batch 1, fp32 eager against the ways
calibrate.precision runs the reduced precisions on the CPU; per round the median of --runs
calls, rounds interleaved across precisions, reported as the median and spread of round medians
with the load average (the machine is shared).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from calibrate import precision, sync
from calibrate.avsync import estimate_offset
from calibrate.pattern import FlashClick
from model.config import preset
from model.errors import run_cli
from model.network import JCANet
from streamer.replay import replay_source
from streamer.synthetic import write_media


def time_sync(rounds: int) -> tuple[list[float], list[float], float]:
    with tempfile.TemporaryDirectory() as d:
        clip = write_media(Path(d) / "sync.mkv", FlashClick(offset=0.15), fps=25)
        whole, analysis = [], []
        for _ in range(rounds):
            t0 = time.perf_counter()
            rec = sync.record(replay_source(clip, fast=True))
            result = sync.measure(rec)
            whole.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            estimate_offset(rec.audio, 16000, rec.audio_t0, rec.frame_times, rec.change)
            analysis.append(time.perf_counter() - t0)
    return whole, analysis, result.offset_ms


def time_precisions(rounds: int, runs: int) -> dict[str, list[float]]:
    torch.manual_seed(0)
    net = JCANet(preset("paper")).eval()
    a = torch.rand(1, 10, 128)
    v = torch.rand(1, 10, 7, 7, 512)
    forwards = {"fp32": precision.eager_forward(net, "cpu")}
    for p, dtype in precision.DTYPES.items():
        forwards[p] = precision.eager_forward(net, "cpu", dtype)
    forwards["int8"] = precision.eager_forward(precision.cpu_int8(net), "cpu")
    out: dict[str, list[float]] = {p: [] for p in forwards}
    for fwd in forwards.values():
        for _ in range(3):
            fwd(a, v)
    for _ in range(rounds):
        for p, fwd in forwards.items():
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                fwd(a, v)
                times.append(time.perf_counter() - t0)
            out[p].append(statistics.median(times))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    whole, analysis, offset = time_sync(args.rounds)
    print(f"load average {load:.1f}, torch threads {torch.get_num_threads()}")
    rounds = ", ".join(f"{1000 * w:.0f}" for w in whole)
    print(f"sync, 12 s clip (injected +150 ms, measured {offset:+.1f} ms): decode + measure "
          f"{1000 * statistics.median(whole):.0f} ms (rounds {rounds}), analysis alone "
          f"{1000 * statistics.median(analysis):.1f} ms")
    for p, ts in time_precisions(args.rounds, args.runs).items():
        print(f"paper window batch 1, {p}: {1000 * statistics.median(ts):.2f} ms "
              f"(round medians {1000 * min(ts):.2f} to {1000 * max(ts):.2f})")
    print(f"load average after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    run_cli(main)
