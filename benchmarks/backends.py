"""Backends side by side: JCA window latency and throughput, parity with eager fp32, extractor
frames/s. Prints markdown tables (paste into benchmarks/RESULTS.md, "Backends").

    python -m benchmarks.backends                     # CPU: eager/export/compile/aot
    python -m benchmarks.backends --device cuda --precisions fp32,fp16   # + tensorrt if present
    python -m benchmarks.backends --checkpoint runs/jca.pt --threads 1 --rounds 7

The checkpoint used in RESULTS.md (paper preset trained on synthetic AVE-format data):
    python -m model.synthetic --out runs/backends/synth --clips 400 --classes 29 --seed 0
    python -m model.train --data runs/backends/synth --out runs/backends/jca_synth.pt \
        --epochs 60 --lr 1e-3 --loss ce --batch-size 32 --threads 1

Latency: `--rounds` rounds of `--calls` batch-1 calls; the median call of each round, then the
median (and range) over rounds. Throughput: windows/s at `--batch` (one call per batch).
Parity: labels (argmax per segment) and softmax probabilities of every backend and precision
against eager fp32, on seeded random windows and on clips of a synthetic AVE-format dataset.
A backend that cannot run here is listed with the reason.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import torch

from model.backends import build_backend, build_extractor_backend, unavailable
from model.checkpoint import load_checkpoint
from model.config import preset
from model.errors import UserError, run_cli
from model.extractors.vgg19 import VGG19
from model.extractors.vggish import VGGish
from model.limits import resolve_device
from model.network import JCANet
from model.synthetic import make_dataset


def timed_rounds(fn: Callable[[], object], rounds: int, calls: int) -> tuple[float, float, float]:
    """(median, min, max) over rounds of each round's median call time, in ms."""
    fn()
    meds = []
    for _ in range(rounds):
        ts = []
        for _ in range(calls):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        meds.append(statistics.median(ts) * 1e3)
    return statistics.median(meds), min(meds), max(meds)


