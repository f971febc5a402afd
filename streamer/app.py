"""Build a streaming pipeline from the command-line options and run it (main.py's body).

    opts = AppOptions(source="replay", replay="clip.mp4", random_weights=True, fast=True)
    summary = run(opts)       # prints the summary and notes on stderr

Defaults follow the device: on a CPU few enough frames per segment to keep up in real time
(CPU_FRAMES), on a GPU the AVE recipe (16) or the checkpoint's own recipe.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from model.calibration import calibrated_temperature
from model.errors import UserError
from model.extractors.vggish_frontend import SAMPLE_RATE
from model.recipe import FeatureRecipe
from streamer.detector import (
    Detector,
    check_recipe,
    make_backend,
)
from streamer.pipeline import Pipeline, PipelineOptions, Summary
from streamer.sinks import EventLog, JsonlLog
from streamer.sources import Source

CPU_FRAMES = 1  # VGG19 frames per segment on a 2-core CPU in real time (benchmarks/RESULTS.md)
GPU_FRAMES = 16  # the AVE recipe
SYNTHETIC_SECONDS = 3600.0  # a synthetic stream without --duration
BACKGROUND = "background"
# The 28 AVE event classes in index order (../shared/ave/categories.txt), background last:
# the labels of an untrained model that has no checkpoint to name them.
AVE_CLASSES = (
    "Church bell", "Male speech, man speaking", "Bark", "Fixed-wing aircraft, airplane",
    "Race car, auto racing", "Female speech, woman speaking", "Helicopter", "Violin, fiddle",
    "Flute", "Ukulele", "Frying (food)", "Truck", "Shofar", "Motorcycle", "Acoustic guitar",
    "Train horn", "Clock", "Banjo", "Goat", "Baby cry, infant cry", "Bus", "Chainsaw", "Cat",
    "Horse", "Toilet flush", "Rodents, rats, mice", "Accordion", "Mandolin", BACKGROUND,
)
UNTRAINED_NOTE = "UNTRAINED: random weights, the labels are meaningless (pass --checkpoint FILE)"
RANDOM_FEATURES_NOTE = (
    "RANDOM FEATURES: extractor weights are random (python -m model.weights fetch for real "
    "ones); labels hold only for a model trained on these same random features")


@dataclass(frozen=True)
class AppOptions:
    source: str  # "camera", "replay" or "synthetic"
    camera: str | None = None  # index or device path
    replay: str | None = None  # file
    mic: str | None = None  # name or index; None = the default input
    checkpoint: str | None = None
    random_weights: bool = False
    backend: str = "eager"  # main.py's default is "auto"; tests and embedders pick explicitly
    precision: str = "fp32"  # of the window model
    device: str = "auto"
    frames_per_segment: int | None = None  # None: by device (CPU_FRAMES / GPU_FRAMES)
    lookahead: int = 0
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


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: this machine has no CUDA GPU; use --device cpu")
    if not (device == "cpu" or device.startswith("cuda")):
        raise UserError(f"unknown --device {device!r}: use auto, cpu or cuda[:N]")
    return device


def random_seed(identity: str) -> int | None:
    """The seed of a random-weights identity like "random:seed=3"."""
    m = re.fullmatch(r"random:seed=(\d+)", identity)
    return int(m.group(1)) if m else None


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Model:
    net: torch.nn.Module
    class_names: tuple[str, ...]
    recipe: FeatureRecipe | None  # what it was trained on
    temperature: float
    threshold: float  # calibrated event threshold (0 = none)
    untrained: bool  # random JCA weights (no checkpoint)
    random_features: bool  # trained on features from random extractor weights
    name: str  # for the status line
    meta: dict = field(default_factory=dict)  # the checkpoint's meta


def load_model(opts: AppOptions) -> Model:
    if opts.checkpoint:
        from model.checkpoint import load_checkpoint

        if not Path(opts.checkpoint).is_file():
            raise UserError(f"no such checkpoint: {opts.checkpoint}; train one with "
                            "python -m model.train, or pass --random-weights to run untrained")
        net, ckpt = load_checkpoint(opts.checkpoint)
        calib = ckpt.meta.get("calibration") or {}
        random_features = bool(ckpt.meta.get("random_features")) or (
            ckpt.recipe is not None and ckpt.recipe.random_weights)
        return Model(net, ckpt.class_names, ckpt.recipe, calibrated_temperature(ckpt.meta),
                     float(calib.get("event_threshold", 0.0)), False, random_features,
                     Path(opts.checkpoint).name, ckpt.meta)
    if not opts.random_weights:
        raise UserError("no checkpoint: pass --checkpoint FILE (train one with python -m "
                        "model.train), or --random-weights to run with untrained weights")
    from model.config import preset
    from model.network import JCANet

    torch.manual_seed(opts.seed)
    net = JCANet(preset("paper", num_classes=len(AVE_CLASSES))).eval()
    return Model(net, AVE_CLASSES, None, 1.0, 0.0, True, True, "random weights")


def build_feature_extractors(opts: AppOptions, model: Model, device: str, k: int) -> Any:
    """The live extractors for the model's recipe (random ones for untrained runs)."""
    from model.extractors import build_extractors

    trained = model.recipe
    base = trained or FeatureRecipe.ave()
    seed = random_seed(trained.visual_weights) if trained is not None else None
    random_features = opts.random_weights or (trained is not None and trained.random_weights)
    return build_extractors(
        weights_dir=opts.weights_dir, random_weights=random_features,
        seed=opts.seed if seed is None else seed, device=device, frames_per_segment=k,
        visual_preprocess=base.visual_preprocess, audio_postprocess=base.audio_postprocess)


