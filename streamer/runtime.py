"""Load once what labels a stream (the model, the feature extractors, the window backend), then
assemble it with any source and sinks into a Pipeline.

    rt = load_runtime(opts)                           # the slow part: weights, extractors, engine
    pipe = assemble(rt, source, [JsonlLog("runs/predictions.jsonl")], lookahead=2)
    summary = pipe.run()
    pipe = assemble(rt, another_source, sinks)        # the same runtime, another stream

main.py (streamer.app) loads one runtime per run; benchmarks.latency assembles one runtime with
many sources and variants (`dataclasses.replace(rt, backend=...)`). Loading says on stderr what
it found: a recipe note, the provenance warning (UNTRAINED / RANDOM FEATURES), what
`--backend auto` picked. Defaults follow the device: on a CPU few enough frames per segment to
keep up in real time (CPU_FRAMES), on a GPU the checkpoint's recipe or the AVE recipe's 16.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from model.calibration import check_precision_allowed
from model.errors import UserError
from model.inference import InferenceModel
from model.inference import load_model as load_inference_model
from model.limits import resolve_device
from model.provenance import Provenance
from model.recipe import FeatureRecipe
from streamer.detector import Detector
from streamer.options import CPU_FRAMES, GPU_FRAMES, AppOptions
from streamer.pipeline import Pipeline, PipelineOptions
from streamer.sinks import Sink
from streamer.sources import Source

if TYPE_CHECKING:
    from model.backends.build import WindowBackend


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Runtime:
    """Everything a stream is labelled with, loaded once; no source, no sinks."""

    model: InferenceModel
    frame_features: Callable[[np.ndarray], np.ndarray]  # (n, H, W, 3) uint8 -> (n, 7, 7, 512)
    audio_features: Callable[[np.ndarray], np.ndarray]  # one segment (16000,) -> (128,)
    backend: WindowBackend  # the window model (any model.backends backend, eager included)
    device: str  # resolved: "cpu", "cuda", "cuda:1"
    frames_per_segment: int  # K for this model on this device, unless a stream says otherwise
    provenance: Provenance  # the model's, or RANDOM FEATURES from random live extractors
    backend_label: str = "eager"  # status line: "aot", "eager bf16", ...
    extractor_precision: str = "fp32"


def load_model(opts: AppOptions) -> InferenceModel:
    """The model these options name: --checkpoint FILE or --random-weights (--seed)."""
    return load_inference_model(opts.checkpoint, opts.random_weights, opts.seed)


def random_seed(identity: str) -> int | None:
    """The seed of a random-weights identity like "random:seed=3"."""
    m = re.fullmatch(r"random:seed=(\d+)", identity)
    return int(m.group(1)) if m else None


def check_recipe(trained: FeatureRecipe, live: FeatureRecipe, what: str) -> list[str]:
    """Strict disagreements -> UserError; tolerated ones come back as note lines."""
    bad = trained.mismatches(live)
    if bad:
        raise UserError(f"{what} was trained on features of another recipe ({'; '.join(bad)}); "
                        "run with the extractor weights and preprocessing it was trained on")
    return trained.notes(live)


def default_frames(model: InferenceModel, device: str) -> int:
    """Frames per segment without --frames-per-segment: CPU_FRAMES on a CPU, else the
    checkpoint's recipe (GPU_FRAMES without one)."""
    if device == "cpu":
        return CPU_FRAMES
    return model.recipe.frames_per_segment if model.recipe is not None else GPU_FRAMES


def build_feature_extractors(opts: AppOptions, model: InferenceModel, device: str,
                             k: int) -> object:
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


def load_runtime(opts: AppOptions) -> Runtime:
    """Model, extractors and backend for these options; user mistakes are UserErrors."""
    from model.backends.build import live_backend

    device = resolve_device(opts.device)
    model = load_model(opts)
    note = check_precision_allowed(model.meta, opts.precision, device)
    if note is not None:
        say(f"note: {note}")
    k = opts.frames_per_segment or default_frames(model, device)
    visual, audio, live_recipe = build_feature_extractors(opts, model, device, k)
    if model.recipe is not None:
        for note in check_recipe(model.recipe, live_recipe, model.name):
            say(f"note: {note}")
    elif opts.checkpoint:
        say(f"warning: {model.name} records no feature recipe; cannot check the live features "
            "match its training features")
    provenance = model.provenance
    if provenance is Provenance.TRAINED and live_recipe.random_weights:
        provenance = Provenance.RANDOM_FEATURES
    if provenance.note:
        say(provenance.note)
    backend = live_backend(opts.backend, model.net, device, opts.precision)
    if opts.backend == "auto":
        say(f"backend: {backend.reason}")
    label = backend.name if backend.precision == "fp32" else f"{backend.name} {backend.precision}"
    return Runtime(model, visual.frame_features, audio, backend, device, k, provenance, label,
                   visual.options.precision)


def assemble(rt: Runtime, source: Source, sinks: Sequence[Sink] = (), *, lookahead: int = 0,
             av_offset: float = 0.0, duration: float | None = None,
             frames_per_segment: int | None = None, incremental: bool = True) -> Pipeline:
    """A Pipeline of this runtime on `source`, calling `sinks` in order for every segment.
    frames_per_segment: None for the runtime's own K."""
    k = frames_per_segment or rt.frames_per_segment
    detector = Detector(rt.backend, rt.model.class_names, lookahead=lookahead,
                        temperature=rt.model.temperature)
    options = PipelineOptions(frames_per_segment=k, av_offset=av_offset, duration=duration,
                              provenance=rt.provenance, incremental=incremental)
    info = {"source": source.name, "device": rt.device, "backend": rt.backend_label,
            "checkpoint": rt.model.name}
    return Pipeline(source, rt.frame_features, rt.audio_features, detector, sinks=sinks,
                    options=options, info=info)
