"""N concurrent network streams on this machine, side by side with N replayed files: the
product's many-stream path (one runtime, shared batching workers: streamer.batching,
streamer.multi.run_all) fed by N loopback senders of live MPEG-TS (benchmarks.mpegts_sender),
then by N real-time replays of the same clips.

    python -m benchmarks.network_streams --streams 1 2 4 --seconds 12 --out runs/net.json

Per N and kind: real time kept (every stream's segments labelled, nothing dropped or late),
drops, close -> label p50/p95 (`latency_ms.total`), and for network streams the end-to-end delay
from sender to label: from the moment the sender sent the last data of a segment (its stream
time end, on the sender's clock) to the moment its record reached the sinks. The runtime is the
real one (VGG19 + VGGish on random weights, K frames per segment, eager window model).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.mpegts_sender import Sender
from model.segments import segment_count
from streamer.batching import Workers
from streamer.multi import run_all
from streamer.network import stream_source
from streamer.options import AppOptions
from streamer.pipeline import Pipeline
from streamer.replay import replay_source
from streamer.runtime import Runtime, assemble, load_runtime
from streamer.synthetic import Script, write_media

KINDS = ("network", "replay")


class Stamps:
    """Records with the monotonic time each reached the sinks."""

    def __init__(self) -> None:
        self.records: list[tuple[float, dict]] = []

    def on_segment(self, record: dict) -> None:
        self.records.append((time.monotonic(), record))

    def close(self) -> None:
        pass


def clips(folder: Path, n: int, seconds: float) -> list[Path]:
    """N different MPEG-TS clips (the demo script, each its own seed)."""
    return [write_media(folder / f"clip{i}.ts", Script.demo(seconds, size=(240, 320), seed=i),
                        fps=25, audio_rate=44100, video_codec="mpeg2video", audio_codec="mp2")
            for i in range(n)]


def pct(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if len(values) else None


def measure(rt: Runtime, kind: str, files: list[Path], seconds: float) -> dict[str, Any]:
    """One run of len(files) concurrent streams of `kind` on shared workers."""
    workers = Workers.start(rt)
    shared = workers.runtime(rt)
    senders = [Sender([f]) for f in files] if kind == "network" else []
    try:
        sources = ([stream_source(s.url, delays=[]) for s in senders] if kind == "network"
                   else [replay_source(f, fast=False) for f in files])
        stamps = [Stamps() for _ in files]
        pipes: list[Pipeline] = [assemble(shared, src, [st], duration=seconds)
                                 for src, st in zip(sources, stamps, strict=True)]
        t0 = time.monotonic()
        load0 = os.getloadavg()[0]
        summaries = run_all(pipes)
        wall = time.monotonic() - t0
    finally:
        for s in senders:
            s.close()
        workers.close()
    expected = segment_count(seconds)
    totals = [r["latency_ms"]["total"] for st in stamps for _, r in st.records]
    e2e = []
    for s, src, st in zip(senders, sources, stamps, strict=False):  # none for replays
        start = s.started[0] + src.producers[0].skipped_s  # the sender's time of stream time 0
        e2e += [(t - (start + r["end"])) * 1000 for t, r in st.records]
    drops = sum(sum(x.drops.values()) for x in summaries)
    late = sum(sum(x.late.values()) for x in summaries)
    segments = [len(st.records) for st in stamps]
    return {
        "kind": kind, "streams": len(files), "seconds": seconds, "wall_s": round(wall, 2),
        "segments": segments, "expected_segments": expected, "drops": drops, "late": late,
        "kept_up": all(n == expected for n in segments) and drops == 0 and late == 0,
        "close_to_label_ms": {"p50": pct(totals, 50), "p95": pct(totals, 95)},
        "sender_to_label_ms": {"p50": pct(e2e, 50), "p95": pct(e2e, 95)} if e2e else None,
        "vgg19_mean_batch": workers.vgg19.stats(wall)["mean_batch"],
        "load_avg_1m": [round(load0, 2), round(os.getloadavg()[0], 2)],
        "errors": [type(x.error).__name__ for x in summaries if x.error is not None],
    }


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| streams | source | kept up | segments | drops + late | close -> label p50 / p95 "
             "| sender -> label p50 / p95 | VGG19 mean batch | load 1 min |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        e2e = r["sender_to_label_ms"]
        e2e_text = f"{e2e['p50']} / {e2e['p95']} ms" if e2e else "-"
        lines.append(
            f"| {r['streams']} | {r['kind']} | {'yes' if r['kept_up'] else '**no**'} "
            f"| {'/'.join(map(str, r['segments']))} of {r['expected_segments']} "
            f"| {r['drops']} + {r['late']} "
            f"| {r['close_to_label_ms']['p50']} / {r['close_to_label_ms']['p95']} ms "
            f"| {e2e_text} "
            f"| {r['vgg19_mean_batch']} | {r['load_avg_1m'][0]} -> {r['load_avg_1m'][1]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.network_streams",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4], metavar="N")
    ap.add_argument("--seconds", type=float, default=12.0, help="stream length (default 12)")
    ap.add_argument("--frames-per-segment", type=int, default=1, metavar="K")
    ap.add_argument("--out", metavar="FILE.json", help="also write the results as JSON")
    a = ap.parse_args(argv)
    rt = load_runtime(AppOptions(source="replay", random_weights=True, device="cpu",
                                 frames_per_segment=a.frames_per_segment, backend="eager"))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        files = clips(Path(tmp), max(a.streams), a.seconds)
        for n in a.streams:
            for kind in KINDS:
                results.append(measure(rt, kind, files[:n], a.seconds))
                print(table(results[-1:]).splitlines()[-1], flush=True)
    print(table(results))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
