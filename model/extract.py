"""Video files -> AVE-format feature files (the same extractors and frame sampling as live).

    python -m model.extract --videos clips/ --annotations Annotations.txt --out runs/feats
    python -m model.extract --videos my/ --annotations events.csv --out runs/mine \\
        --frames-per-segment 4 --device cuda --precision fp16
    python -m model.extract ... --random-weights      # untrained features, for trying things out

Annotations:
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

Clip lengths (the AVE format is 10 one-second segments per clip; "duration" = the video's):
- 9.5 s <= duration: long clips give consecutive 10-s windows [0, 10), [10, 20), ... as
  separate clips (`--long-clips windows`, CSV only) and a trailing remainder of at least 9.5 s
  counts as one more window; a shorter remainder is dropped (reported). `--long-clips truncate`
  keeps the first window only. A window whose last second has no frame holds the last frame.
- duration < 9.5 s: `--short-clips pad` (default) holds the last frame and fills silence for
  the missing seconds, labelled background unless an event covers them; `skip` reports it.
- No audio track: reported and skipped (`--no-audio skip`, default) or silent audio
  (`--no-audio silence`). No video track, unreadable or broken files: reported and skipped.
- Any frame rate: each segment's frames are chosen by timestamp with `select_frames` (the live
  rule); any sample rate / channel count: PyAV resamples to 16 kHz, channels are averaged.

Output in `--out`: the AVE-format files of `model.data` (features float32, `recipe.json`,
`categories.txt`), `clips.csv` (row -> file, window start, split) and `extract_summary.json`
(what failed and why). Per-file features are cached in `OUT/clips/` so a rerun skips finished
files; the cache refuses to mix recipes or clip policies.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import av
import numpy as np

from model import data
from model.errors import UserError, run_cli
from model.extractors import Extractors, build_extractors, select_frames, vgg19
from model.extractors.vggish_frontend import SAMPLE_RATE
from model.recipe import FeatureRecipe

SEGMENTS = data.SEGMENTS
MIN_WINDOW_SECONDS = 9.5  # a clip (or a trailing remainder) at least this long is a whole window
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".flv", ".m4v", ".mpg", ".ts")


@dataclass(frozen=True)
class ClipPolicy:
    long_clips: str = "windows"  # "windows" | "truncate"
    short_clips: str = "pad"  # "pad" | "skip"
    no_audio: str = "skip"  # "skip" | "silence"


@dataclass(frozen=True)
class Event:
    label: str  # "" = no event (a background-only file)
    start: float
    end: float


@dataclass
class Source:
    """One video file and what the annotations say about it."""

    file: str  # relative to --videos (AVE: resolved at run time from the video id)
    events: list[Event] = field(default_factory=list)
    split: str | None = None
    lines: list[int] = field(default_factory=list)  # AVE: annotation rows using this file


class ClipError(Exception):
    """This file cannot give a clip (reported in the summary, the batch goes on)."""


# ---- annotations -------------------------------------------------------------------------------

@dataclass
class Annotations:
    format: str  # "ave" | "csv"
    sources: list[Source]
    categories: list[str]
    ave_splits: dict[str, np.ndarray] | None = None  # AVE order files, indices into lines


def _read_categories(path: Path) -> list[str]:
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise UserError(f"categories file {path} is empty: one event class name per line")
    return names


def read_annotations(path: Path, categories_file: Path | None = None) -> Annotations:
    if not path.is_file():
        raise UserError(f"annotations file {path} not found: pass --annotations FILE "
                        "(AVE Annotations.txt or a CSV with header file,label,start,end)")
    first = path.read_text(errors="replace").split("\n", 1)[0]
    ann = read_ave(path) if first.count("&") == 4 else read_csv(path)
    beside = path.parent / "categories.txt"
    if categories_file is None and ann.format == "ave" and beside.is_file():
        categories_file = beside
    if categories_file is not None:
        names = _read_categories(categories_file)
        used = {e.label for s in ann.sources for e in s.events if e.label}
        unknown = sorted(used - set(names))
        if unknown:
            raise UserError(f"labels {unknown[:5]} are not in {categories_file}: add them there "
                            "or fix the annotations")
        ann.categories = names
    if not ann.sources:
        raise UserError(f"{path} has no annotation rows")
    return ann


def read_ave(path: Path) -> Annotations:
    sources: list[Source] = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lower().startswith("category&"):
            continue
        parts = line.strip().split("&")
        if len(parts) != 5:
            raise UserError(f"{path}:{n}: expected Category&VideoID&Quality&Start&End, "
                            f"got {line!r}")
        label, vid, _, start, end = parts
        try:
            ev = Event(label, float(start), float(end))
        except ValueError:
            raise UserError(f"{path}:{n}: Start and End must be numbers, got {line!r}") from None
        sources.append(Source(file=vid, events=[ev], lines=[len(sources)]))
    cats = sorted({s.events[0].label for s in sources})
    splits = None
    orders = [path.parent / f"{k}_order.h5" for k in data.SPLITS]
    if all(p.is_file() for p in orders):
        import h5py
        splits = {}
        for k, p in zip(data.SPLITS, orders, strict=True):
            with h5py.File(p, "r") as f:
                splits[k] = np.asarray(f[data.ORDER_KEY][()], np.int64)
    return Annotations("ave", sources, cats, splits)


def read_csv(path: Path) -> Annotations:
    with open(path, newline="", encoding="utf-8-sig") as f:  # tolerates a spreadsheet's BOM
        reader = csv.DictReader(f)
        cols = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in ("file", "label", "start", "end") if c not in cols]
        if missing:
            raise UserError(f"{path}: missing column(s) {missing}; the header must be "
                            "file,label,start,end (optionally split)")
        by_file: dict[str, Source] = {}
        for n, row in enumerate(reader, 2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            try:
                start, end = float(row["start"] or 0), float(row["end"] or 0)
            except ValueError:
                raise UserError(f"{path}:{n}: start and end must be seconds, got "
                                f"{row['start']!r}, {row['end']!r}") from None
            if not 0 <= start <= end:
                raise UserError(f"{path}:{n}: need 0 <= start <= end, got {start}, {end}")
            split = row.get("split") or None
            if split is not None and split not in data.SPLITS:
                raise UserError(f"{path}:{n}: split must be one of {data.SPLITS}, got {split!r}")
            src = by_file.setdefault(row["file"], Source(file=row["file"], split=split))
            if src.split != split:
                raise UserError(f"{path}:{n}: {row['file']} has rows in splits {src.split} and "
                                f"{split}; one file belongs to one split")
            label = "" if row["label"].lower() in ("", "background") else row["label"]
            if label:
                src.events.append(Event(label, start, end))
    cats = sorted({e.label for s in by_file.values() for e in s.events})
    return Annotations("csv", list(by_file.values()), cats)


def segment_labels(events: list[Event], window_start: float, categories: list[str]) -> np.ndarray:
    """(10,) class ids of one window: the first event covering each segment's midpoint."""
    background = len(categories)
    ids = np.full(SEGMENTS, background, np.int64)
    for t in range(SEGMENTS):
        mid = window_start + t + 0.5
        for e in events:
            if e.label and e.start <= mid < e.end:
                ids[t] = categories.index(e.label)
                break
    return ids


