"""Replay a generated file through the whole streaming pipeline and time it.

    .venv/bin/python -m benchmarks.replay_realtime                    # 20 s file, real time
    .venv/bin/python -m benchmarks.replay_realtime --fast -k 1 2 4    # throughput per K

main.py's runtime with --random-weights (real extractors and the paper-preset JCANet with
random seeded weights: speed does not depend on the values), loaded once, on the CPU with main.py's
defaults: extractor path auto and `--frames-per-segment auto` (the K the probe picks) unless -k is
given. Real time: the wall time should equal the file's duration (plus the last segment's
latency), with no drops. Reports the K and why, wall time, RTF (wall over the file's duration),
drops, segment close -> label p50/p95/p99 (`total`), the per-stage latency percentiles of the
prediction records (ms) and the VGG19 time per computed frame.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from streamer.options import AppOptions, frames_arg
from streamer.pipeline import Summary, percentile
from streamer.replay import replay_source
from streamer.runtime import Runtime, assemble, load_runtime
from streamer.sinks import JsonlLog
from streamer.synthetic import Script, write_media


def run_once(rt: Runtime, video: Path, k: int, fast: bool, log: Path) -> Summary:
    pipe = assemble(rt, replay_source(video, fast=fast), [JsonlLog(log)], frames_per_segment=k)
    return pipe.run()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("-k", "--frames-per-segment", type=frames_arg, nargs="+", default=[None],
                   metavar="K", help="K values to run, or auto (the default)")
    p.add_argument("--fast", action="store_true", help="as fast as possible (throughput)")
    p.add_argument("--size", default="640x480", help="frame WxH of the generated file")
    p.add_argument("--fps", type=float, default=25.0)
    args = p.parse_args()
    w, h = (int(x) for x in args.size.split("x"))
    rt = load_runtime(AppOptions(source="replay", random_weights=True, device="cpu",
                                 extractor_path="auto"))
    with tempfile.TemporaryDirectory() as tmp:
        video = write_media(Path(tmp) / "bench.mkv", Script.demo(args.seconds, size=(h, w)),
                            fps=args.fps, audio_rate=44100, channels=2)
        for k in args.frames_per_segment:
            k = k or rt.frames_per_segment
            t0 = time.monotonic()
            s = run_once(rt, video, k, args.fast, Path(tmp) / "log.jsonl")
            wall = time.monotonic() - t0
            close = s.stage_ms["total"]
            row = {"k": k, "why": rt.frames_reason if k == rt.frames_per_segment else "-k",
                   "mode": "fast" if args.fast else "real time",
                   "file_s": args.seconds, "wall_incl_open_s": round(wall, 2),
                   "rtf": round(s.wall_s / args.seconds, 3),
                   "close_to_label_ms": {f"p{q}": round(percentile(close, q), 1)
                                         for q in (50, 95, 99)},
                   "segments_per_s": round(s.segments / s.wall_s, 2), **s.to_dict(),
                   "load_avg_1m": round(os.getloadavg()[0], 2)}
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