def parity_inputs(model: JCANet, n_windows: int, n_clips: int,
                  clips_seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Seeded random windows, and the first clips of `model.synthetic`'s dataset for a seed
    (seed 0 = `python -m model.synthetic`'s default, what the benchmark checkpoint saw)."""
    cfg = model.cfg
    g = torch.Generator().manual_seed(1)
    hw = cfg.visual_hw
    windows = (torch.rand(n_windows, cfg.segments, cfg.audio_dim, generator=g),
               torch.rand(n_windows, cfg.segments, hw, hw, cfg.visual_dim, generator=g))
    out = {"windows": windows}
    if cfg.segments == 10 and (cfg.audio_dim, cfg.visual_dim, hw) == (128, 512, 7):
        with tempfile.TemporaryDirectory() as d:
            make_dataset(d, n_clips=n_clips, n_classes=cfg.num_classes, seed=clips_seed)
            with h5py.File(Path(d) / "audio_feature.h5") as fa, \
                    h5py.File(Path(d) / "visual_feature.h5") as fv:
                out["clips"] = (torch.from_numpy(fa["avadataset"][()]).float(),
                                torch.from_numpy(fv["avadataset"][()]).float())
    return out


def agreement(ref: torch.Tensor, out: torch.Tensor) -> tuple[float, float]:
    """(% of segment labels equal, largest softmax probability difference)."""
    same = (ref.argmax(-1) == out.argmax(-1)).float().mean().item() * 100
    dp = (ref.softmax(-1) - out.softmax(-1)).abs().max().item()
    return same, dp


def window_rows(model: JCANet, device: str, names: list[str], precisions: list[str],
                batch: int, rounds: int, calls: int, cache_dir: str | None,
                parity: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> list[str]:
    cfg = model.cfg
    ref = build_backend("eager", model, device, "fp32", batch_size=64)
    refs = {k: ref(*v) for k, v in parity.items()}
    rows = []
    for name in names:
        if (why := unavailable(name, device)) is not None:
            rows.append(f"| {name} | - | cannot run: {why} | | | |")
            print(rows[-1], flush=True)
            continue
        for precision in precisions:
            try:
                t0 = time.perf_counter()
                one = build_backend(name, model, device, precision, batch_size=1,
                                    cache_dir=cache_dir)
                build_s = time.perf_counter() - t0
                many = build_backend(name, model, device, precision, batch_size=batch,
                                     cache_dir=cache_dir)
            except UserError as e:
                rows.append(f"| {name} | {precision} | cannot run: {e} | | | |")
                print(rows[-1], flush=True)
                continue
            hw = cfg.visual_hw
            a1 = torch.rand(1, cfg.segments, cfg.audio_dim)
            v1 = torch.rand(1, cfg.segments, hw, hw, cfg.visual_dim)
            lat = timed_rounds(lambda one=one, a1=a1, v1=v1: one(a1, v1), rounds, calls)
            ab = a1.expand(batch, -1, -1).contiguous()
            vb = v1.expand(batch, -1, -1, -1, -1).contiguous()
            thr = timed_rounds(lambda many=many, ab=ab, vb=vb: many(ab, vb), rounds,
                               max(2, calls // 10))
            par = []
            for k, (a, v) in parity.items():
                same, dp = agreement(refs[k], many(a, v))
                par.append(f"{k}: {same:.2f}% / {dp:.1e}")
            cache = one.cache.state if one.cache is not None else "-"
            rows.append(f"| {name} | {precision} | {build_s:.1f} s ({cache}) | "
                        f"{lat[0]:.2f} ({lat[1]:.2f}-{lat[2]:.2f}) | "
                        f"{batch * 1e3 / thr[0]:.0f} | {'; '.join(par)} |")
            print(rows[-1], flush=True)
    return rows


def extractor_rows(which: list[str], device: str, names: list[str], precisions: list[str],
                   batch: int, rounds: int, cache_dir: str | None) -> list[str]:
    rows = []
    for net_name in which:
        net = VGG19() if net_name == "vgg19" else VGGish()
        net.init_random(0)
        shape = (3, 224, 224) if net_name == "vgg19" else (1, 96, 64)
        x = torch.randn(batch, *shape) * (50 if net_name == "vgg19" else 2)
        ref = build_extractor_backend("eager", net, device, "fp32", batch_size=batch)(x)
        for name in names:
            if (why := unavailable(name, device)) is not None:
                rows.append(f"| {net_name} | {name} | - | cannot run: {why} | | |")
                print(rows[-1], flush=True)
                continue
            for precision in precisions:
                try:
                    t0 = time.perf_counter()
                    be = build_extractor_backend(name, net, device, precision, batch_size=batch,
                                                 cache_dir=cache_dir)
                    build_s = time.perf_counter() - t0
                except UserError as e:
                    rows.append(f"| {net_name} | {name} | {precision} | cannot run: {e} | | |")
                    print(rows[-1], flush=True)
                    continue
                ms = timed_rounds(lambda be=be, x=x: be(x), rounds, 1)
                rel = ((be(x) - ref).abs().max() / ref.abs().max()).item()
                rows.append(f"| {net_name} | {name} | {precision} | {build_s:.1f} s | "
                            f"{batch * 1e3 / ms[0]:.1f} ({batch * 1e3 / ms[2]:.1f}-"
                            f"{batch * 1e3 / ms[1]:.1f}) | {rel:.1e} |")
                print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--checkpoint", help="a trained checkpoint (default: paper preset, seed 0)")
    ap.add_argument("--backends", default="eager,export,compile,aot,tensorrt")
    ap.add_argument("--precisions", default=None, help="default fp32,bf16 (CPU), fp32,fp16 (GPU)")
    ap.add_argument("--batch", type=int, default=16, help="windows per call for throughput")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=50, help="batch-1 calls per round")
    ap.add_argument("--windows", type=int, default=256, help="random windows for parity")
    ap.add_argument("--clips", type=int, default=128, help="synthetic clips for parity")
    ap.add_argument("--clips-seed", type=int, default=0, help="model.synthetic seed of the clips")
    ap.add_argument("--extractors", default="vggish,vgg19", help="'' to skip")
    ap.add_argument("--extractor-backends", default="eager,compile,aot,tensorrt")
    ap.add_argument("--extractor-batch", type=int, default=8)
    ap.add_argument("--extractor-rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument("--cache-dir", default=None, help="engine cache (default: a fresh temp dir)")
    a = ap.parse_args()
    device = resolve_device(a.device)
    if a.threads:
        torch.set_num_threads(a.threads)
    cuda = device.startswith("cuda")
    precisions = (a.precisions or ("fp32,fp16" if cuda else "fp32,bf16")).split(",")
    names = [n for n in a.backends.split(",") if n]
    if a.checkpoint:
        model, _ = load_checkpoint(a.checkpoint)
        what = a.checkpoint
    else:
        torch.manual_seed(0)
        model = JCANet(preset("paper")).eval()
        what = "paper preset, random weights (seed 0)"
    cache_tmp = None if a.cache_dir else tempfile.TemporaryDirectory()
    cache_dir = a.cache_dir or cache_tmp.name
    gpu = f", {torch.cuda.get_device_name(device)}" if cuda else ""
    print(f"device {device}{gpu}; torch {torch.__version__}; threads {torch.get_num_threads()}; "
          f"load average {os.getloadavg()[0]:.1f}; model: {what}\n")
    parity = parity_inputs(model, a.windows, a.clips, a.clips_seed)
    print("| backend | precision | build (cache) | batch-1 latency ms, median (range) | "
          f"windows/s at batch {a.batch} | labels equal / max prob diff vs eager fp32 |")
    print("|---|---|---|---|---|---|")
    if names:
        window_rows(model, device, names, precisions, a.batch, a.rounds, a.calls, cache_dir,
                    parity)
    which = [w for w in a.extractors.split(",") if w]
    if which:
        print(f"\n| net | backend | precision | build | frames/s at batch {a.extractor_batch}, "
              "median (range) | max abs diff / max abs (eager fp32) |")
        print("|---|---|---|---|---|---|")
        extractor_rows(which, device, [n for n in a.extractor_backends.split(",") if n],
                       precisions, a.extractor_batch, a.extractor_rounds, cache_dir)
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")
    if cache_tmp is not None:
        cache_tmp.cleanup()


if __name__ == "__main__":
    run_cli(main)