def seeded_splits(n: int, seed: int) -> list[str]:
    """Split name per item: shuffled with `seed`, 10% val, 10% test (>= 1 each when n >= 3)."""
    n_val = max(1, round(0.1 * n)) if n >= 3 else 0
    n_test = max(1, round(0.1 * n)) if n >= 3 else 0
    order = np.random.default_rng(seed).permutation(n)
    names = ["train"] * n
    for rank, i in enumerate(order):
        if rank < n_val:
            names[i] = "val"
        elif rank < n_val + n_test:
            names[i] = "test"
    return names


# ---- decoding ----------------------------------------------------------------------------------

def stream_origin(container: av.container.InputContainer) -> float:
    """Stream time 0 of a file, in its own seconds: the container start, else the earliest stream
    start. Offline extraction and live replay both count segments from here."""
    if container.start_time is not None:
        return container.start_time / 1e6
    starts = [float(s.start_time * s.time_base) for s in container.streams
              if s.start_time is not None and s.time_base is not None]
    return min(starts, default=0.0)


def read_audio(path: Path, origin: float) -> np.ndarray:
    """Whole audio track -> 16 kHz mono float32 on the clip clock (silence before its start)."""
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        resampler = av.AudioResampler(format="fltp", rate=SAMPLE_RATE)  # keeps the channels
        chunks, first = [], None
        for frame in c.decode(stream):
            if first is None:
                first = frame.time
            chunks += [f.to_ndarray().mean(axis=0) for f in resampler.resample(frame)]
        chunks += [f.to_ndarray().mean(axis=0) for f in resampler.resample(None)]
    samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    offset = round(((first or origin) - origin) * SAMPLE_RATE)
    if offset > 0:
        samples = np.concatenate([np.zeros(offset, np.float32), samples])
    return samples[max(0, -offset):]


