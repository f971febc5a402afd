"""The must-show at full width: the paper preset against its audio-only and visual-only
baselines on synthetic data whose classes need both modalities, trained on the CPU.

    python -m benchmarks.synthetic_comparison                  # 300 clips, 15 epochs, 1 thread
    python -m benchmarks.synthetic_comparison --seeds 0 1 2 --preset reference

Same protocol for every row (cross-entropy, Adam lr 2e-3, batch 16, validation every 3 epochs,
best-on-validation); pooled test accuracy and wall time per row. tests/test_train.py runs the
same comparison at a quarter of the widths.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from model.checkpoint import load_checkpoint
from model.config import PRESETS
from model.data import AVEPaths, open_dataset
from model.evaluate import evaluate
from model.protocol import TrainOptions
from model.synthetic import make_dataset
from model.train import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=300)
    ap.add_argument("--classes", type=int, default=9)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="dataset and model seeds")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"load average {os.getloadavg()[0]:.1f}, torch threads {args.threads}")
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            make_dataset(tmp, args.clips, args.classes, seed)
            with open_dataset(AVEPaths.from_dir(tmp)) as data:
                for ablation in (None, "audio-only", "visual-only"):
                    opts = TrainOptions(epochs=args.epochs, lr=2e-3, batch_size=16, loss="ce",
                                        val_every=3, seed=seed, preset=args.preset,
                                        ablation=ablation)
                    t0 = time.perf_counter()
                    out = os.path.join(tmp, "model.pt")
                    result = train(data, out, opts, log=None)
                    model, ckpt = load_checkpoint(out)
                    report, _ = evaluate(model, ckpt, data, "test", streaming=False)
                    print(f"seed {seed} {args.preset} {ablation or 'full'}: test "
                          f"{report['accuracy']:.2%} (val {result.best_val_accuracy:.2%} at "
                          f"epoch {result.best_epoch}), {time.perf_counter() - t0:.0f} s",
                          flush=True)
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
