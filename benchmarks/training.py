"""Training cost on the CPU: feature reading, memory per batch, and time per clip per preset.

    python -m benchmarks.training                       # 192 float64 clips of the real shapes
    python -m benchmarks.training --clips 256 --presets paper reference --threads 2

Writes a synthetic AVE-format dataset of the released files' shapes and dtype (float64 visual
(N, 10, 7, 7, 512)), then measures: (1) one lazy shuffled pass over it in batches of 64 as
model.data reads it for training (clips/s, and the peak memory numpy allocates meanwhile);
(2) the median time of a training step (forward, backward, Adam) per clip
at batch 64 for each preset; and extrapolates an epoch and the 300-epoch protocol on AVE's 3,339
training clips. Figures on a shared machine are upper bounds: the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
import tracemalloc

import numpy as np
import torch

from model.config import PRESETS, preset
from model.data import AVEPaths, open_dataset
from model.network import JCANet, count_parameters
from model.synthetic import SyntheticOptions, make_dataset
from model.train import compute_loss

AVE_TRAIN_CLIPS = 3339
AVE_EPOCHS = 300


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=192)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--presets", nargs="+", default=["paper", "reference"],
                    choices=sorted(PRESETS))
    ap.add_argument("--steps", type=int, default=3, help="timed training steps per preset")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"load average {os.getloadavg()[0]:.1f}, torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        make_dataset(tmp, args.clips, 29, opts=SyntheticOptions(dtype="float64"))
        size = sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp))
        print(f"wrote {args.clips} float64 clips ({size / 1e9:.2f} GB) in "
              f"{time.perf_counter() - t0:.1f} s")
        with open_dataset(AVEPaths.from_dir(tmp), cache_limit_bytes=0) as data:
            data.splits["train"] = np.arange(args.clips)  # read every clip
            tracemalloc.start()
            t0 = time.perf_counter()
            n = 0
            for audio, _visual, _ in data.batches("train", args.batch_size, seed=0, epoch=1):
                n += len(audio)
            dt = time.perf_counter() - t0
            peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            print(f"lazy shuffled read, batch {args.batch_size}: {n / dt:.0f} clips/s "
                  f"({dt / n * 1000:.1f} ms/clip); peak numpy memory while reading {peak:.0f} MB"
                  f" (one float32 batch is {args.batch_size * 10 * 49 * 512 * 4 / 2**20:.0f}"
                  " MB)")
            audio, visual, labels = data.read(np.arange(args.batch_size) % args.clips)
    a, v, y = torch.from_numpy(audio), torch.from_numpy(visual), torch.from_numpy(labels)
    for name in args.presets:
        torch.manual_seed(0)
        model = JCANet(preset(name, num_classes=29)).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        times = []
        for _ in range(args.steps + 1):  # the first step warms up
            t0 = time.perf_counter()
            loss = compute_loss("msl", model(a, v), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t0)
        per_clip = statistics.median(times[1:]) / args.batch_size
        epoch = per_clip * AVE_TRAIN_CLIPS
        print(f"{name}: {count_parameters(model)['total'] / 1e6:.2f} M params, train step "
              f"{per_clip * 1000:.1f} ms/clip at batch {args.batch_size} (median of "
              f"{args.steps}); AVE epoch ~{epoch / 60:.1f} min, {AVE_EPOCHS} epochs "
              f"~{epoch * AVE_EPOCHS / 3600:.1f} h; peak RSS {peak_rss_mb():.0f} MB")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