@dataclass
class Segment:
    frames: list[np.ndarray]  # distinct selected frames, (224, 224, 3) uint8
    counts: list[int]  # how often each was selected (sums to k)
    last: np.ndarray | None = None  # the segment's last frame (held through later gaps)


def iter_segments(path: Path, k: int, origin: float,
                  max_segments: int | None) -> Iterator[tuple[int, Segment, float]]:
    """Decode the video track, yielding (segment index, selected frames, last frame end time).

    Frames are grouped by timestamp into 1-s segments; `select_frames` picks k per segment;
    only picked frames are converted to RGB. Segments with no frame are not yielded.
    """
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or 25)
        current, times, frames = None, [], []

        def close() -> tuple[int, Segment, float]:
            idx = select_frames([t - current for t in times], k)
            unique = sorted(set(idx))
            rgb = [vgg19.resize(frames[i].to_ndarray(format="rgb24")[None])[0] for i in unique]
            last = (rgb[-1] if unique[-1] == len(frames) - 1
                    else vgg19.resize(frames[-1].to_ndarray(format="rgb24")[None])[0])
            seg = Segment(rgb, [idx.count(i) for i in unique], last)
            return current, seg, times[-1] + 1 / rate

        for n, frame in enumerate(c.decode(stream)):
            t = (frame.time if frame.time is not None else n / rate) - origin
            if t < 0:
                continue
            seg = math.floor(t)
            if max_segments is not None and seg >= max_segments:
                break
            if seg != current and current is not None:
                yield close()
                times, frames = [], []
            current = seg
            times.append(t)
            frames.append(frame)
        if current is not None and times:
            yield close()


@dataclass
class FileFeatures:
    audio: np.ndarray  # (W, 10, 128)
    visual: np.ndarray  # (W, 10, 7, 7, 512)
    starts: np.ndarray  # (W,) window start, seconds
    duration: float
    notes: list[str]


def _window_visual(segs: dict[int, Segment], first: int, ex: Extractors,
                   held: Segment | None) -> tuple[np.ndarray, Segment | None]:
    """(10, 7, 7, 512) of segments first..first+9; a segment without frames holds the last
    frame before it (at the very start of a file: the next segment's first sampled frame)."""
    chosen: list[Segment] = []
    for s in range(first, first + SEGMENTS):
        if s in segs:
            chosen.append(segs[s])
            held = Segment([segs[s].last], [1])
        else:
            chosen.append(held)  # type: ignore[arg-type]
    nxt = next((c for c in chosen if c is not None), None)
    if nxt is None:
        raise ClipError("no video frames in this window")
    lead = Segment([nxt.frames[0]], [1])
    chosen = [c if c is not None else lead for c in chosen]
    stack, slots = [], {}
    for c in chosen:
        for f in c.frames:
            if id(f) not in slots:
                slots[id(f)] = len(stack)
                stack.append(f)
    feats = ex.visual.frame_features(np.stack(stack))  # (u, 7, 7, 512)
    out = np.empty((SEGMENTS, *feats.shape[1:]), np.float32)
    for t, c in enumerate(chosen):
        w = np.asarray(c.counts, np.float64) / sum(c.counts)
        out[t] = np.tensordot(w, feats[[slots[id(f)] for f in c.frames]].astype(np.float64), 1)
    return out, held


