"""A site that runs for days, compressed: N network streams whose senders stop and restart every
15-17 s, into the product's many-stream path (one runtime, shared batching workers:
streamer.batching, streamer.multi.run_all), with the process's resident memory sampled as it
runs. A process that runs for days must stay flat once warm.

    python -m benchmarks.soak --minutes 60 --out runs/soak.json
    python -m benchmarks.soak --minutes 5 --sample-s 10 --warmup-min 1

Each sender (benchmarks.mpegts_sender) serves clips of 15, 16 and 17 s in turn (`--restart-s`),
closing the connection at each clip's end and listening again after `--gap-s`; the stream
reconnects on the product's own schedule (streamer.network) and flags the seconds between as
missing. The runtime is the real one (VGG19 + VGGish on random weights, K frames per segment,
eager window model); the sinks count records and write the JSONL log as main.py --log does.
RSS is VmRSS of /proc/self/status (Linux). The figure is the slope after warm-up: a
least-squares line through the samples after `--warmup-min`, in MB per hour.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.mpegts_sender import Sender
from model.errors import UserError, run_cli
from model.limits import check_frames_per_segment, check_non_negative, check_positive, check_range
from streamer.allocator import RELEASE
from streamer.batching import Workers
from streamer.multi import LogWriter, Tagged, run_all
from streamer.network import stream_source
from streamer.options import AppOptions
from streamer.pipeline import Pipeline
from streamer.runtime import Runtime, assemble, load_runtime
from streamer.synthetic import Script, write_media

MB = 1024 * 1024


def resident_mb() -> dict[str, float]:
    """This process's resident memory in MB: all of it (VmRSS), and its anonymous part (RssAnon:
    the heap, stacks; the rest is mapped files, the libraries' code)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        raise UserError("the soak benchmark reads /proc/self/status: run it on Linux") from None
    kb = {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in status.splitlines())
          if k in ("VmRSS", "RssAnon")}
    return {"rss": kb["VmRSS"] * 1024 / MB, "anon": kb["RssAnon"] * 1024 / MB}


class Counts:
    """A stream's records counted, none kept (a soak's sink must not grow)."""

    def __init__(self) -> None:
        self.segments = 0
        self.missing = 0  # records flagged missing (the seconds between connections)

    def on_segment(self, record: dict) -> None:
        self.segments += 1
        self.missing += bool(record["missing"])

    def close(self) -> None:
        pass


@dataclass
class Sample:
    t_s: float  # since the streams started
    rss_mb: float
    anon_mb: float
    python_mb: float | None  # traced by tracemalloc (--tracemalloc), else None
    segments: int  # all streams
    missing: int  # of those, flagged missing
    reconnects: int  # all streams
    threads: int
    load_1m: float


def clips(folder: Path, n_streams: int, lengths: list[float]) -> list[list[Path]]:
    """Per stream, one MPEG-TS clip of each length (the demo script, each its own seed)."""
    return [[write_media(folder / f"s{i}_{j}.ts",
                         Script.demo(s, size=(240, 320), seed=i * len(lengths) + j), fps=25,
                         audio_rate=44100, video_codec="mpeg2video", audio_codec="mp2")
             for j, s in enumerate(lengths)] for i in range(n_streams)]


def playlist(stream_clips: list[Path], lengths: list[float], seconds: float,
             gap_s: float) -> list[Path]:
    """The clips in turn, enough connections to outlast `seconds` of soak."""
    n = math.ceil(seconds / (min(lengths) + gap_s)) + 2
    return [stream_clips[i % len(stream_clips)] for i in range(n)]


def slope_mb_per_hour(samples: list[Sample], warmup_s: float) -> float | None:
    """The least-squares slope of RSS over the samples after warm-up."""
    after = [s for s in samples if s.t_s >= warmup_s]
    if len(after) < 2:
        return None
    t = np.array([s.t_s for s in after]) / 3600
    return float(np.polyfit(t, np.array([s.rss_mb for s in after]), 1)[0])


def soak(rt: Runtime, files: list[list[Path]], lengths: list[float], seconds: float,
         gap_s: float, sample_s: float, log: Path | None, trace: bool, release: bool = True,
         say: Callable[..., None] = print) -> tuple[list[Sample], list[Any], list[Counts]]:
    """Run len(files) restarting streams for `seconds`, sampling every `sample_s`; release:
    False runs without the pipeline's allocator release (streamer.allocator), to compare."""
    workers = Workers.start(rt)
    shared = workers.runtime(rt)
    senders = [Sender(playlist(f, lengths, seconds, gap_s), gap_s=gap_s) for f in files]
    counts = [Counts() for _ in files]
    logger = LogWriter(str(log)) if log else None
    samples: list[Sample] = []
    stop = threading.Event()
    trim = RELEASE.release
    if not release:
        RELEASE.release = None
    try:
        sources = [stream_source(s.url) for s in senders]
        producers = [src.producers[0] for src in sources]  # NetworkProducer: `reconnects`
        pipes: list[Pipeline] = []
        for i, (src, c) in enumerate(zip(sources, counts, strict=True)):
            sinks = [c] + ([Tagged(logger, {"stream": i, "source": src.name})] if logger else [])
            pipes.append(assemble(shared, src, sinks, duration=seconds))
        if trace:
            tracemalloc.start()
        t0 = time.monotonic()

        def sample() -> None:
            traced = tracemalloc.get_traced_memory()[0] / MB if trace else None
            mem = resident_mb()
            s = Sample(round(time.monotonic() - t0, 1), round(mem["rss"], 2),
                       round(mem["anon"], 2),
                       None if traced is None else round(traced, 2),
                       sum(c.segments for c in counts), sum(c.missing for c in counts),
                       sum(p.reconnects for p in producers), threading.active_count(),
                       round(os.getloadavg()[0], 2))
            samples.append(s)
            say(row(s), flush=True)

        def sampler() -> None:
            sample()
            while not stop.wait(sample_s):
                sample()

        say(header(), flush=True)
        thread = threading.Thread(target=sampler, name="soak-sampler", daemon=True)
        thread.start()
        summaries = run_all(pipes)
        stop.set()
        thread.join()
        sample()  # the end, every stream closed
    finally:
        RELEASE.release = trim
        stop.set()
        for s in senders:
            s.close()
        workers.close()
        if logger is not None:
            logger.close()
        if trace:
            tracemalloc.stop()
    return samples, summaries, counts


