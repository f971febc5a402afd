"""The options of a live run, and main.py's flags that make them (also benchmarks.latency's).

    opts = AppOptions(source="replay", replay="clip.mp4", random_weights=True, fast=True)
    opts = parse_args(["--camera", "0", "--checkpoint", "runs/jca.pt"])     # main.py's flags
    add_source_and_model_args(parser); opts = app_options(ns, log=None)     # another CLI's

Every option is checked once, when an AppOptions is made (model.limits holds the ranges), so a
mistake is one line before anything loads. What needs the machine (the device, the files) is
checked where it is used: streamer.runtime.load_runtime, streamer.app.open_source.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from model.errors import UserError
from model.limits import (
    BACKENDS,
    EXTRACTOR_PATHS,
    PRECISIONS,
    check_av_offset,
    check_choice,
    check_frames_per_segment,
    check_lookahead,
    check_non_negative,
    check_positive,
    check_seed,
)

AUTO_FRAMES = "auto"  # --frames-per-segment auto: measured on this machine (streamer.autok)
GPU_FRAMES = 16  # the AVE recipe
SOURCES = ("camera", "replay", "stream", "synthetic")
LIVE_SOURCES = ("camera", "stream")  # paced by the world: no --fast

DESCRIPTION = "Live audio-visual event detection: label every second of a stream with JCA."
EPILOG = """\
    python main.py --camera 0 --checkpoint runs/jca.pt          # webcam + default microphone
    python main.py --replay clip.mp4 --checkpoint runs/jca.pt   # a file, as if it were live
    python main.py --replay clip.mp4 --random-weights --fast --headless > predictions.jsonl
    python main.py --stream rtsp://cam.local/live --checkpoint runs/jca.pt   # a network camera
    python main.py --stream URL1 --camera 0 --replay clip.mp4 --checkpoint runs/jca.pt  # 3 streams
    python main.py --synthetic --random-weights --duration 20