def extract_file(path: Path, ex: Extractors, policy: ClipPolicy, max_windows: int | None = None,
                 ) -> FileFeatures:
    """Features of every window of one file (see the module docstring for the rules)."""
    k = ex.recipe.frames_per_segment
    try:
        with av.open(str(path)) as c:
            has_video, has_audio = bool(c.streams.video), bool(c.streams.audio)
            origin = stream_origin(c)
    except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise ClipError(f"cannot open ({_short(e)})") from None
    if not has_video:
        raise ClipError("no video track")
    if not has_audio and policy.no_audio == "skip":
        raise ClipError("no audio track (use --no-audio silence to extract it with silence)")
    notes = []
    if has_audio:
        samples = read_audio(path, origin)
    else:
        samples = np.zeros(0, np.float32)
        notes.append("no audio track: silent audio")
    if max_windows is None and policy.long_clips == "truncate":
        max_windows = 1
    max_segments = None if max_windows is None else max_windows * SEGMENTS
    segs: dict[int, Segment] = {}
    visual, held, end = [], None, 0.0
    for s, seg, seg_end in iter_segments(path, k, origin, max_segments):
        segs[s], end = seg, seg_end
        while s >= (len(visual) + 1) * SEGMENTS:  # a later frame closes whole windows
            first = len(visual) * SEGMENTS
            v, held = _window_visual(segs, first, ex, held)
            visual.append(v)
            for old in [i for i in segs if i < first + SEGMENTS]:
                del segs[old]
    duration = end
    if not visual and not segs:
        raise ClipError("no decodable video frames")
    remainder = duration - len(visual) * SEGMENTS
    if segs and remainder >= MIN_WINDOW_SECONDS - 1e-9:
        v, held = _window_visual(segs, len(visual) * SEGMENTS, ex, held)
        visual.append(v)
    elif segs and not visual:  # the whole clip is short
        if policy.short_clips == "skip":
            raise ClipError(f"shorter than {MIN_WINDOW_SECONDS} s ({duration:.2f} s; use "
                            "--short-clips pad to pad it)")
        v, held = _window_visual(segs, 0, ex, held)
        visual.append(v)
        notes.append(f"{duration:.2f} s clip padded to 10 s (last frame held, silence)")
    elif segs and remainder > 0.05:
        notes.append(f"last {remainder:.2f} s dropped (not a whole 10-s window)")
    n_seg = len(visual) * SEGMENTS
    audio_segments = [samples[s * SAMPLE_RATE:(s + 1) * SAMPLE_RATE] for s in range(n_seg)]
    audio = ex.audio.segments(audio_segments).reshape(len(visual), SEGMENTS, -1)
    if len(visual) > 1:
        notes.append(f"{duration:.2f} s -> {len(visual)} windows of 10 s")
    return FileFeatures(audio.astype(np.float32), np.stack(visual).astype(np.float32),
                        np.arange(len(visual), dtype=np.float64) * SEGMENTS, duration, notes)


def _short(e: BaseException) -> str:
    msg = " ".join(str(e).split()) or type(e).__name__
    return msg if len(msg) < 200 else msg[:197] + "..."


# ---- the batch ---------------------------------------------------------------------------------

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


