"""Do the faster extractor paths keep a trained model's labels? Every extractor path against
eager fp32 on the same clips, through the product's own offline extraction and a checkpoint.

    python -m benchmarks.extractor_labels --checkpoint runs/demo/model-*/jca.pt \\
        --videos runs/demo/clips-*/videos --annotations runs/demo/clips-*/events.csv --limit 8
    python -m benchmarks.extractor_labels ... --paths openvino bf16 --json runs/labels.json

A faster path is faithful when, on the same frames as eager fp32, (1) the per-segment visual
feature (VGG19 pool5, the mean of the segment's K frames) and the audio embedding (VGGish, as
postprocessed for the model) keep cosine >= COSINE_FLOOR (min over every segment: the run-time
gate of `model.extractors.paths`, there checked on a few generated probes only), and (2) the
checkpoint's model gives the same label (argmax, each 10-segment window of each clip) on at
least MIN_LABEL_AGREEMENT % of the segments.

- The extractors are the checkpoint's feature recipe (frames per segment, preprocessing, weights:
  `random:seed=N` rebuilt from that seed, real weights from the weights cache or
  `--weights-dir`), built by `build_extractors` on the fp32 path: the reference. Every other
  path runs the same networks through `PATHS[name].build`, as `extractor_path="auto"` does.
- Paths: by default every path of `PATHS` that `choose` tries on this CPU (`skip_reason`; the
  others are listed with the reason); `--paths` names some, which then run wherever their
  library is installed (bf16 too where it is emulated). The `fp32` row is a second fp32 run
  against the reference: the floor of run-to-run noise.
- Clips: the annotations' files (`--limit N`: the first N), cut and extracted by
  `model.file_features.extract_file` under `model.extract`'s clip policy, once per path. A file
  that gives no clip is listed and left out; a path that fails is reported as failed.

Output: one line per path on stderr, a markdown table on stdout naming the CPU and the torch and
OpenVINO versions, and everything in `--json OUT`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model.errors import UserError, run_cli
from model.extract import failure, find_video, plan
from model.extractors import Extractors, build_extractors, vgg19
from model.extractors.audio import AudioExtractor
from model.extractors.cpu import CpuInfo, cpu_info, library_versions
from model.extractors.factory import calibration_inputs
from model.extractors.paths import (
    COSINE_FLOOR,
    INT8_COSINE_FLOOR,
    MIN_LABEL_AGREEMENT,
    PATHS,
    REFERENCE,
    BuildEnv,
    PathSpec,
    cosine_floor,
    min_cosine,
    skip_reason,
)
from model.extractors.vggish_frontend import EXAMPLE_FRAMES, NUM_BANDS
from model.extractors.visual import VisualExtractor
from model.file_features import ClipError, ClipPolicy, FileFeatures, extract_file
from model.files import atomic_write_text
from model.inference import load_model
from model.limits import check_range
from model.recipe import FeatureRecipe
from streamer.runtime import check_recipe, random_seed

VISUAL_INPUT = (3, vgg19.IMAGE_SIZE, vgg19.IMAGE_SIZE)  # one preprocessed frame
AUDIO_INPUT = (1, EXAMPLE_FRAMES, NUM_BANDS)  # one log-mel example


# ---- what is compared -------------------------------------------------------------------------

def select_paths(candidates: Mapping[str, PathSpec], names: Sequence[str] | None,
                 info: CpuInfo) -> tuple[dict[str, PathSpec], dict[str, str]]:
    """(the paths to run, the others with why not). Without `names`: those `choose` tries on this
    CPU; named paths run wherever their library is installed."""
    unknown = [n for n in names or () if n not in candidates]
    if unknown:
        raise UserError(f"unknown extractor path {unknown[0]!r}: use {', '.join(candidates)}")
    run: dict[str, PathSpec] = {}
    not_run: dict[str, str] = {}
    for name, spec in candidates.items():
        if names and name not in names:
            continue
        why = spec.missing() if names else skip_reason(spec, info)
        if why is None:
            run[name] = spec
        else:
            not_run[name] = why
    return run, not_run


def reference_extractors(recipe: FeatureRecipe, weights_dir: str | Path | None = None
                         ) -> Extractors:
    """The checkpoint's extractors on eager fp32: its weights (random ones rebuilt from their
    seed), preprocessing and frames per segment."""
    seed = random_seed(recipe.visual_weights)
    return build_extractors(weights_dir=weights_dir, random_weights=recipe.random_weights,
                            seed=0 if seed is None else seed,
                            frames_per_segment=recipe.frames_per_segment,
                            visual_preprocess=recipe.visual_preprocess,
                            audio_postprocess=recipe.audio_postprocess,
                            extractor_path=REFERENCE, offer_random=False)


def on_path(reference: Extractors, name: str, spec: PathSpec, env: BuildEnv) -> Extractors:
    """The reference's networks, preprocessing and postprocessing, run on path `name`."""
    v, a = reference.visual, reference.audio
    visual = VisualExtractor(v.net, v.preprocess, v.options, v.identity,
                             spec.build(v.net, VISUAL_INPUT, env), name)
    audio = AudioExtractor(a.net, a.postprocess, a.pca, a.options, a.identity,
                           spec.build(a.net, AUDIO_INPUT, env), name)
    return Extractors(visual, audio, replace(reference.recipe, visual_path=name, audio_path=name))


