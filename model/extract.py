"""Video files -> AVE-format feature files (the same extractors and segmentation as live).

    python -m model.extract --videos clips/ --annotations Annotations.txt --out runs/feats
    python -m model.extract --videos my/ --annotations events.csv --out runs/mine \\
        --frames-per-segment 4 --device cuda --precision fp16
    python -m model.extract ... --random-weights      # untrained features, for trying things out
    python -m model.extract ... --ray [auto]          # on Ray Data: this machine or a cluster

Annotations (`model.annotations`):
- AVE `Annotations.txt` (`Category&VideoID&Quality&Start&End`, optional header line): one
  output clip per line, from `<videos>/<VideoID>.<any extension>`, the file's first 10 s.
  Segments t with Start <= t < End are the event. Classes: `categories.txt` beside the
  annotations if present (AVE's class order), else sorted names. Splits: the AVE order files
  (`train_order.h5`, `val_order.h5`, `test_order.h5`) beside the annotations if present
  (rows renumbered when clips fail), else the seeded rule below.
- CSV with header `file,label,start,end` (+ optional `split` = train/val/test), times in
  seconds, files relative to `--videos`, any number of events per file (an empty label or
  `background` adds a file with no event). Segment [s, s + 1) takes the label of the first
  event row covering its midpoint s + 0.5 (for whole seconds: Start <= s < End, as AVE).
  Classes: `--categories FILE` or sorted names. Splits: the `split` column, else by file with
  `--split-seed`: shuffle the files, 10% val and 10% test (at least one each from 3 files), the
  rest train; all windows of one file share its split. With fewer than 3 files the windows are
  split instead; fewer than 3 clips all go to train. A split left empty (too few clips, or
  none given to it) is written empty with a warning: `model.data` refuses empty splits.

Clips (`model.file_features`; the AVE format is 10 one-second segments per clip): each file is
cut into segments exactly as a live replay of it is (`model.media` decodes it, including any
frame rate, sample rate and channel layout; `model.segments` cuts it: see docs/STREAMING.md).
- D >= 9.5 s (D = the video's duration): consecutive 10-s windows [0, 10), [10, 20), ... as
  separate clips (`--long-clips windows`, CSV only); a trailing remainder of at least 9.5 s
  counts as one more window, a shorter one is dropped (reported). `--long-clips truncate`
  keeps the first window only. A window whose last second has no frame holds the last frame.
- D < 9.5 s: `--short-clips pad` (default) holds the last frame and fills silence for the
  missing seconds, labelled background unless an event covers them; `skip` reports it.
- No audio track: reported and skipped (`--no-audio skip`, default) or silent audio
  (`--no-audio silence`). No video track, unreadable or broken files, and files cut short
  (data ending over a second before the duration they declare): reported and skipped.

Output in `--out`: the AVE-format files of `model.data` (features float32, `recipe.json`,
`categories.txt`), `clips.csv` (row -> file, window start, split) and `extract_summary.json`
(what failed and why). Per-file features are cached in `OUT/clips/` (`model.feature_cache`) so
a rerun skips finished files, made here or on Ray (`model.extract_ray`, docs/SCALE.md: the same
extractor path either way); the cache refuses to mix recipes (extractor paths included) or clip
policies.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from model import data
from model.annotations import AnnotatedFile, Annotations, read_annotations, segment_labels
from model.errors import UserError, run_cli
from model.extractors import Extractors, build_extractors
from model.feature_cache import FeatureCache
from model.file_features import ClipError, ClipPolicy, extract_file
from model.files import atomic_write_text
from model.layout import AUDIO_DIM, SEGMENTS, SPLITS, VISUAL_SHAPE
from model.limits import EXTRACTOR_PATHS, MAX_SEED, check_range, check_seed
from model.media import short_error
from model.recipe import FeatureRecipe

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".flv", ".m4v", ".mpg", ".ts")
MIN_SPLIT_FILES = 3  # fewer files (or clips) cannot give train, val and test one each
HELD_OUT_FRACTION = 0.1  # of the files (or clips) for val, and again for test


@dataclass
class ExtractSummary:
    clips: int = 0
    files_ok: int = 0
    cached: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def seeded_splits(n: int, seed: int) -> list[str]:
    """Split name per item: shuffled with `seed`, 10% val, 10% test (>= 1 each when n >= 3)."""
    n_held = max(1, round(HELD_OUT_FRACTION * n)) if n >= MIN_SPLIT_FILES else 0
    order = np.random.default_rng(seed).permutation(n)
    names = ["train"] * n
    for rank, i in enumerate(order):
        if rank < n_held:
            names[i] = "val"
        elif rank < 2 * n_held:
            names[i] = "test"
    return names


def find_video(videos: Path, name: str, fmt: str) -> Path:
    path = videos / name
    if path.is_file():
        return path
    if fmt == "ave":
        for ext in VIDEO_EXTENSIONS:
            if (videos / f"{name}{ext}").is_file():
                return videos / f"{name}{ext}"
        hits = sorted(p for p in videos.glob(f"{glob_escape(name)}.*") if p.is_file())
        if hits:
            return hits[0]
    raise ClipError(f"file not found in {videos}")


def glob_escape(name: str) -> str:
    return re.sub(r"([\[\]*?])", r"[\1]", name)


@dataclass
class Job:
    """What one run extracts: the annotated files (after --limit), their clip policy, the cache."""

    videos: Path
    out: Path
    ann: Annotations
    files: list[AnnotatedFile]
    policy: ClipPolicy
    cache: FeatureCache


def plan(videos: Path, annotations: Path, out: Path, recipe: FeatureRecipe,
         policy: ClipPolicy | None = None, categories_file: Path | None = None,
         limit: int | None = None) -> Job:
    """Check the inputs, read the annotations, open the per-file cache (refusing other
    settings): what `run` and `model.extract_ray.run_ray` both start from."""
    if not videos.is_dir():
        raise UserError(f"videos folder {videos} not found: pass --videos DIR")
    ann = read_annotations(annotations, categories_file)
    files = ann.files[:limit] if limit else ann.files
    policy = policy or ClipPolicy()
    if ann.format == "ave":  # AVE clips are 10 s: the first window of each file
        policy = ClipPolicy("truncate", policy.short_clips, policy.no_audio)
    return Job(videos, out, ann, files, policy,
               FeatureCache(out / "clips", recipe, asdict(policy)))


def run(videos: Path, annotations: Path, out: Path, ex: Extractors,
        policy: ClipPolicy | None = None, split_seed: int = 0,
        categories_file: Path | None = None, limit: int | None = None,
        progress: bool = False) -> ExtractSummary:
    """Extract every annotated file (resumable), then write the AVE-format dataset."""
    job = plan(videos, annotations, out, ex.recipe, policy, categories_file, limit)
    summary = ExtractSummary()
    bar = _progress(progress, len(job.files))
    for f in job.files:
        try:
            if job.cache.has(f.file):
                summary.cached += 1
            else:
                job.cache.save(f.file, extract_file(find_video(videos, f.file, job.ann.format),
                                                    ex, job.policy))
        except ClipError as e:
            summary.failed[f.file] = str(e)
        except Exception as e:  # one broken file must never stop the batch
            summary.failed[f.file] = failure(e)
        if bar is not None:
            bar[0].update(bar[1], advance=1, description=f.file[-40:])
    if bar is not None:
        bar[0].stop()
    return finish(job, summary, ex.recipe, split_seed)


def failure(e: Exception) -> str:
    """How an unexpected error of one file is reported in the summary."""
    return f"{type(e).__name__}: {short_error(e)}"


def finish(job: Job, summary: ExtractSummary, recipe: FeatureRecipe,
           split_seed: int) -> ExtractSummary:
    """Once every file of the job is in the cache or in `summary.failed`: the notes, the
    AVE-format dataset (in the annotations' order) and extract_summary.json."""
    done: list[int] = []  # indices into files, in order
    for i, f in enumerate(job.files):
        if f.file in summary.failed:
            continue
        try:
            notes = job.cache.notes(f.file)
        except Exception as e:  # an unreadable cache entry fails its file, not the batch
            summary.failed[f.file] = failure(e)
            continue
        if notes:
            summary.notes[f.file] = notes
        done.append(i)
    summary.files_ok = len(done)
    if not done:
        first = next(iter(summary.failed.items()), ("", "no files"))
        raise UserError(f"no clip could be extracted ({len(summary.failed)} failed, e.g. "
                        f"{first[0]}: {first[1]}); check --videos and the annotations")
    summary.clips, summary.warnings = assemble(job.out, job.ann, job.files, done, job.cache,
                                               recipe, split_seed)
    write_summary(job.out, summary, recipe)
    return summary


def assemble(out: Path, ann: Annotations, files: list[AnnotatedFile], done: list[int],
             cache: FeatureCache, recipe: FeatureRecipe, split_seed: int) -> tuple[int, list[str]]:
    """Write the AVE-format files from the per-file caches -> (number of clips, warnings)."""
    rows: list[tuple[int, float]] = []  # (file index, window start)
    for i in done:
        rows += [(i, float(s)) for s in cache.starts(files[i].file)]
    labels = np.zeros((len(rows), SEGMENTS, len(ann.categories) + 1), np.float32)
    for r, (i, start) in enumerate(rows):
        labels[r, np.arange(SEGMENTS), segment_labels(files[i].events, start, ann.categories)] = 1
    split_of, given = _splits(ann, files, rows, split_seed)
    splits = {k: np.array([r for r in range(len(rows)) if split_of[r] == k], np.int64)
              for k in SPLITS}
    warnings = []
    if not given and len(rows) < MIN_SPLIT_FILES:
        warnings.append(f"only {len(rows)} clips, all in train: model.data needs at least one "
                        "clip in each split")
    for k in SPLITS:
        if len(splits[k]) == 0:
            warnings.append(f"the {k} split is empty (model.data refuses to open an empty "
                            f"split): give it clips in the annotations")
    data.write_ave_metadata(out, labels, splits, ann.categories, recipe)
    names = [files[i].file for i in done]
    n = len(rows)
    data.write_feature_file(out / "audio_feature.h5", (n, SEGMENTS, AUDIO_DIM), np.float32,
                            cache.features(names, "audio"))
    data.write_feature_file(out / "visual_feature.h5", (n, SEGMENTS, *VISUAL_SHAPE), np.float32,
                            cache.features(names, "visual"))
    table = io.StringIO(newline="")
    w = csv.writer(table)
    w.writerow(["row", "file", "window_start", "split"])
    for r, (i, start) in enumerate(rows):
        w.writerow([r, files[i].file, f"{start:g}", split_of[r]])
    atomic_write_text(out / "clips.csv", table.getvalue())
    return n, warnings


def _splits(ann: Annotations, files: list[AnnotatedFile], rows: list[tuple[int, float]],
            seed: int) -> tuple[list[str], bool]:
    """Split name per row, and whether the split was given (True) or seeded (False)."""
    if ann.format == "ave" and ann.ave_splits is not None:
        line_split = {}
        for k, idx in ann.ave_splits.items():
            line_split.update({int(j): k for j in idx})
        return [line_split.get(files[i].lines[0], "train") for i, _ in rows], True
    if all(f.split for f in files):
        return [files[i].split or "train" for i, _ in rows], True
    used = sorted({i for i, _ in rows})
    if len(used) < MIN_SPLIT_FILES <= len(rows):  # too few files to split by file: the windows
        return seeded_splits(len(rows), seed), False
    by_file = dict(zip(used, seeded_splits(len(used), seed), strict=True))
    return [by_file[i] for i, _ in rows], False


def write_summary(out: Path, summary: ExtractSummary, recipe: FeatureRecipe) -> None:
    report = {"clips": summary.clips, "files_ok": summary.files_ok, "cached": summary.cached,
              "failed": summary.failed, "notes": summary.notes, "warnings": summary.warnings,
              "random_weights": recipe.random_weights, "recipe": recipe.to_dict()}
    atomic_write_text(out / "extract_summary.json", json.dumps(report, indent=2) + "\n")


def _progress(enabled: bool, total: int) -> tuple[object, object] | None:
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    p = Progress(TextColumn("{task.description:40s}"), BarColumn(), MofNCompleteColumn(),
                 console=Console(stderr=True))
    p.start()
    return p, p.add_task("extracting", total=total)


def extractor_path(asked: str, device: str, precision: str) -> str:
    """--extractor-path as main.py applies it: auto only on a CPU in fp32. On Ray too: the
    driver decides (auto: this machine's choice) and every actor runs that path."""
    return asked if device == "cpu" and precision == "fp32" else "fp32"


def main(argv: list[str] | None = None) -> int:
    from model.extract_ray import add_ray_args, ray_options, run_ray  # imports no Ray

    p = argparse.ArgumentParser(prog="python -m model.extract", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", required=True, type=Path, help="folder of video files")
    p.add_argument("--annotations", required=True, type=Path,
                   help="AVE Annotations.txt or CSV (file,label,start,end[,split])")
    p.add_argument("--out", required=True, type=Path, help="output dataset folder")
    p.add_argument("--categories", type=Path, default=None, help="event class names, one per line")
    p.add_argument("--weights-dir", default=None)
    p.add_argument("--random-weights", action="store_true",
                   help="untrained extractors (recorded as such in recipe.json)")
    p.add_argument("--seed", type=int, default=0, help="seed of --random-weights")
    p.add_argument("--frames-per-segment", type=int, default=16)
    p.add_argument("--visual-preprocess", default="ave", choices=("ave", "torchvision"))
    p.add_argument("--audio-postprocess", default="ave", choices=("ave", "raw", "pca"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"))
    p.add_argument("--extractor-path", default="auto", choices=EXTRACTOR_PATHS,
                   help="as main.py's: on a CPU in fp32, auto runs each network on the fastest "
                        "path that keeps the fp32 features on this machine (else fp32)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--long-clips", default="windows", choices=("windows", "truncate"))
    p.add_argument("--short-clips", default="pad", choices=("pad", "skip"))
    p.add_argument("--no-audio", default="skip", choices=("skip", "silence"))
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="only the first N annotated files")
    p.add_argument("--no-progress", action="store_true")
    add_ray_args(p)
    args = p.parse_args(argv)
    check_seed(args.seed)  # --frames-per-segment, --batch-size, --threads: build_extractors
    check_range("--split-seed", args.split_seed, 0, MAX_SEED)
    if args.limit is not None:
        check_range("--limit", args.limit, 1)
    on_ray = ray_options(args) if args.ray is not None else None
    # on Ray this process decides the extractor path (on its CPU) and hands the networks to
    # the actors, which run them on that path on --device
    ex = build_extractors(weights_dir=args.weights_dir, random_weights=args.random_weights,
                          seed=args.seed, device="cpu" if on_ray else args.device,
                          frames_per_segment=args.frames_per_segment,
                          visual_preprocess=args.visual_preprocess,
                          audio_postprocess=args.audio_postprocess, precision=args.precision,
                          threads=args.threads, batch_size=args.batch_size,
                          extractor_path=extractor_path(args.extractor_path, args.device,
                                                        args.precision))
    if ex.recipe.random_weights:
        print("warning: --random-weights: these features are UNTRAINED (recipe.json records "
              "random_weights: true)", file=sys.stderr)
    policy = ClipPolicy(args.long_clips, args.short_clips, args.no_audio)
    progress = not args.no_progress and sys.stderr.isatty()
    if on_ray is None:
        s = run(args.videos, args.annotations, args.out, ex, policy, args.split_seed,
                args.categories, args.limit, progress=progress)
    else:
        s = run_ray(args.videos, args.annotations, args.out, ex, policy, args.split_seed,
                    args.categories, args.limit, progress=progress, opts=on_ray)
    print(f"{s.clips} clips from {s.files_ok} files ({s.cached} from cache) -> {args.out}")
    for file, notes in s.notes.items():
        print(f"  note {file}: {'; '.join(notes)}")
    for w in s.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if s.failed:
        print(f"{len(s.failed)} files skipped:")
        for file, reason in s.failed.items():
            print(f"  {file}: {reason}")
    return 0


if __name__ == "__main__":
    run_cli(main)
