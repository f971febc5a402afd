"""Training step of `make demo`: model.train on the demo's cached features, one thread against
torch's default, interleaved so both see the same load.

    .venv/bin/python -m benchmarks.demo                       # after one `make demo`
    .venv/bin/python -m benchmarks.demo --epochs 8 --rounds 2 --work runs/demo

Runs the demo's own training command (streamer.demo.train_cmd: the half-width paper preset,
cross-entropy, lr 2e-3, batch 8) with --threads 1 and without --threads, and reports wall time
and the per-epoch seconds (p50 and max, from the epoch lines). The whole demo is timed with
`time make demo` (first run from an empty runs/demo, then the cached run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from streamer import demo


def train_once(opts: demo.DemoOptions, features: Path, threads: int | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        paths = demo.Paths(Path(tmp), features, Path(tmp), Path(tmp))
        cmd = demo.train_cmd(opts, paths)
        if threads is None:  # torch's default: drop the demo's --threads 1
            i = cmd.index("--threads")
            cmd = cmd[:i] + cmd[i + 2:]
        t0 = time.perf_counter()
        out = subprocess.run(cmd, cwd=demo.ROOT, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t0
    epochs = [json.loads(x)["seconds"] for x in out.stdout.splitlines() if x.startswith("{")]
    return {"threads": threads or "default", "wall_s": wall,
            "epoch_p50_s": statistics.median(epochs), "epoch_max_s": max(epochs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default=demo.DemoOptions.work)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    found = sorted(Path(a.work).resolve().glob("features-*/done.json"))
    if not found:
        raise SystemExit(f"no cached demo features under {a.work}: run `make demo` first")
    opts = replace(demo.DemoOptions(work=a.work), epochs=a.epochs)
    print(f"features: {found[-1].parent}")
    for r in range(a.rounds):
        for threads in (1, None):
            res = train_once(opts, found[-1].parent, threads)
            print(f"round {r + 1}: threads {res['threads']}: {a.epochs} epochs in "
                  f"{res['wall_s']:.1f} s wall, epoch p50 {res['epoch_p50_s']:.2f} s, "
                  f"max {res['epoch_max_s']:.2f} s")


if __name__ == "__main__":
    main()