def clip_files(videos: Path, annotations: Path, recipe: FeatureRecipe, limit: int | None
               ) -> tuple[dict[str, Path], ClipPolicy, dict[str, str]]:
    """(annotated file -> its video, the clip policy, files not found -> why), as
    `model.extract` reads them."""
    with tempfile.TemporaryDirectory() as tmp:  # plan opens a feature cache; nothing is kept
        job = plan(videos, annotations, Path(tmp), recipe, limit=limit)
    found: dict[str, Path] = {}
    missing: dict[str, str] = {}
    for f in job.files:
        try:
            found[f.file] = find_video(videos, f.file, job.ann.format)
        except ClipError as e:
            missing[f.file] = str(e)
    return found, job.policy, missing


def model_labels(net: nn.Module, ff: FileFeatures) -> np.ndarray:
    """(W, 10) class ids: the model's argmax on each 10-segment window of one file."""
    dtype = next(net.parameters()).dtype
    with torch.inference_mode():
        logits = net(torch.from_numpy(ff.audio).to(dtype), torch.from_numpy(ff.visual).to(dtype))
    return logits.float().argmax(-1).numpy()


def per_segment(x: np.ndarray) -> np.ndarray:
    """(W, 10, ...) -> (W * 10, ...): one item per segment."""
    return x.reshape(-1, *x.shape[2:])


def lowest(so_far: float | None, value: float) -> float:
    """The running minimum; a NaN stays (it must fail the bar)."""
    return value if so_far is None else float(np.minimum(so_far, value))


# ---- one path's figures -----------------------------------------------------------------------

