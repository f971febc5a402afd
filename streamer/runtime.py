"""Load once what labels a stream (the model, the feature extractors, the window backend), then
assemble it with any source and sinks into a Pipeline.

    rt = load_runtime(opts)                           # the slow part: weights, extractors, engine
    pipe = assemble(rt, source, [JsonlLog("runs/predictions.jsonl")], lookahead=2)
    summary = pipe.run()
    pipe = assemble(rt, another_source, sinks)        # the same runtime, another stream

main.py (streamer.app) loads one runtime per run; benchmarks.latency assembles one runtime with
many sources and variants (`dataclasses.replace(rt, backend=...)`). Loading says on stderr what
it found: a recipe note, the provenance warning (UNTRAINED / RANDOM FEATURES), what
`--backend auto` picked, the frames per segment and why, and the lookahead when it comes from
the checkpoint (one trained with `model.train --online` runs at the lookahead it was trained for
unless --lookahead says otherwise). Defaults follow the device: on a CPU
the extractors run on the fastest faithful path of this machine (`extractor_path="auto"`) and K
is `--frames-per-segment auto` (streamer.autok: the largest K <= 16 at real-time factor <= 0.7,
measured once per machine); on a GPU the checkpoint's recipe or the AVE recipe's 16.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from model.calibration import check_precision_allowed
from model.errors import UserError
from model.extractors.realtime import FramesChoice
from model.inference import InferenceModel
from model.inference import load_model as load_inference_model
from model.limits import resolve_device
from model.protocol import online_lookahead
from model.provenance import Provenance
from model.recipe import FeatureRecipe
from streamer import autok
from streamer.detector import Detector
from streamer.options import GPU_FRAMES, AppOptions
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
    frames_reason: str = ""  # how K was picked: "auto (probe): 3 frames per segment: ..."
    frames_note: str = ""  # the dashboard header's short form: "auto, RTF 0.62"
    lookahead: int = 0  # --lookahead, else what the checkpoint was trained online for, else 0


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


def gpu_frames(model: InferenceModel) -> int:
    """Frames per segment on a GPU without --frames-per-segment: the checkpoint's recipe
    (GPU_FRAMES without one)."""
    return model.recipe.frames_per_segment if model.recipe is not None else GPU_FRAMES


def measure_frames(frame_features: Callable[[np.ndarray], np.ndarray],
                   audio_features: Callable[[np.ndarray], np.ndarray], backend: WindowBackend,
                   paths: tuple[str, str], backend_label: str) -> FramesChoice:
    """--frames-per-segment auto: K from this machine's probe, cached per machine key."""
    import torch

    from model.extractors.cpu import cpu_info, machine_key
    from model.extractors.paths import ChoiceCache, cache_dir

    cache = ChoiceCache(cache_dir(), machine_key(cpu_info()))
    slot = autok.probe_slot(*paths, backend_label, torch.get_num_threads())
    return autok.auto_frames(lambda: autok.measure_costs(frame_features, audio_features, backend),
                             cache, slot)


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
        offer_random=False,  # weights go missing only for a model trained on real ones
        seed=opts.seed if seed is None else seed, device=device, frames_per_segment=k,
        visual_preprocess=base.visual_preprocess, audio_postprocess=base.audio_postprocess,
        extractor_path=opts.extractor_path if device == "cpu" else "fp32")


def resolve_lookahead(lookahead: int | None, model: InferenceModel) -> int:
    """--lookahead, else the lookahead an online-trained checkpoint was trained for (said on
    stderr), else 0."""
    if lookahead is not None:
        return lookahead
    trained = online_lookahead(model.meta)
    if trained is None:
        return 0
    say(f"lookahead {trained} s: {model.name} was trained online for it (--lookahead overrides)")
    return trained


def load_runtime(opts: AppOptions) -> Runtime:
    """Model, extractors and backend for these options; user mistakes are UserErrors."""
    from model.backends.build import live_backend

    device = resolve_device(opts.device)
    model = load_model(opts)
    note = check_precision_allowed(model.meta, opts.precision, device)
    if note is not None:
        say(f"note: {note}")
    auto = opts.frames_per_segment is None and device == "cpu"
    k = opts.frames_per_segment or gpu_frames(model)  # auto: replaced after the probe
    extractors = build_feature_extractors(opts, model, device, k)
    visual, audio, live_recipe = extractors
    if extractors.choice is not None:
        say(extractors.choice.describe())
    backend = live_backend(opts.backend, model.net, device, opts.precision)
    if opts.backend == "auto":
        say(f"backend: {backend.reason}")
    label = backend.name if backend.precision == "fp32" else f"{backend.name} {backend.precision}"
    if auto:
        paths = (visual.path, audio.path)
        frames = measure_frames(visual.frame_features, audio, backend, paths, label)
        live_recipe = replace(live_recipe, frames_per_segment=frames.frames)
    else:
        why = "--frames-per-segment" if opts.frames_per_segment else "the recipe on a GPU"
        frames = autok.explicit_frames(k, why)
        if not opts.fast:  # a stream at the clock's pace: its first segment must not wait
            autok.warm_up(visual.frame_features, audio, backend)
    say(frames.reason)
    if model.recipe is not None:
        for note in check_recipe(model.recipe, live_recipe, model.name):
            say(f"note: {note}")
    elif opts.checkpoint:
        say(f"warning: {model.name} records no feature recipe; cannot check the live features "
            "match its training features")
    lookahead = resolve_lookahead(opts.lookahead, model)
    provenance = model.provenance
    if provenance is Provenance.TRAINED and live_recipe.random_weights:
        provenance = Provenance.RANDOM_FEATURES
    if provenance.note:
        say(provenance.note)
    return Runtime(model, visual.frame_features, audio, backend, device, frames.frames,
                   provenance, label, visual.options.precision, frames.reason,
                   autok.header_note(frames), lookahead)


def assemble(rt: Runtime, source: Source, sinks: Sequence[Sink] = (), *,
             lookahead: int | None = None,
             av_offset: float = 0.0, duration: float | None = None,
             frames_per_segment: int | None = None, incremental: bool = True) -> Pipeline:
    """A Pipeline of this runtime on `source`, calling `sinks` in order for every segment.
    frames_per_segment, lookahead: None for the runtime's own."""
    k = frames_per_segment or rt.frames_per_segment
    detector = Detector(rt.backend, rt.model.class_names,
                        lookahead=rt.lookahead if lookahead is None else lookahead,
                        temperature=rt.model.temperature)
    options = PipelineOptions(frames_per_segment=k, av_offset=av_offset, duration=duration,
                              provenance=rt.provenance, incremental=incremental)
    info = {"source": source.name, "device": rt.device, "backend": rt.backend_label,
            "checkpoint": rt.model.name,
            "frames_note": rt.frames_note if k == rt.frames_per_segment else ""}
    return Pipeline(source, rt.frame_features, rt.audio_features, detector, sinks=sinks,
                    options=options, info=info)
