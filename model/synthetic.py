"""Synthetic AVE-format datasets whose classes need BOTH modalities.

    python -m model.synthetic --out runs/synth --clips 300 --classes 9 --seed 0
    python -m model.synthetic --out runs/synth_ave --layout-from AVE/labels.h5

Every event class c is a pair (audio pattern, visual pattern). Classes come in blocks of 8:
two share a visual pattern (only audio tells them apart), two share an audio pattern (only vision
does), and four form a 2x2 of two audio and two visual patterns (only the combination does).
A clip holds one event class in one contiguous run of segments, as in AVE; its other segments are
background, and by AVE's definition (an event is both seen and heard) a background segment may
still show the class in ONE modality: each holds nothing, the audio pattern only, or the visual
pattern only. A single-modality model can therefore neither tell every class apart nor find where
an event starts and stops.

Features have the real shapes and AVE-like statistics (non-negative, ReLU-sparse): audio
(10, 128); visual (10, 7, 7, 512) where the object's pattern sits at a 3x3 block of the 7x7 grid
(a random place per clip), so attending to the right positions pays. Each clip is generated from
its own seeded stream, so any clip is the same whatever n_clips is. Class kinds and parameters are
written to synthetic.json beside the AVE files.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np

from model.data import (
    AUDIO_DIM,
    FEATURE_KEY,
    SEGMENTS,
    VISUAL_SHAPE,
    AVEPaths,
    write_ave_metadata,
    write_feature_file,
)
from model.errors import UserError, run_cli
from model.files import atomic_write_text
from model.recipe import FeatureRecipe

BG_KINDS = ("none", "audio", "visual")  # what a background segment of an event clip shows


@dataclass(frozen=True)
class SyntheticOptions:
    audio_strength: float = 8.0  # norm of the audio pattern added to a segment (noise norm ~ 8)
    visual_strength: float = 12.0  # norm of the visual pattern at each object position (~ 16)
    strength_jitter: float = 0.5  # per-segment strength multiplier drawn from 1 +- jitter
    object_size: int = 3  # the object covers object_size x object_size of the 7x7 grid
    min_event: int = 3  # event run length drawn uniformly from min_event..10 (no layout_from)
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)  # train, val, test
    dtype: str = "float32"  # feature dtype on disk ("float64" like the released files)


@dataclass(frozen=True)
class ClassPlan:
    audio_pattern: np.ndarray  # (n_events,) audio pattern id of each event class
    visual_pattern: np.ndarray  # (n_events,) visual pattern id
    kinds: list[str]  # "audio" / "visual": the one modality that separates it; "joint"; "either"


def plan_classes(n_events: int) -> ClassPlan:
    """Assign (audio, visual) pattern pairs to event classes in blocks of 8 (module docstring)."""
    block = [(0, 0), (1, 0), (2, 1), (2, 2), (3, 3), (3, 4), (4, 3), (4, 4)]  # (audio, visual)
    pairs = [(a + 5 * (c // 8), v + 5 * (c // 8)) for c in range(n_events)
             for a, v in [block[c % 8]]]
    audio = np.array([a for a, _ in pairs], dtype=np.int64)
    visual = np.array([v for _, v in pairs], dtype=np.int64)
    kinds = []
    for a, v in pairs:
        audio_alone = (audio == a).sum() == 1
        visual_alone = (visual == v).sum() == 1
        kinds.append({(True, True): "either", (True, False): "audio",
                      (False, True): "visual", (False, False): "joint"}[audio_alone, visual_alone])
    return ClassPlan(audio, visual, kinds)


def _patterns(seed: int, n: int, dim: int, tag: int) -> np.ndarray:
    """n non-negative unit vectors of `dim`, each active on a random quarter of the dims."""
    rng = np.random.default_rng([seed, tag])
    p = rng.random((n, dim)) * (rng.random((n, dim)) < 0.25)
    return p / np.linalg.norm(p, axis=1, keepdims=True)


def _label_shape(path: Path) -> tuple[int, int]:
    try:
        with h5py.File(path, "r") as f:
            shape = f[FEATURE_KEY].shape
    except (OSError, KeyError) as e:
        raise UserError(f"cannot read a label layout from {path} ({e}); pass an AVE-format "
                        "labels.h5") from None
    if len(shape) != 3 or shape[1] != SEGMENTS:
        raise UserError(f"{path}: labels must be (N, {SEGMENTS}, C), got {shape}")
    return shape[0], shape[2]


def _layout(n_clips: int, n_events: int, seed: int, opts: SyntheticOptions,
            layout_from: Path | None) -> np.ndarray:
    """(n_clips, 10) class ids: one event class per clip in one contiguous run, else background."""
    rng = np.random.default_rng([seed, 1])
    if layout_from is not None:
        _, n_real = _label_shape(layout_from)
        with h5py.File(layout_from, "r") as f:
            real = f[FEATURE_KEY][()].argmax(-1)  # (N, 10), background = last class
        real_bg = n_real - 1
        if n_clips > len(real):
            raise UserError(f"{layout_from} has {len(real)} clips, fewer than the {n_clips} "
                            "asked for; lower --clips")
        rows = np.sort(rng.choice(len(real), n_clips, replace=False))
        real = real[rows]
        return np.where(real == real_bg, n_events, real % n_events)
    classes = np.full((n_clips, SEGMENTS), n_events, dtype=np.int64)
    for i in range(n_clips):
        length = int(rng.integers(opts.min_event, SEGMENTS + 1))
        start = int(rng.integers(0, SEGMENTS - length + 1))
        classes[i, start:start + length] = rng.integers(n_events)
    return classes


def _clip(seed: int, i: int, classes: np.ndarray, plan: ClassPlan, audio_p: np.ndarray,
          visual_p: np.ndarray, opts: SyntheticOptions) -> tuple[np.ndarray, np.ndarray]:
    """Features of clip i from its own random stream: audio (10, 128), visual (10, 7, 7, 512)."""
    rng = np.random.default_rng([seed, 2, i])
    n_events = len(plan.kinds)
    audio = np.maximum(rng.standard_normal((SEGMENTS, AUDIO_DIM), dtype=np.float32), 0)
    visual = np.maximum(rng.standard_normal((SEGMENTS, *VISUAL_SHAPE), dtype=np.float32), 0)
    events = classes[classes < n_events]
    if events.size == 0:
        return audio, visual
    c = int(events[0])
    s = opts.object_size
    y, x = rng.integers(0, VISUAL_SHAPE[0] - s + 1, size=2)
    bg_kind = rng.integers(len(BG_KINDS), size=SEGMENTS)
    gain = 1 + opts.strength_jitter * rng.uniform(-1, 1, size=(SEGMENTS, 2))
    for t in range(SEGMENTS):
        is_event = classes[t] == c
        show_audio = is_event or BG_KINDS[bg_kind[t]] == "audio"
        show_visual = is_event or BG_KINDS[bg_kind[t]] == "visual"
        if show_audio:
            audio[t] += opts.audio_strength * gain[t, 0] * audio_p[plan.audio_pattern[c]]
        if show_visual:
            visual[t, y:y + s, x:x + s] += (opts.visual_strength * gain[t, 1]
                                            * visual_p[plan.visual_pattern[c]])
    return audio, visual


def make_dataset(out_dir: str | Path, n_clips: int | None = None, n_classes: int | None = None,
                 seed: int = 0, layout_from: str | Path | None = None,
                 opts: SyntheticOptions | None = None, recipe: FeatureRecipe | None = None,
                 chunk: int = 64) -> AVEPaths:
    """Write a synthetic AVE-format dataset of n_clips clips and n_classes classes (background
    last) to out_dir; returns its paths. layout_from: take the event layout (which segments hold
    an event, and its class modulo n_classes - 1) from a real labels.h5; n_clips and n_classes
    then default to that file's (clips drawn at random when fewer are asked for). Without it
    they default to 300 and 9."""
    opts = opts or SyntheticOptions()
    if layout_from is not None:
        real_clips, real_classes = _label_shape(Path(layout_from))
        n_clips = real_clips if n_clips is None else n_clips
        n_classes = real_classes if n_classes is None else n_classes
    n_clips = 300 if n_clips is None else n_clips
    n_classes = 9 if n_classes is None else n_classes
    if n_classes < 2:
        raise UserError(f"need at least 2 classes (1 event + background), got {n_classes}")
    if n_clips < 3:
        raise UserError(f"need at least 3 clips (one per split), got {n_clips}")
    n_events = n_classes - 1
    plan = plan_classes(n_events)
    audio_p = _patterns(seed, int(plan.audio_pattern.max()) + 1, AUDIO_DIM, 3)
    visual_p = _patterns(seed, int(plan.visual_pattern.max()) + 1, VISUAL_SHAPE[-1], 4)
    classes = _layout(n_clips, n_events, seed, opts, Path(layout_from) if layout_from else None)
    labels = np.eye(n_classes, dtype=np.float32)[classes]  # (N, 10, C)

    perm = np.random.default_rng([seed, 5]).permutation(n_clips)
    n_train = max(1, round(opts.split_fractions[0] * n_clips))
    n_val = max(1, round(opts.split_fractions[1] * n_clips))
    n_train = min(n_train, n_clips - n_val - 1)
    splits = {"train": np.sort(perm[:n_train]), "val": np.sort(perm[n_train:n_train + n_val]),
              "test": np.sort(perm[n_train + n_val:])}
    categories = [f"{kind}_{c}" for c, kind in enumerate(plan.kinds)]

    out = Path(out_dir)
    write_ave_metadata(out, labels, splits, categories, recipe)
    dtype = np.dtype(opts.dtype)
    clips = [(lo, min(lo + chunk, n_clips)) for lo in range(0, n_clips, chunk)]

    def features(which: int):
        for lo, hi in clips:
            yield np.stack([_clip(seed, i, classes[i], plan, audio_p, visual_p, opts)[which]
                            for i in range(lo, hi)]).astype(dtype)

    # each modality in its own pass (clips are regenerated) so only one chunk is ever in memory
    write_feature_file(out / "audio_feature.h5", (n_clips, SEGMENTS, AUDIO_DIM), dtype,
                       features(0))
    write_feature_file(out / "visual_feature.h5", (n_clips, SEGMENTS, *VISUAL_SHAPE), dtype,
                       features(1))
    info = {"generator": "model.synthetic", "n_clips": n_clips, "n_classes": n_classes,
            "seed": seed, "layout_from": str(layout_from) if layout_from else None,
            "options": asdict(opts), "class_kinds": dict(zip(categories, plan.kinds, strict=True)),
            "background_segments_show": list(BG_KINDS)}
    atomic_write_text(out / "synthetic.json", json.dumps(info, indent=2) + "\n")
    return AVEPaths.from_dir(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="directory to write the AVE-format files to")
    ap.add_argument("--clips", type=int, help="clips (default 300, or all of --layout-from)")
    ap.add_argument("--classes", type=int,
                    help="event classes + 1 background (default 9, or --layout-from's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layout-from", help="take the event layout from this labels.h5")
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--audio-strength", type=float, default=SyntheticOptions.audio_strength)
    ap.add_argument("--visual-strength", type=float, default=SyntheticOptions.visual_strength)
    args = ap.parse_args()
    opts = SyntheticOptions(audio_strength=args.audio_strength,
                            visual_strength=args.visual_strength, dtype=args.dtype)
    paths = make_dataset(args.out, args.clips, args.classes, args.seed, args.layout_from, opts)
    info = json.loads((paths.labels.parent / "synthetic.json").read_text())
    print(f"wrote {info['n_clips']} clips, {info['n_classes']} classes to {paths.labels.parent}")


if __name__ == "__main__":
    run_cli(main)