@dataclass
class PathResult:
    path: str
    visual_cosine: float | None = None  # min over segments of cos(segment pool5, fp32's)
    audio_cosine: float | None = None  # min over segments of cos(embedding, fp32's)
    equal: int = 0  # segment labels equal to fp32's
    segments: int = 0
    not_run: str | None = None  # not tried on this CPU, or failed: why

    def add(self, expected: FileFeatures, got: FileFeatures, expected_labels: np.ndarray,
            got_labels: np.ndarray) -> None:
        """One file's features and labels on this path against fp32's."""
        self.visual_cosine = lowest(self.visual_cosine, min_cosine(
            per_segment(expected.visual), per_segment(got.visual)))
        self.audio_cosine = lowest(self.audio_cosine, min_cosine(
            per_segment(expected.audio), per_segment(got.audio)))
        self.equal += int((expected_labels == got_labels).sum())
        self.segments += expected_labels.size

    @property
    def agreement(self) -> float | None:
        """% of segment labels equal to fp32's."""
        return 100.0 * self.equal / self.segments if self.segments else None

    def shortfalls(self) -> list[str]:
        """The bars this path misses (none: it passes)."""
        if self.not_run is not None or self.agreement is None:
            return ["not measured"]
        floor = cosine_floor(self.path)
        out = [f"{what} cosine < {floor}"
               for what, cos in (("pool5", self.visual_cosine), ("embedding", self.audio_cosine))
               if not (cos is not None and cos >= floor)]  # NaN misses too
        if self.agreement < MIN_LABEL_AGREEMENT:
            out.append(f"labels < {MIN_LABEL_AGREEMENT}%")
        return out

    @property
    def passed(self) -> bool:
        return not self.shortfalls()

    def line(self) -> str:
        """One line for stderr."""
        if self.not_run is not None:
            return f"{self.path}: not run ({self.not_run})"
        verdict = "pass" if self.passed else "FAIL (" + ", ".join(self.shortfalls()) + ")"
        return (f"{self.path}: pool5 min cosine {self.visual_cosine:.7f}, embedding min cosine "
                f"{self.audio_cosine:.7f}, labels equal to fp32 on {self.agreement:.2f}% of "
                f"{self.segments} segments: {verdict}")

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "visual_cosine": self.visual_cosine,
                "audio_cosine": self.audio_cosine, "label_agreement": self.agreement,
                "equal": self.equal, "segments": self.segments, "not_run": self.not_run,
                "passed": self.passed}


@dataclass
class Report:
    results: list[PathResult]
    clips: int = 0  # files measured
    segments: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # files that gave no clip: why


def measure(net: nn.Module, reference: Extractors, clips: Mapping[str, Path],
            policy: ClipPolicy, specs: Mapping[str, PathSpec], env: BuildEnv) -> Report:
    """Every path of `specs` against the reference extractors on every clip."""
    results = {name: PathResult(name) for name in specs}
    built: dict[str, Extractors] = {}
    for name, spec in specs.items():
        try:
            built[name] = on_path(reference, name, spec, env)
        except Exception as e:  # a runtime that cannot take a network fails its path only
            results[name].not_run = f"failed: {failure(e)}"
    report = Report(list(results.values()))
    for clip, video in clips.items():
        try:
            expected = extract_file(video, reference, policy)
        except ClipError as e:
            report.skipped[clip] = str(e)
            continue
        expected_labels = model_labels(net, expected)
        report.clips += 1
        report.segments += expected_labels.size
        for name, ex in built.items():
            if results[name].not_run is not None:
                continue
            try:
                got = extract_file(video, ex, policy)
            except Exception as e:
                results[name].not_run = f"failed on {clip}: {failure(e)}"
                continue
            results[name].add(expected, got, expected_labels, model_labels(net, got))
    return report


# ---- output ----------------------------------------------------------------------------------

def cosine_cell(cos: float | None) -> str:
    return "-" if cos is None else f"{cos:.7f}"


def markdown(report: Report, title: str, machine: str) -> str:
    lines = [title, "", machine, "",
             "| path | pool5 min cosine | embedding min cosine | labels equal to fp32 | "
             "passes |", "|---|---|---|---|---|"]
    for r in report.results:
        if r.not_run is not None:
            lines.append(f"| {r.path} | - | - | - | not run: {r.not_run} |")
            continue
        passes = "yes" if r.passed else "no: " + ", ".join(r.shortfalls())
        lines.append(f"| {r.path} | {cosine_cell(r.visual_cosine)} | "
                     f"{cosine_cell(r.audio_cosine)} | {r.agreement:.2f}% ({r.equal}/"
                     f"{r.segments}) | {passes} |")
    lines += ["", f"Passes: both min cosines >= the path's gate floor ({COSINE_FLOOR}; int8 "
              f"{INT8_COSINE_FLOOR}) over every segment and labels equal on >= "
              f"{MIN_LABEL_AGREEMENT}% of segments."]
    lines += [f"Left out: {clip} ({why})" for clip, why in report.skipped.items()]
    return "\n".join(lines)


