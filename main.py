"""Live audio-visual event detection: label every second of a stream with JCA.

    python main.py --camera 0 --checkpoint runs/jca.pt          # webcam + default microphone
    python main.py --replay clip.mp4 --checkpoint runs/jca.pt   # a file, as if it were live
    python main.py --replay clip.mp4 --random-weights --fast --headless > predictions.jsonl
    python main.py --synthetic --random-weights --duration 20

Ends on Ctrl+C, at the end of the file or after --duration seconds; the prediction log
(--log) and event intervals (--events) are flushed segment by segment. See docs/STREAMING.md.
"""

from __future__ import annotations

import argparse

from model.errors import run_cli
from streamer.app import CPU_FRAMES, GPU_FRAMES, AppOptions, run
from streamer.detector import available_backends


def add_source_and_model_args(ap: argparse.ArgumentParser) -> None:
    """The source and model flags (also benchmarks.latency's); `app_options` reads them."""
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--camera", metavar="N", help="camera index or device path")
    src.add_argument("--replay", metavar="FILE", help="replay a video file as if it were live")
    src.add_argument("--synthetic", action="store_true",
                     help="generated frames and tones with known events")
    ap.add_argument("--mic", metavar="DEVICE", help="microphone name or index (with --camera)")
    ap.add_argument("--checkpoint", metavar="FILE", help="trained model (python -m model.train)")
    ap.add_argument("--random-weights", action="store_true",
                    help="run without a checkpoint: untrained weights, meaningless labels")
    ap.add_argument("--backend", default="auto", choices=available_backends(),
                    help="window model backend (default auto: TensorRT on a GPU with "
                         "torch-tensorrt, else the fastest available; it says what it picked)")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"),
                    help="window model precision (default fp32; python -m calibrate.precision "
                         "checks which ones keep a checkpoint's accuracy)")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto)")
    ap.add_argument("--frames-per-segment", type=int, metavar="K",
                    help=f"VGG19 frames per second of video (default {CPU_FRAMES} on a CPU, "
                         f"the checkpoint's recipe or {GPU_FRAMES} on a GPU)")
    ap.add_argument("--lookahead", type=int, default=0, metavar="K",
                    help="label the segment K s back, with K s of future context (0..9)")
    ap.add_argument("--duration", type=float, metavar="S", help="stop after S s of stream")
    ap.add_argument("--fast", action="store_true",
                    help="replay/synthetic as fast as the pipeline goes, nothing dropped")
    ap.add_argument("--av-offset", type=float, metavar="S",
                    help="seconds the audio lags the picture (default: what python -m "
                         "calibrate.sync --save measured for this camera + mic or file, else 0)")
    ap.add_argument("--weights-dir", metavar="DIR", help="extractor weights (model.weights)")
    ap.add_argument("--seed", type=int, default=0, help="seed of random weights")


def app_options(a: argparse.Namespace, **outputs: object) -> AppOptions:
    """AppOptions from the flags of `add_source_and_model_args`; `outputs`: the other fields."""
    source = "camera" if a.camera is not None else "replay" if a.replay is not None else "synthetic"
    return AppOptions(
        source=source, camera=a.camera, replay=a.replay, mic=a.mic, checkpoint=a.checkpoint,
        random_weights=a.random_weights, backend=a.backend, precision=a.precision, device=a.device,
        frames_per_segment=a.frames_per_segment, lookahead=a.lookahead, duration=a.duration,
        fast=a.fast, av_offset=a.av_offset, weights_dir=a.weights_dir, seed=a.seed,
        **outputs)  # type: ignore[arg-type]


def parse_args(argv: list[str] | None = None) -> AppOptions:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
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


def main(argv: list[str] | None = None) -> int:
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    run_cli(main)
