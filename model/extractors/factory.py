"""Build both extractors and the FeatureRecipe that describes them.

    ex = build_extractors()                               # AVE recipe, cached weights
    ex = build_extractors(random_weights=True, seed=0)    # untrained, for demos and tests
    visual, audio, recipe = ex

Weights by recipe: visual "ave" -> Keras VGG19 (`vgg19-keras`), "torchvision" -> torchvision
VGG19 (`vgg19-torchvision`); audio -> the PyTorch VGGish port (`vggish`), else torchaudio's
`vggish.pt` if only that is cached; "pca" also needs `vggish-pca`. Explicit files may be
given instead (`visual_weights_file=`, `audio_weights_file=`, `pca_file=`).

How the networks run on the CPU: `extractor_path="fp32"` (eager fp32, the default), or "auto":
each network on the fastest path that keeps its features (`model.extractors.paths`), chosen
once per machine and cached (`cache_dir=`, else `$JCA_LIVE_CACHE` or `~/.cache/jca-live`);
`Extractors.choice` then says what was picked and why. A path chosen on another machine (a Ray
run's driver) is built here by `path_runner`, which refuses, naming this machine, a path this
machine cannot run.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from model import weights
from model.errors import UserError
from model.extractors import paths, vgg19, vggish
from model.extractors.audio import AudioExtractor
from model.extractors.cpu import cpu_info, machine_key
from model.extractors.paths import PathChoice
from model.extractors.runtime import Runner, RunOptions, eager_path
from model.extractors.vggish_frontend import EXAMPLE_FRAMES, NUM_BANDS, segment_example
from model.extractors.visual import VisualExtractor
from model.limits import EXTRACTOR_PATHS, check_frames_per_segment
from model.recipe import RANDOM_PREFIX, FeatureRecipe

VISUAL_WEIGHTS = {"ave": "vgg19-keras", "torchvision": "vgg19-torchvision"}
INPUT_SHAPES = {"vgg19": (3, vgg19.IMAGE_SIZE, vgg19.IMAGE_SIZE),  # one item, as the paths take it
                "vggish": (1, EXAMPLE_FRAMES, NUM_BANDS)}


@dataclass(frozen=True)
class Extractors:
    visual: VisualExtractor
    audio: AudioExtractor
    recipe: FeatureRecipe
    choice: PathChoice | None = None  # with extractor_path="auto": the paths and why

    def __iter__(self) -> Iterator[object]:  # `visual, audio, recipe = build_extractors()`
        return iter((self.visual, self.audio, self.recipe))


def _find(names: list[str], directory: Path) -> Path | None:
    for name in names:
        path = directory / weights.REGISTRY[name].filename
        if path.is_file():
            return path
    return None


def build_extractors(weights_dir: str | Path | None = None, random_weights: bool = False,
                     seed: int = 0, device: str = "cpu", frames_per_segment: int = 16,
                     visual_preprocess: str = "ave", audio_postprocess: str = "ave",
                     precision: str = "fp32", channels_last: bool = True,
                     threads: int | None = None, batch_size: int = 16,
                     visual_weights_file: str | Path | None = None,
                     audio_weights_file: str | Path | None = None,
                     pca_file: str | Path | None = None, extractor_path: str = "fp32",
                     cache_dir: str | Path | None = None,
                     offer_random: bool = True) -> Extractors:
    """Both extractors + their recipe. Missing weights (and not random) -> one-line UserError
    naming the fetch command, and --random-weights when `offer_random` (a caller whose model was
    trained on these weights passes False: random features would not fit it)."""
    if extractor_path not in EXTRACTOR_PATHS:
        raise UserError(f"unknown extractor path {extractor_path!r}: use "
                        f"{' or '.join(EXTRACTOR_PATHS)}")
    if extractor_path == "auto" and (device != "cpu" or precision != "fp32"):
        raise UserError(f"extractor path auto chooses the precision on the CPU itself: use it "
                        f"with --device cpu --precision fp32, not {device} {precision}")
    if visual_preprocess not in VISUAL_WEIGHTS:
        raise UserError(f"unknown visual preprocessing {visual_preprocess!r}: use "
                        f"{' or '.join(VISUAL_WEIGHTS)}")
    if audio_postprocess not in vggish.POSTPROCESS:
        raise UserError(f"unknown audio postprocess {audio_postprocess!r}: use one of "
                        f"{', '.join(vggish.POSTPROCESS)}")
    check_frames_per_segment(frames_per_segment)
    opts = RunOptions(device=device, precision=precision, channels_last=channels_last,
                      threads=threads, batch_size=batch_size)
    vnet, anet, pca = vgg19.VGG19(), vggish.VGGish(), None
    if random_weights:
        vnet.init_random(seed)
        anet.init_random(seed + 1)
        vid = aid = f"{RANDOM_PREFIX}:seed={seed}"
        if audio_postprocess == "pca":  # a seeded rotation, zero means
            q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((128, 128)))
            pca = (q, np.zeros(128))
    else:
        directory = weights.weights_dir(weights_dir)
        wanted = {"visual": (visual_weights_file, [VISUAL_WEIGHTS[visual_preprocess]]),
                  "audio": (audio_weights_file, ["vggish", "vggish-torchaudio"])}
        if audio_postprocess == "pca":
            wanted["pca"] = (pca_file, ["vggish-pca"])
        paths: dict[str, Path] = {}
        missing = []
        for role, (given, names) in wanted.items():
            if given is not None:
                if not Path(given).is_file():
                    raise UserError(f"{role} weights file {given} not found: check the path")
                paths[role] = Path(given)
            elif (found := _find(names, directory)) is not None:
                paths[role] = found
            else:
                missing.append(weights.REGISTRY[names[0]])
        if missing:
            files = ", ".join(w.filename for w in missing)
            urls = " ".join(w.url for w in missing)
            alternative = " (or pass --random-weights for untrained features)"
            raise UserError(
                f"missing extractor weights {files} in {directory}: run `python -m model.weights "
                f"fetch {' '.join(w.name for w in missing)} --weights-dir {directory}`, or "
                f"download {urls} by hand into that folder{alternative if offer_random else ''}")
        vnet.load_state_dict(vgg19.load_vgg19_weights(paths["visual"]))
        anet.load_state_dict(vggish.load_vggish_weights(paths["audio"]))
        vid, aid = weights.identity(paths["visual"]), weights.identity(paths["audio"])
        if "pca" in paths:
            pca = vggish.load_pca_params(paths["pca"])
            aid = f"{aid}+pca:{weights.identity(paths['pca'])}"
    recipe = FeatureRecipe(visual_weights=vid, visual_preprocess=visual_preprocess,
                           frames_per_segment=frames_per_segment, audio_weights=aid,
                           audio_postprocess=audio_postprocess, sample_rate=16000,
                           image_size=vgg19.IMAGE_SIZE, precision=precision, resize=vgg19.RESIZE)
    if extractor_path == "fp32":
        visual = VisualExtractor(vnet, visual_preprocess, opts, vid)
        audio = AudioExtractor(anet, audio_postprocess, pca, opts, aid)
        return Extractors(visual, audio, replace(recipe, visual_path=visual.path,
                                                 audio_path=audio.path))
    choice, vrun, arun = _choose_paths(vnet, anet, visual_preprocess, vid, aid, opts, cache_dir)
    return Extractors(
        VisualExtractor(vnet, visual_preprocess, opts, vid, vrun, choice.visual.path),
        AudioExtractor(anet, audio_postprocess, pca, opts, aid, arun, choice.audio.path),
        replace(recipe, visual_path=choice.visual.path, audio_path=choice.audio.path), choice)


def network_inputs(visual_preprocess: str, n: int = paths.PROBE_ITEMS, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Generated network inputs: n frames (n, 3, 224, 224) as `visual_preprocess` makes them and
    n log-mel examples (n, 1, 96, 64); seed 0 is the gate's probe set."""
    frames = vgg19.preprocess(paths.probe_rgb(n, seed=seed), visual_preprocess)
    examples = np.stack([segment_example(s) for s in paths.probe_segments(n, seed=seed)])[:, None]
    return frames, examples


