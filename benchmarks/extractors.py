"""Extractor throughput on this machine: VGG19 frames/s and VGGish examples/s, side by side for
fp32 NCHW, fp32 channels_last and bf16 (autocast, channels_last).

    .venv/bin/python -m benchmarks.extractors               # 5 timed repeats per case
    .venv/bin/python -m benchmarks.extractors --reps 9 --device cuda

Random weights (speed does not depend on the values). Cases are interleaved within each repeat
so a burst of load from other processes hits all of them alike; medians of wall time and of
process CPU time (all threads) per item are reported. Batch 1
is the live case (one frame as it arrives, one example per segment); the larger batch is
offline extraction. The log-mel front end (NumPy, per example) is timed too.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import numpy as np
import torch

from model.extractors import RunOptions, vgg19, vggish
from model.extractors.audio import AudioExtractor
from model.extractors.vggish_frontend import segment_example
from model.extractors.visual import VisualExtractor

CASES = {"fp32 NCHW": dict(precision="fp32", channels_last=False),
         "fp32 channels_last": dict(precision="fp32", channels_last=True),
         "bf16 channels_last": dict(precision="bf16", channels_last=True)}


def timed(fn: object, *args: object) -> tuple[float, float]:
    """(wall seconds, process CPU seconds, all threads) of one call."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn(*args)  # type: ignore[operator]
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--frames-batch", type=int, default=8)
    p.add_argument("--examples-batch", type=int, default=10)
    args = p.parse_args()

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (args.frames_batch, 360, 640, 3), dtype=np.uint8)
    segments = rng.normal(0, 0.1, (args.examples_batch, 16000)).astype(np.float32)
    vnet, anet = vgg19.VGG19(), vggish.VGGish()
    vnet.init_random(0)
    anet.init_random(1)
    ext = {}
    for name, kw in CASES.items():  # own copies: channels_last converts a module in place
        vnet, anet = copy.deepcopy(vnet), copy.deepcopy(anet)
        opts = RunOptions(device=args.device, batch_size=max(args.frames_batch,
                                                             args.examples_batch), **kw)
        ext[name] = (VisualExtractor(vnet, "ave", opts), AudioExtractor(anet, "ave", None, opts))

    load0 = os.getloadavg()[0]
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for rep in range(args.reps + 1):  # repeat 0 is the warm-up
        for name, (v, a) in ext.items():
            cases = {("VGG19", "1"): (v.frame_features, frames[:1]),
                     ("VGG19", str(args.frames_batch)): (v.frame_features, frames),
                     ("VGGish", "1"): (a.segments, segments[:1]),
                     ("VGGish", str(args.examples_batch)): (a.segments, segments)}
            for (net, batch), (fn, x) in cases.items():
                wall, cpu = timed(fn, x)
                if rep:
                    times.setdefault((f"{net} {name}", batch), []).append(
                        (wall / len(x), cpu / len(x)))
    frontend = [timed(segment_example, segments[i % len(segments)])[0] for i in range(50)]
    load1 = os.getloadavg()[0]

    base = ext["fp32 NCHW"]
    ref_v = base[0].frame_features(frames[:2])
    ref_a = base[1].segments(segments[:4])
    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.reps} repeats, load average {load0:.1f} -> {load1:.1f}")
    print(f"{'case':34s} {'batch':>5s} {'ms/item':>9s} {'items/s':>8s} {'CPU ms/item':>12s}")
    for (case, batch), ts in times.items():
        wall = statistics.median(t for t, _ in ts)
        cpu = statistics.median(c for _, c in ts)
        print(f"{case:34s} {batch:>5s} {1e3 * wall:9.1f} {1 / wall:8.2f} {1e3 * cpu:12.1f}")
    fe = statistics.median(frontend)
    print(f"{'log-mel front end (NumPy)':34s} {'1':>5s} {1e3 * fe:9.2f} {1 / fe:8.0f}")
    for name, (v, a) in ext.items():
        dv = np.abs(v.frame_features(frames[:2]) - ref_v).max() / np.abs(ref_v).max()
        da = np.abs(a.segments(segments[:4]) - ref_a).max() / max(np.abs(ref_a).max(), 1e-12)
        print(f"max |diff| / max |fp32 NCHW|, {name}: VGG19 {dv:.1e}, VGGish {da:.1e}")


if __name__ == "__main__":
    main()