def cache_name(file: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", file.replace(os.sep, "__")) + ".npz"


@dataclass
class Summary:
    clips: int = 0
    files_ok: int = 0
    cached: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _check_cache(cache: Path, recipe: FeatureRecipe, policy: ClipPolicy) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    settings = {"recipe": recipe.to_dict(), "policy": asdict(policy)}
    path = cache / "settings.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if old != settings:
            before = {**old.get("recipe", {}), **old.get("policy", {})}
            now = {**settings["recipe"], **settings["policy"]}
            diff = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
            raise UserError(f"{cache} holds features made with other settings ({', '.join(diff)}):"
                            f" use another --out, or delete {cache} to start over")
    else:
        path.write_text(json.dumps(settings, indent=2) + "\n")


def run(videos: Path, annotations: Path, out: Path, ex: Extractors,
        policy: ClipPolicy = ClipPolicy(), split_seed: int = 0,
        categories_file: Path | None = None, limit: int | None = None,
        progress: bool = False) -> Summary:
    """Extract every annotated file (resumable), then write the AVE-format dataset."""
    if not videos.is_dir():
        raise UserError(f"videos folder {videos} not found: pass --videos DIR")
    ann = read_annotations(annotations, categories_file)
    sources = ann.sources[:limit] if limit else ann.sources
    if ann.format == "ave":  # AVE clips are 10 s: the first window of each file
        policy = ClipPolicy("truncate", policy.short_clips, policy.no_audio)
    cache = out / "clips"
    _check_cache(cache, ex.recipe, policy)
    summary = Summary()
    done: dict[int, Path] = {}
    bar = _progress(progress, len(sources))
    for i, src in enumerate(sources):
        target = cache / cache_name(src.file)
        try:
            if target.is_file():
                summary.cached += 1
            else:
                path = find_video(videos, src.file, ann.format)
                ff = extract_file(path, ex, policy)
                tmp = target.with_name(target.name + ".tmp.npz")
                np.savez(tmp, audio=ff.audio, visual=ff.visual, starts=ff.starts,
                         duration=ff.duration, notes=np.array(ff.notes, dtype=str))
                os.replace(tmp, target)
            with np.load(target) as z:
                notes = [str(n) for n in z["notes"]]
            if notes:
                summary.notes[src.file] = notes
            done[i] = target
            summary.files_ok += 1
        except ClipError as e:
            summary.failed[src.file] = str(e)
        except Exception as e:  # one broken file must never stop the batch
            summary.failed[src.file] = f"{type(e).__name__}: {_short(e)}"
        if bar is not None:
            bar[0].update(bar[1], advance=1, description=src.file[-40:])
    if bar is not None:
        bar[0].stop()
    if not done:
        first = next(iter(summary.failed.items()), ("", "no files"))
        raise UserError(f"no clip could be extracted ({len(summary.failed)} failed, e.g. "
                        f"{first[0]}: {first[1]}); check --videos and the annotations")
    summary.clips, summary.warnings = assemble(out, ann, sources, done, ex.recipe, split_seed)
    write_summary(out, summary, ex.recipe)
    return summary


def assemble(out: Path, ann: Annotations, sources: list[Source], done: dict[int, Path],
             recipe: FeatureRecipe, split_seed: int) -> tuple[int, list[str]]:
    """Write the AVE-format files from the per-file caches -> (number of clips, warnings)."""
    rows: list[tuple[int, int, float]] = []  # (source index, window, start)
    for i in sorted(done):
        with np.load(done[i]) as z:
            rows += [(i, w, float(s)) for w, s in enumerate(z["starts"])]
    labels = np.zeros((len(rows), SEGMENTS, len(ann.categories) + 1), np.float32)
    for r, (i, _, start) in enumerate(rows):
        labels[r, np.arange(SEGMENTS), segment_labels(sources[i].events, start, ann.categories)] = 1
    split_of, given = _splits(ann, sources, rows, split_seed)
    splits = {k: np.array([r for r in range(len(rows)) if split_of[r] == k], np.int64)
              for k in data.SPLITS}
    warnings = []
    if not given and len(rows) < 3:
        warnings.append(f"only {len(rows)} clips, all in train: model.data needs at least one "
                        "clip in each split")
    for k in data.SPLITS:
        if len(splits[k]) == 0:
            warnings.append(f"the {k} split is empty (model.data refuses to open an empty "
                            f"split): give it clips in the annotations")
    data.write_ave_metadata(out, labels, splits, ann.categories, recipe)

    def chunks(key: str) -> Iterator[np.ndarray]:
        for i in sorted(done):
            with np.load(done[i]) as z:
                yield z[key].astype(np.float32)

    n = len(rows)
    data.write_feature_file(out / "audio_feature.h5", (n, SEGMENTS, 128), np.float32,
                            chunks("audio"))
    data.write_feature_file(out / "visual_feature.h5", (n, SEGMENTS, *data.VISUAL_SHAPE),
                            np.float32, chunks("visual"))
    with open(out / "clips.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["row", "file", "window_start", "split"])
        for r, (i, _, start) in enumerate(rows):
            w.writerow([r, sources[i].file, f"{start:g}", split_of[r]])
    return n, warnings


def _splits(ann: Annotations, sources: list[Source], rows: list[tuple[int, int, float]],
            seed: int) -> tuple[list[str], bool]:
    """Split name per row, and whether the split was given (True) or seeded (False)."""
    if ann.format == "ave" and ann.ave_splits is not None:
        line_split = {}
        for k, idx in ann.ave_splits.items():
            line_split.update({int(j): k for j in idx})
        return [line_split.get(sources[i].lines[0], "train") for i, _, _ in rows], True
    if all(s.split for s in sources):
        return [sources[i].split or "train" for i, _, _ in rows], True
    used = sorted({i for i, _, _ in rows})
    if len(used) < 3 <= len(rows):  # too few files to split by file: split the windows
        return seeded_splits(len(rows), seed), False
    by_source = dict(zip(used, seeded_splits(len(used), seed), strict=True))
    return [by_source[i] for i, _, _ in rows], False


def write_summary(out: Path, summary: Summary, recipe: FeatureRecipe) -> None:
    report = {"clips": summary.clips, "files_ok": summary.files_ok, "cached": summary.cached,
              "failed": summary.failed, "notes": summary.notes, "warnings": summary.warnings,
              "random_weights": recipe.random_weights, "recipe": recipe.to_dict()}
    (out / "extract_summary.json").write_text(json.dumps(report, indent=2) + "\n")


def _progress(enabled: bool, total: int) -> tuple[object, object] | None:
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    p = Progress(TextColumn("{task.description:40s}"), BarColumn(), MofNCompleteColumn(),
                 console=Console(stderr=True))
    p.start()
    return p, p.add_task("extracting", total=total)


def main(argv: list[str] | None = None) -> int:
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
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--long-clips", default="windows", choices=("windows", "truncate"))
    p.add_argument("--short-clips", default="pad", choices=("pad", "skip"))
    p.add_argument("--no-audio", default="skip", choices=("skip", "silence"))
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="only the first N annotated files")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    ex = build_extractors(weights_dir=args.weights_dir, random_weights=args.random_weights,
                          seed=args.seed, device=args.device,
                          frames_per_segment=args.frames_per_segment,
                          visual_preprocess=args.visual_preprocess,
                          audio_postprocess=args.audio_postprocess, precision=args.precision,
                          threads=args.threads, batch_size=args.batch_size)
    if ex.recipe.random_weights:
        print("warning: --random-weights: these features are UNTRAINED (recipe.json records "
              "random_weights: true)", file=sys.stderr)
    policy = ClipPolicy(args.long_clips, args.short_clips, args.no_audio)
    s = run(args.videos, args.annotations, args.out, ex, policy, args.split_seed,
            args.categories, args.limit, progress=not args.no_progress and sys.stderr.isatty())
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