def machine_line(info: CpuInfo, threads: int) -> str:
    libs = ", ".join(f"{k} {v}" for k, v in library_versions().items())
    return f"CPU: {info.describe()}; {threads} torch threads; {libs}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.extractor_labels", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, type=Path,
                   help="a trained checkpoint (its feature recipe names the extractors)")
    p.add_argument("--videos", required=True, type=Path, help="folder of video files")
    p.add_argument("--annotations", required=True, type=Path,
                   help="AVE Annotations.txt or CSV (file,label,start,end[,split])")
    p.add_argument("--limit", type=int, default=None, help="only the first N annotated files")
    p.add_argument("--paths", nargs="+", default=None, metavar="NAME",
                   help=f"paths to compare (of {', '.join(PATHS)}; default: those tried here)")
    p.add_argument("--weights-dir", default=None, help="where the real extractor weights are")
    p.add_argument("--json", type=Path, default=None, help="write everything here")
    args = p.parse_args(argv)
    if args.limit is not None:
        check_range("--limit", args.limit, 1)
    info = cpu_info()
    specs, not_run = select_paths(PATHS, args.paths, info)
    model = load_model(args.checkpoint)
    if model.recipe is None:
        raise UserError(f"checkpoint {args.checkpoint} records no feature recipe: use one "
                        "written by python -m model.train from extracted features")
    reference = reference_extractors(model.recipe, args.weights_dir)
    check_recipe(model.recipe, reference.recipe, f"checkpoint {args.checkpoint}")
    clips, policy, missing = clip_files(args.videos, args.annotations, reference.recipe,
                                        args.limit)
    if not clips:
        raise UserError(f"none of the annotated files is in {args.videos} (e.g. "
                        f"{next(iter(missing), '')}): check --videos and --annotations")
    env = BuildEnv(torch.get_num_threads(),
                   calibration=calibration_inputs(model.recipe.visual_preprocess))
    k = reference.recipe.frames_per_segment
    print(f"{len(specs)} extractor paths against fp32 on {len(clips)} clips, {k} frames per "
          f"segment; CPU {info.short()}", file=sys.stderr, flush=True)
    report = measure(model.net, reference, clips, policy, specs, env)
    report.skipped = {**missing, **report.skipped}
    report.results += [PathResult(name, not_run=why) for name, why in not_run.items()]
    if report.clips == 0:
        clip, why = next(iter(report.skipped.items()))
        raise UserError(f"no clip could be extracted (e.g. {clip}: {why}); check --videos and "
                        "--annotations")
    for r in report.results:
        print(r.line(), file=sys.stderr)
    title = (f"Extractor paths against eager fp32: labels of {args.checkpoint.name} on "
             f"{report.clips} clips ({report.segments} segments, {k} frames per segment)")
    print(markdown(report, title, machine_line(info, env.threads)))
    if args.json is not None:
        atomic_write_text(args.json, json.dumps({
            "checkpoint": str(args.checkpoint), "recipe": reference.recipe.to_dict(),
            "cpu": info.describe(), "cpu_short": info.short(), "libraries": library_versions(),
            "threads": env.threads, "clips": report.clips, "segments": report.segments,
            "skipped_clips": report.skipped, "cosine_floor": COSINE_FLOOR,
            "min_label_agreement": MIN_LABEL_AGREEMENT,
            "paths": [r.to_dict() for r in report.results]}, indent=2) + "\n")
    return 0

if __name__ == "__main__":
    run_cli(main)