Ends on Ctrl+C, at the end of the file or after --duration seconds; the prediction log
(--log) and event intervals (--events) are flushed segment by segment. Exit status: 0 for an
ended stream, 2 for an error (one line), a file or stdout that could not be written included
(a full disk: that output stops at its last whole line, the others go on), 128 + N for signal N.
See docs/STREAMING.md.
"""


@dataclass(frozen=True)
class AppOptions:
    source: str  # "camera", "replay" or "synthetic"
    camera: str | None = None  # index, device path or URL (video only)
    replay: str | None = None  # file
    stream: str | None = None  # URL of a network stream (video and audio)
    mic: str | None = None  # name or index; None = the default input
    checkpoint: str | None = None
    random_weights: bool = False
    backend: str = "eager"  # main.py's default is "auto"; tests and embedders pick explicitly
    precision: str = "fp32"  # of the window model
    device: str = "auto"
    frames_per_segment: int | None = None  # None: auto on a CPU, the recipe on a GPU
    extractor_path: str = "fp32"  # on a CPU; main.py's default is "auto" (model.extractors.paths)
    lookahead: int | None = None  # None: what an online checkpoint was trained for, else 0
    log: str | None = "runs/predictions.jsonl"
    events: str | None = "runs/events.jsonl"
    headless: bool = False
    duration: float | None = None
    fast: bool = False
    av_offset: float | None = None  # s; None: saved by calibrate.sync for this source, else 0
    min_event: float = 1.0
    min_gap: float = 2.0
    weights_dir: str | None = None
    seed: int = 0
    overlay: str | None = None  # video file: the stream drawn with label, confidence, attention
    # Several sources: (kind, target) for every --camera / --replay / --stream, in command-line
    # order, each its own stream (streamer.multi); empty for one source (the fields above).
    sources: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise UserError(f"unknown source {self.source!r}: use --camera, --replay, --stream "
                            "or --synthetic")
        if self.checkpoint and self.random_weights:
            raise UserError("--checkpoint and --random-weights exclude each other: pick one")
        kinds = {kind for kind, _ in self.sources} | {self.source}
        if self.fast and kinds & set(LIVE_SOURCES):
            raise UserError("--fast only applies to --replay and --synthetic")
        if self.sources and self.overlay:
            raise UserError("--overlay draws one stream: give one source with it")
        check_choice("--backend", self.backend, BACKENDS)
        check_choice("--precision", self.precision, PRECISIONS)
        check_choice("--extractor-path", self.extractor_path, EXTRACTOR_PATHS)
        if self.frames_per_segment is not None:
            check_frames_per_segment(self.frames_per_segment)
        if self.lookahead is not None:
            check_lookahead(self.lookahead)
        check_positive("--duration", self.duration)
        check_av_offset(self.av_offset)
        check_non_negative("--min-event", self.min_event)
        check_non_negative("--min-gap", self.min_gap)
        check_seed(self.seed)


def add_source_and_model_args(ap: argparse.ArgumentParser) -> None:
    """The source and model flags (main.py's and benchmarks.latency's); `app_options` reads
    them."""
    ap.set_defaults(sources=())
    ap.add_argument("--camera", metavar="N", action=SourceFlag,
                    help="camera index, device path or URL (video only; sound from --mic); "
                         "repeatable")
    ap.add_argument("--replay", metavar="FILE", action=SourceFlag,
                    help="replay a video file as if it were live; repeatable")
    ap.add_argument("--stream", metavar="URL", action=SourceFlag,
                    help="network stream with picture and sound (rtsp://, rtmp://, srt://, "
                         "http://, tcp://, udp://...); repeatable: each source is one stream")
    ap.add_argument("--synthetic", action="store_true",
                    help="generated frames and tones with known events")
    ap.add_argument("--mic", metavar="DEVICE", help="microphone name or index (with --camera)")
    ap.add_argument("--checkpoint", metavar="FILE", help="trained model (python -m model.train)")
    ap.add_argument("--random-weights", action="store_true",
                    help="run without a checkpoint: untrained weights, meaningless labels")
    ap.add_argument("--backend", default="auto", choices=BACKENDS,
                    help="window model backend (default auto: an engine built ahead with "
                         "python -m model.backends build when one is cached for the model, "
                         "else eager; it says which)")
    ap.add_argument("--precision", default="fp32", choices=PRECISIONS,
                    help="window model precision (default fp32; python -m calibrate.precision "
                         "checks which ones keep a checkpoint's accuracy)")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto)")
    ap.add_argument("--frames-per-segment", type=frames_arg, default=AUTO_FRAMES, metavar="K",
                    help=f"VGG19 frames per second of video, or {AUTO_FRAMES} (default: on a CPU "
                         f"the most this machine keeps up with in real time, measured once; "
                         f"on a GPU the checkpoint's recipe or {GPU_FRAMES})")
    ap.add_argument("--extractor-path", default="auto", choices=EXTRACTOR_PATHS,
                    help="how VGG19 and VGGish run on a CPU (default auto: the fastest path "
                         "that keeps the fp32 features on this machine, chosen once; fp32: eager)")
    ap.add_argument("--lookahead", type=int, metavar="K",
                    help="label the segment K s back, with K s of future context (0..9; "
                         "default: the lookahead a checkpoint trained with --online was trained "
                         "for, else 0)")
    ap.add_argument("--duration", type=float, metavar="S", help="stop after S s of stream")
    ap.add_argument("--fast", action="store_true",
                    help="replay/synthetic as fast as the pipeline goes, nothing dropped")
    ap.add_argument("--av-offset", type=float, metavar="S",
                    help="seconds the audio lags the picture, within ±10 (default: what python "
                         "-m calibrate.sync --save measured for this camera + mic or file, "
                         "else 0)")
    ap.add_argument("--weights-dir", metavar="DIR", help="extractor weights (model.weights)")
    ap.add_argument("--seed", type=int, default=0, help="seed of random weights")


class SourceFlag(argparse.Action):
    """--camera / --replay / --stream: each may be repeated; every one is kept, in command-line
    order, in `sources`, and the first of each flag in its own attribute."""

    def __call__(self, parser: argparse.ArgumentParser, ns: argparse.Namespace, value: object,
                 option_string: str | None = None) -> None:
        ns.sources = (*ns.sources, (self.dest, str(value)))
        if getattr(ns, self.dest) is None:
            setattr(ns, self.dest, value)


def source_kinds(a: argparse.Namespace) -> tuple[tuple[str, str], ...]:
    """The sources the flags name, in order; exactly one of them or --synthetic."""
    sources = tuple(a.sources)
    if a.synthetic and sources:
        raise UserError("--synthetic is a source of its own: drop --camera / --replay / --stream "
                        "or --synthetic")
    if not a.synthetic and not sources:
        raise UserError("no source: pass --camera N, --replay FILE, --stream URL or --synthetic")
    return sources


def frames_arg(text: str) -> int | None:
    """--frames-per-segment: a whole number, or auto (None)."""
    if text == AUTO_FRAMES:
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or {AUTO_FRAMES}, "
                                         f"got {text!r}") from None


def app_options(a: argparse.Namespace, **outputs: object) -> AppOptions:
    """AppOptions from the flags of `add_source_and_model_args`; `outputs`: the other fields."""
    sources = source_kinds(a)
    source = sources[0][0] if sources else "synthetic"
    return AppOptions(
        source=source, camera=a.camera, replay=a.replay, stream=a.stream,
        sources=sources if len(sources) > 1 else (), mic=a.mic, checkpoint=a.checkpoint,
        random_weights=a.random_weights, backend=a.backend, precision=a.precision, device=a.device,
        frames_per_segment=a.frames_per_segment, extractor_path=a.extractor_path,
        lookahead=a.lookahead, duration=a.duration,
        fast=a.fast, av_offset=a.av_offset, weights_dir=a.weights_dir, seed=a.seed,
        **outputs)  # type: ignore[arg-type]


def parse_args(argv: list[str] | None = None) -> AppOptions:
    """main.py's command line -> AppOptions (a bad value is a UserError, a bad flag exits 2)."""
    ap = argparse.ArgumentParser(description=DESCRIPTION,  # prog: main.py or jca-live
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=EPILOG)
    add_source_and_model_args(ap)
    ap.add_argument("--log", default="runs/predictions.jsonl", metavar="FILE",
                    help="prediction log, one JSON object per segment ('' for none)")
    ap.add_argument("--events", default="runs/events.jsonl", metavar="FILE",
                    help="event intervals, one JSON object per event ('' for none)")
    ap.add_argument("--headless", action="store_true",
                    help="no dashboard: one JSON object per segment on stdout, nothing else")
    ap.add_argument("--min-event", type=float, default=1.0, metavar="S",
                    help="shortest event interval kept (default 1)")
    ap.add_argument("--min-gap", type=float, default=2.0, metavar="S",
                    help="gaps shorter than this inside an event are bridged (default 2)")
    ap.add_argument("--overlay", metavar="OUT.mp4",
                    help="also write the stream's video and sound with the label, confidence and "
                         "attention map drawn on each frame")
    a = ap.parse_args(argv)
    return app_options(a, log=a.log or None, events=a.events or None, headless=a.headless,
                       min_event=a.min_event, min_gap=a.min_gap, overlay=a.overlay)
