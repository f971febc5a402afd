"""Measure the A/V offset of a capture setup from a short clap-or-flash test.

    python -m calibrate.sync --camera 0 --mic USB --save   # record 15 s: clap 5-10 times
    python -m calibrate.sync --replay test.mp4             # a recorded clap/flash test
    python -m calibrate.sync --replay test.mp4 --json      # the result as one JSON object

Prints the offset in ms (positive when the audio arrives later than the video), a confidence
(0..1) and the number of events used; a recording with too few events or no clear alignment
gets a message saying what to do instead, and exit code 2. --save records it in the calibration
file (streamer.offsets) under this camera + microphone (or file), and main.py then applies it
whenever --av-offset is not given. The frames and audio come from the streamer's own sources
(streamer.app.open_source: the same timestamps the live pipeline cuts by); no model is loaded.
The method is in calibrate/avsync.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

import numpy as np

from calibrate.avsync import SyncOptions, SyncResult, brightening, estimate_offset, grey
from model.errors import UserError, run_cli
from model.extractors.vggish_frontend import SAMPLE_RATE
from model.limits import check_positive, check_range
from streamer.clock import Clock
from streamer.offsets import config_path, save_offset, source_key
from streamer.options import AppOptions
from streamer.sources import END, Audio, Frame, Source

LIVE_SECONDS = 15.0
LIVE_WARMUP = 1.0  # s of a live recording left out: the camera's exposure settling


@dataclass(frozen=True)
class Recording:
    frame_times: np.ndarray  # (F,) stream seconds
    change: np.ndarray  # (F,) brightening from the previous frame (0 for the first)
    audio: np.ndarray  # (n,) float32 16 kHz mono
    audio_t0: float  # stream time of audio[0]


def record(source: Source, seconds: float | None = None, stride: int = 4,
           warmup: float | None = None) -> Recording:
    """Drain a source (to its end, or `seconds` of stream time) into the two signals; only a
    small grey copy of the previous frame is kept. A live source's first `warmup` seconds
    (default LIVE_WARMUP: auto-exposure and gain settling) are left out. Closes the source."""
    skip = (LIVE_WARMUP if source.live else 0.0) if warmup is None else warmup
    times: list[float] = []
    change: list[float] = []
    blocks: list[Audio] = []
    prev: np.ndarray | None = None
    clock = Clock()
    source.start(clock)
    try:
        while not (source.live and seconds is not None and clock.now() >= seconds):
            item = source.get(0.1)
            if item is END:
                break
            if item is None or item.t < skip:
                continue
            if seconds is not None and item.t >= seconds:
                if source.live:
                    continue
                break
            if isinstance(item, Frame):
                g = grey(item.rgb, stride)
                change.append(0.0 if prev is None or prev.shape != g.shape
                              else brightening(prev, g))
                times.append(item.t)
                prev = g
            elif isinstance(item, Audio):
                blocks.append(item)
    finally:
        source.close()
    audio, t0 = assemble_audio(blocks)
    order = np.argsort(times, kind="stable")
    return Recording(np.asarray(times)[order], np.asarray(change)[order], audio, t0)


def assemble_audio(blocks: list[Audio], rate: int = SAMPLE_RATE) -> tuple[np.ndarray, float]:
    """Blocks placed by timestamp from the first one (gaps silent) -> (samples, t0)."""
    if not blocks:
        return np.zeros(0, np.float32), 0.0
    t0 = min(b.t for b in blocks)
    starts = [round((b.t - t0) * rate) for b in blocks]
    out = np.zeros(max(s + len(b.samples) for s, b in zip(starts, blocks, strict=True)),
                   np.float32)
    for s, b in zip(starts, blocks, strict=True):
        out[s:s + len(b.samples)] = b.samples
    return out, t0


def measure(rec: Recording, opts: SyncOptions | None = None) -> SyncResult:
    return estimate_offset(rec.audio, SAMPLE_RATE, rec.audio_t0, rec.frame_times, rec.change,
                           opts)


def open_capture(args: argparse.Namespace) -> tuple[Source, str]:
    """The streamer's own source for the setup, and the key its offset is saved under."""
    from streamer.app import open_source

    if args.replay is not None:
        source = open_source(AppOptions(source="replay", replay=args.replay, fast=True))
        return source, source_key(source.name, args.replay)
    source = open_source(AppOptions(source="camera", camera=args.camera, mic=args.mic))
    return source, source_key(source.name)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m calibrate.sync",
                                 description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--camera", metavar="N", help="camera index or device path")
    src.add_argument("--replay", metavar="FILE", help="a recorded clap/flash test")
    ap.add_argument("--mic", metavar="DEV", help="microphone name or index (with --camera)")
    ap.add_argument("--seconds", type=float, metavar="S",
                    help=f"record S s (camera, default {LIVE_SECONDS:g}) or analyse the first "
                         "S s of the file (default all)")
    ap.add_argument("--max-lag-ms", type=float, default=1000 * SyncOptions.max_lag,
                    help="largest offset searched, either way (default 1000)")
    ap.add_argument("--min-events", type=int, default=SyncOptions.min_events)
    ap.add_argument("--save", action="store_true",
                    help=f"save the offset for main.py (file: ${'{'}JCA_LIVE_CONFIG{'}'} or "
                         f"{config_path()})")
    ap.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = ap.parse_args(argv)
    if args.mic is not None and args.camera is None:
        raise UserError("--mic goes with --camera; a replayed file brings its own sound")
    check_positive("--seconds", args.seconds)
    if not 0 < args.max_lag_ms <= 5000:
        raise UserError(f"--max-lag-ms must be in (0, 5000], got {args.max_lag_ms}")
    check_range("--min-events", args.min_events, 1)
    opts = SyncOptions(max_lag=args.max_lag_ms / 1000, min_events=args.min_events)
    source, key = open_capture(args)
    seconds = args.seconds if args.seconds is not None or args.replay else LIVE_SECONDS
    if args.camera is not None:
        print(f"recording {seconds:g} s from {source.name}: after the first second, clap (or "
              "flash a light) 5-10 times at irregular intervals, in view of the camera and close "
              "to the microphone",
              file=sys.stderr, flush=True)
    result = measure(record(source, seconds), opts)
    print(json.dumps({"key": key, **result.to_dict()}) if args.json else result.line(),
          flush=True)
    if args.save:
        path = save_offset(key, result.offset_ms, result.confidence, result.events,
                           result.frame_ms)
        print(f"saved to {path} for {key}: main.py applies it when --av-offset is not given",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_cli(main)