def calibration_inputs(visual_preprocess: str) -> dict[str, np.ndarray]:
    """What the int8 paths are calibrated on: generated inputs other than the probe set."""
    frames, examples = network_inputs(visual_preprocess, paths.CALIBRATION_ITEMS,
                                      paths.CALIBRATION_SEED)
    return {"vgg19": frames, "vggish": examples}


def _choose_paths(vnet: vgg19.VGG19, anet: vggish.VGGish, visual_preprocess: str, vid: str,
                  aid: str, opts: RunOptions,
                  directory: str | Path | None) -> tuple[PathChoice, Runner, Runner]:
    """Each network's path on this CPU (cached per machine) and its runner."""
    info = cpu_info()
    root = paths.cache_dir(directory)
    env = _build_env(opts, root / "extractors", visual_preprocess)
    cache = paths.ChoiceCache(root, machine_key(info))
    frames, examples = network_inputs(visual_preprocess)
    visual, vrun = paths.choose("vgg19", vnet, frames, identity=vid, env=env,
                                cache=cache, info=info)
    audio, arun = paths.choose("vggish", anet, examples, identity=aid, env=env,
                               cache=cache, info=info)
    return PathChoice(info.short(), visual, audio), vrun, arun


def _build_env(opts: RunOptions, engines: Path | None, visual_preprocess: str) -> paths.BuildEnv:
    """The paths' threads, where their exported programs are kept (None: nowhere) and what the
    int8 paths are calibrated on."""
    return paths.BuildEnv(opts.threads or torch.get_num_threads(), engines,
                          calibration_inputs(visual_preprocess))


class PathUnavailable(UserError):
    """This machine cannot run the extractor path a run chose (on its driver's machine)."""


def path_runner(network: str, net: torch.nn.Module, path: str, opts: RunOptions,
                visual_preprocess: str = "ave") -> Runner | None:
    """`network` (fp32 weights in `net`) on the extractor path `path`, chosen elsewhere: None for
    the eager path `opts` name (`eager_path`), else the runner of `paths.PATHS[path]` (exported
    programs converted here, kept nowhere: this may be a worker of a cluster). A machine that
    cannot run that path raises PathUnavailable naming it (host, CPU) and why, rather than run
    another path in its place. `visual_preprocess`: VGG19's, for the int8 calibration inputs."""
    if path == eager_path(opts):
        return None
    info = cpu_info()
    spec = paths.PATHS.get(path)
    if spec is None:
        why = "no such path in this version of jca-live"
    elif opts.device != "cpu":
        why = f"it is a CPU path and the networks run on {opts.device}"
    else:
        why = paths.cannot_run(spec, info)
    if why is not None:
        raise PathUnavailable(
            f"machine {socket.gethostname()} ({info.short()}) cannot run "
            f"{paths.NETWORK_NAMES[network]} on extractor path {path}, which this run uses: "
            f"{why}; fix that machine or leave it out, or run with --extractor-path fp32")
    return spec.build(net, INPUT_SHAPES[network], _build_env(opts, None, visual_preprocess))