def open_source(opts: AppOptions) -> Source:
    if opts.source == "replay":
        from streamer.replay import replay_source

        return replay_source(opts.replay or "", fast=opts.fast)
    if opts.source == "synthetic":
        from streamer.synthetic import Script, synthetic_source

        return synthetic_source(Script.demo(opts.duration or SYNTHETIC_SECONDS, size=(120, 160)),
                                fast=opts.fast)
    if opts.source == "camera":
        if opts.fast:
            raise UserError("--fast only applies to --replay and --synthetic")
        from streamer.camera import CameraProducer
        from streamer.microphone import MicrophoneProducer

        mic = MicrophoneProducer(opts.mic)  # check the microphone before opening the camera
        cam = CameraProducer(opts.camera if opts.camera is not None else "0")
        return Source(f"camera:{cam.device} + mic:{mic.name}", [cam, mic], live=True)
    raise UserError(f"unknown source {opts.source!r}: use --camera, --replay or --synthetic")


def resolve_av_offset(opts: AppOptions, source: Source) -> float:
    """--av-offset, else the offset `python -m calibrate.sync --save` measured for this camera +
    microphone (or file), else 0."""
    if opts.av_offset is not None or opts.source == "synthetic":
        return opts.av_offset or 0.0
    from calibrate.store import load_offset, source_key

    saved = load_offset(source_key(source.name, opts.replay if opts.source == "replay" else None))
    if saved is None:
        return 0.0
    say(f"note: A/V offset {saved.offset_ms:+.1f} ms measured {saved.measured} ({saved.path}); "
        "--av-offset overrides it")
    return saved.offset_ms / 1000


def build(opts: AppOptions) -> Pipeline:
    """Everything from the options; user mistakes surface here as UserError, before any thread."""
    device = resolve_device(opts.device)
    if opts.duration is not None and opts.duration <= 0:
        raise UserError(f"--duration must be positive, got {opts.duration}")
    if not 0 <= opts.lookahead <= 9:
        raise UserError(f"--lookahead must be in 0..9, got {opts.lookahead}")
    if opts.checkpoint and opts.random_weights:
        raise UserError("--checkpoint and --random-weights exclude each other: pick one")
    source = open_source(opts)  # a missing file or camera fails first, and fast
    try:
        opts = replace(opts, av_offset=resolve_av_offset(opts, source))
        return _build(opts, device, source)
    except BaseException:
        source.close()
        raise