def header() -> str:
    return ("| t (min) | RSS MB | anonymous MB | Python MB | segments | flagged missing "
            "| reconnects | threads | load 1 min |\n" + "|---" * 9 + "|")


def row(s: Sample) -> str:
    py = "-" if s.python_mb is None else f"{s.python_mb:.2f}"
    return (f"| {s.t_s / 60:.1f} | {s.rss_mb:.1f} | {s.anon_mb:.1f} | {py} | {s.segments} "
            f"| {s.missing} | {s.reconnects} | {s.threads} | {s.load_1m} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.soak",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0, help="soak length (default 60)")
    ap.add_argument("--streams", type=int, default=2, metavar="N", help="default 2")
    ap.add_argument("--frames-per-segment", type=int, default=1, metavar="K",
                    help="default 1 (light on a shared CPU)")
    ap.add_argument("--restart-s", type=float, nargs="+", default=[15.0, 16.0, 17.0],
                    metavar="S", help="the senders' clip lengths, served in turn (default "
                    "15 16 17: a restart every 15-17 s)")
    ap.add_argument("--gap-s", type=float, default=1.0,
                    help="seconds a sender is away between clips (default 1)")
    ap.add_argument("--sample-s", type=float, default=30.0, help="RSS every S s (default 30)")
    ap.add_argument("--warmup-min", type=float, default=5.0,
                    help="minutes left out of the slope (default 5)")
    ap.add_argument("--tracemalloc", action="store_true",
                    help="also sample the memory Python objects hold (slower)")
    ap.add_argument("--no-release", action="store_true",
                    help="without the pipeline's release of the allocator's free pages "
                    "(streamer.allocator), to compare")
    ap.add_argument("--out", metavar="FILE.json", help="also write the samples as JSON")
    a = ap.parse_args(argv)
    if not (math.isfinite(a.minutes) and a.minutes > 0):
        raise UserError(f"--minutes must be a finite number > 0, got {a.minutes}")
    if not (math.isfinite(a.warmup_min) and 0 <= a.warmup_min < a.minutes):
        raise UserError(f"--warmup-min must be >= 0 and under --minutes, got {a.warmup_min}")
    check_range("--streams", a.streams, 1)
    check_frames_per_segment(a.frames_per_segment)
    for length in a.restart_s:
        check_positive("--restart-s", length)
    check_positive("--sample-s", a.sample_s)
    check_non_negative("--gap-s", a.gap_s)
    seconds = a.minutes * 60
    rt = load_runtime(AppOptions(source="replay", random_weights=True, device="cpu",
                                 frames_per_segment=a.frames_per_segment, backend="eager"))
    with tempfile.TemporaryDirectory() as tmp:
        files = clips(Path(tmp), a.streams, a.restart_s)
        samples, summaries, counts = soak(rt, files, a.restart_s, seconds, a.gap_s,
                                          a.sample_s, Path(tmp) / "log.jsonl", a.tracemalloc,
                                          release=not a.no_release)
    slope = slope_mb_per_hour(samples, a.warmup_min * 60)
    warm = [s for s in samples if s.t_s >= a.warmup_min * 60]
    result = {
        "minutes": a.minutes, "streams": a.streams, "frames_per_segment": a.frames_per_segment,
        "restart_s": a.restart_s, "gap_s": a.gap_s, "warmup_min": a.warmup_min,
        "release": not a.no_release, "releases": RELEASE.count,
        "slope_mb_per_hour": None if slope is None else round(slope, 2),
        "rss_after_warmup_mb": [warm[0].rss_mb, warm[-1].rss_mb] if warm else None,
        "segments": [c.segments for c in counts], "flagged_missing": [c.missing for c in counts],
        "drops": [sum(s.drops.values()) for s in summaries],
        "errors": [None if s.error is None else str(s.error) for s in summaries],
        "samples": [asdict(s) for s in samples],
    }
    slope_text = "too few samples after warm-up" if slope is None else f"{slope:+.1f} MB/hour"
    print(f"RSS slope after {a.warmup_min:g} min of warm-up: {slope_text} "
          f"({a.streams} streams, K = {a.frames_per_segment}, {a.minutes:g} min, "
          f"{samples[-1].reconnects} reconnects, "
          f"{'no allocator release' if a.no_release else f'{RELEASE.count} allocator releases'})")
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    run_cli(main)