def _build(opts: AppOptions, device: str, source: Source) -> Pipeline:
    model = load_model(opts)
    trained_k = model.recipe.frames_per_segment if model.recipe is not None else GPU_FRAMES
    k = opts.frames_per_segment or (CPU_FRAMES if device == "cpu" else trained_k)
    if k < 1:
        raise UserError(f"--frames-per-segment must be >= 1, got {k}")
    visual, audio, live_recipe = build_feature_extractors(opts, model, device, k)
    if model.recipe is not None:
        for note in check_recipe(model.recipe, live_recipe, model.name):
            say(f"note: {note}")
    elif opts.checkpoint:
        say(f"warning: {model.name} records no feature recipe; cannot check the live features "
            "match its training features")
    untrained = model.untrained
    random_features = model.random_features or live_recipe.random_weights
    if untrained:
        say(UNTRAINED_NOTE)
    elif random_features:
        say(RANDOM_FEATURES_NOTE)
    backend = make_backend(opts.backend, model.net, device, precision=opts.precision,
                           meta=model.meta)
    reason = getattr(backend, "reason", None)
    if reason:
        say(f"backend: {reason}")
    detector = Detector(backend, model.class_names, lookahead=opts.lookahead,
                        temperature=model.temperature, device=device)
    picked = getattr(backend, "name", opts.backend)
    precision = getattr(backend, "precision", opts.precision)
    info = {"source": source.name, "device": device,
            "backend": picked if precision == "fp32" else f"{picked} {precision}",
            "checkpoint": model.name, "untrained": untrained,
            "random_features": random_features, "frames_per_segment": k,
            "lookahead": opts.lookahead}
    pipe = Pipeline(source, visual.frame_features, audio, detector,
                    options=PipelineOptions(frames_per_segment=k, av_offset=opts.av_offset or 0.0,
                                            duration=opts.duration, untrained=untrained,
                                            random_features=random_features),
                    info=info)
    pipe.sinks = make_sinks(opts, pipe, model)
    if opts.overlay:
        from streamer.overlay import OverlayWriter

        overlay = OverlayWriter(opts.overlay, sample_rate=SAMPLE_RATE)
        pipe.taps.append(overlay)
        pipe.sinks.insert(-1, overlay)  # before the console: the file is complete first
    return pipe


def make_sinks(opts: AppOptions, pipe: Pipeline, model: Model) -> list:
    """Log, events, console, in the order each segment reaches them (the log is on disk
    before anything is shown); the console also gets each final event interval."""
    from streamer.dashboard import make_console_sink

    header = {**pipe.status(), "class_names": list(model.class_names)}
    console = make_console_sink("json" if opts.headless else "auto", header, pipe.status,
                                class_names=model.class_names)
    sinks: list = []
    try:
        if opts.log:
            sinks.append(JsonlLog(opts.log))
        if opts.events:
            listeners = [console.on_event] if hasattr(console, "on_event") else []
            sinks.append(EventLog(opts.events, opts.min_event, opts.min_gap,
                                  background=model.class_names[-1], threshold=model.threshold,
                                  untrained=pipe.options.untrained,
                                  random_features=pipe.options.random_features,
                                  listeners=listeners))
    except BaseException:
        for s in [*sinks, console]:
            s.close()
        raise
    return [*sinks, console]


def run(opts: AppOptions) -> Summary:
    """Build, run to the end, print the summary on stderr; a stream fault is raised after it."""
    pipe = build(opts)
    summary = pipe.run()
    say(("interrupted: " if summary.interrupted else "done: ") + summary.line())
    if opts.log:
        say(f"predictions: {opts.log}" + (f", events: {opts.events}" if opts.events else ""))
    if summary.error is not None:
        raise summary.error
    return summary
