"""AVE-format feature files: validated lazy reading, writing, and the warm-up window policy.

A dataset directory holds (the conventions of the public AVE feature release):

    visual_feature.h5   dataset "avadataset"  (N, 10, 7, 7, 512)  VGG19 pool5, any float dtype
    audio_feature.h5    dataset "avadataset"  (N, 10, 128)        VGGish embeddings
    labels.h5           dataset "avadataset"  (N, 10, C)          one-hot, background = class C-1
    train_order.h5, val_order.h5, test_order.h5   dataset "order"  (n,) int row indices
    categories.txt      optional, C-1 event class names, one per line (background is implicit)
    recipe.json         optional, the FeatureRecipe the features were made with

    data = open_dataset(AVEPaths.from_dir("runs/ave"))
    for audio, visual, labels in data.batches("train", batch_size=64, seed=0, epoch=1):
        ...  # (B, 10, 128), (B, 10, 7, 7, 512) float32, (B, 10) int64 class ids

Features are read lazily, a batch at a time, and cast to float32 on the fly: the released visual
file is 7.7 GB of float64 and never has to fit in memory. A split can be cached in RAM as float32
(automatic below `cache_limit_bytes`). Shapes, clip counts and order indices are checked once when
the files are opened; NaN/inf features are caught when each clip is first read (`check_finite`
scans everything up front).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from model.classes import BACKGROUND
from model.errors import UserError
from model.files import atomic_path, atomic_write_text, check_room
from model.layout import (
    AUDIO_DIM,
    FEATURE_KEY,
    ORDER_KEY,
    PAD_MODES,
    SEGMENTS,
    SPLITS,
    VISUAL_SHAPE,
)
from model.recipe import FeatureRecipe

DEFAULT_CACHE_LIMIT = 1 << 30  # cache a split in RAM automatically when its float32 features fit


class DataError(UserError):
    """A dataset file is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class AVEPaths:
    visual: Path
    audio: Path
    labels: Path
    train_order: Path
    val_order: Path
    test_order: Path
    categories: Path | None = None  # optional: generic names are used when absent
    recipe: Path | None = None  # optional: recipe.json beside the features

    @classmethod
    def from_dir(cls, directory: str | Path | None = None,
                 **overrides: str | Path | None) -> AVEPaths:
        """Standard file names inside `directory`; any path can be overridden (None = keep)."""
        names = {"visual": "visual_feature.h5", "audio": "audio_feature.h5",
                 "labels": "labels.h5", "train_order": "train_order.h5",
                 "val_order": "val_order.h5", "test_order": "test_order.h5",
                 "categories": "categories.txt", "recipe": "recipe.json"}
        unknown = set(overrides) - set(names)
        if unknown:
            raise TypeError(f"unknown AVEPaths fields: {sorted(unknown)}")
        paths: dict[str, Path | None] = {}
        for key, name in names.items():
            given = overrides.get(key)
            if given is not None:
                paths[key] = Path(given)
            elif directory is not None:
                paths[key] = Path(directory) / name
            else:
                raise DataError(f"no path for {key}: pass --data DIR or --{key.replace('_', '-')} "
                                "PATH")
        for optional in ("categories", "recipe"):  # absent from the directory is fine
            p = paths[optional]
            if overrides.get(optional) is None and p is not None and not p.exists():
                paths[optional] = None
        return cls(**paths)  # type: ignore[arg-type]


def _open_h5(path: Path, key: str, what: str) -> h5py.Dataset:
    if not path.exists():
        raise DataError(f"{what} file not found: {path} (put it in the data directory or pass "
                        "its path explicitly)")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DataError(f"{path} is not a readable HDF5 file ({e}); re-create or re-download "
                        "it") from None
    if key not in f:
        names = sorted(f.keys())
        f.close()
        raise DataError(f"{path} has no dataset {key!r} (found {names}); AVE-format files "
                        f"store {what} under {key!r}")
    return f[key]


def _read_order(path: Path, split: str, n_clips: int) -> np.ndarray:
    ds = _open_h5(path, ORDER_KEY, f"{split} order")
    try:
        if ds.ndim != 1:
            raise DataError(f"{path}: order must be 1-D, got shape {ds.shape}")
        if ds.dtype.kind not in "iu" and ds.dtype.kind != "f":
            raise DataError(f"{path}: order must hold integers, got dtype {ds.dtype}")
        raw = ds[()]
    finally:
        ds.file.close()
    order = raw.astype(np.int64)
    if raw.dtype.kind == "f" and not np.array_equal(order, raw):
        raise DataError(f"{path}: order holds non-integer values")
    if order.size == 0:
        raise DataError(f"{path}: the {split} split is empty; list at least one clip index")
    bad = np.flatnonzero((order < 0) | (order >= n_clips))
    if bad.size:
        raise DataError(f"{path}: index {order[bad[0]]} at position {bad[0]} is out of range "
                        f"for {n_clips} clips; order indices are 0-based rows of the feature "
                        "files")
    uniq, counts = np.unique(order, return_counts=True)
    if (counts > 1).any():
        raise DataError(f"{path}: clip {uniq[counts > 1][0]} is listed more than once")
    return order


def _check_labels(labels: np.ndarray, path: Path) -> None:
    if not np.isfinite(labels).all():
        clip = int(np.flatnonzero(~np.isfinite(labels).reshape(len(labels), -1).all(1))[0])
        raise DataError(f"{path}: non-finite label values in clip {clip}")
    onehot = np.isin(labels, (0.0, 1.0)).all(-1) & (labels.sum(-1) == 1)  # (N, T)
    if not onehot.all():
        clip, seg = (int(i) for i in np.argwhere(~onehot)[0])
        raise DataError(f"{path}: clip {clip} segment {seg} is not one-hot; every segment needs "
                        "exactly one 1 (background = last class)")


def _read_categories(path: Path | None, n_classes: int) -> list[str]:
    if path is None:
        return [f"class_{i}" for i in range(n_classes - 1)] + [BACKGROUND]
    if not path.exists():
        raise DataError(f"categories file not found: {path}")
    try:
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise DataError(f"{path} is not a text file; give one event class name per "
                        "line") from None
    if len(names) == n_classes and names[-1].lower() == BACKGROUND:
        names = names[:-1]
    if len(names) != n_classes - 1:
        raise DataError(f"{path} lists {len(names)} event classes but the labels have "
                        f"{n_classes} classes ({n_classes - 1} events + background); give one "
                        "name per event class, background excluded")
    return [*names, BACKGROUND]


@dataclass
class AVEData:
    """An opened, validated AVE-format dataset. Labels and orders live in memory; features are
    read from the h5 files on demand. Use as a context manager or call close()."""

    paths: AVEPaths
    n_clips: int
    class_names: list[str]  # C names, background last
    labels: np.ndarray  # (N, 10) int64 class ids
    splits: dict[str, np.ndarray]  # split -> clip indices, in file order
    recipe: FeatureRecipe | None
    cache_limit_bytes: int = DEFAULT_CACHE_LIMIT
    _audio: h5py.Dataset | None = field(default=None, repr=False)
    _visual: h5py.Dataset | None = field(default=None, repr=False)
    _cache: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)
    _checked: np.ndarray | None = field(default=None, repr=False)  # (N,) clip already NaN-checked

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def categories(self) -> list[str]:
        """Event class names, background excluded."""
        return self.class_names[:-1]

    def split(self, name: str) -> np.ndarray:
        if name not in self.splits:
            raise DataError(f"unknown split {name!r}; choose one of {list(self.splits)}")
        return self.splits[name]

    def read(self, clips: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Features and labels of `clips` (any order, repeats allowed) as float32 / int64:
        audio (n, 10, 128), visual (n, 10, 7, 7, 512), labels (n, 10)."""
        idx = np.asarray(clips, dtype=np.int64)
        uniq, inverse = np.unique(idx, return_inverse=True)
        audio = self._read_rows(self._audio, uniq, self.paths.audio)  # (u, 10, 128)
        visual = self._read_rows(self._visual, uniq, self.paths.visual)  # (u, 10, 7, 7, 512)
        return audio[inverse], visual[inverse], self.labels[idx]

    def _read_rows(self, ds: h5py.Dataset | None, rows: np.ndarray, path: Path) -> np.ndarray:
        if ds is None:
            raise DataError("dataset is closed")
        out = np.empty((len(rows), *ds.shape[1:]), dtype=np.float32)
        start = 0
        # contiguous runs of sorted rows become one slice read each
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for run in np.split(np.arange(len(rows)), breaks):
            if run.size == 0:
                continue
            lo, hi = int(rows[run[0]]), int(rows[run[-1]]) + 1
            # HDF5 converts to float32 while reading: no float64 copy of the batch is made
            ds.read_direct(out, np.s_[lo:hi], np.s_[start:start + run.size])
            start += run.size
        finite = np.isfinite(out.reshape(len(rows), -1)).all(1)
        if not finite.all():
            clip = int(rows[np.flatnonzero(~finite)[0]])
            raise DataError(f"{path}: clip {clip} has NaN or infinite features; re-extract it or "
                            "drop it from the order files")
        return out

    def cache(self, split: str) -> None:
        """Hold a split's features in RAM as float32."""
        if split not in self._cache:
            audio, visual, _ = self.read(np.sort(self.split(split)))
            self._cache[split] = (audio, visual)

    def split_bytes(self, split: str) -> int:
        """float32 bytes of a split's features (what caching it costs)."""
        per_clip = 4 * SEGMENTS * (AUDIO_DIM + math.prod(VISUAL_SHAPE))
        return per_clip * len(self.split(split))

    def batches(self, split: str, batch_size: int, *, seed: int | None = None, epoch: int = 0,
                cache: bool | None = None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Yield (audio, visual, labels) batches of a split. With a seed the clips are shuffled by
        a permutation that depends only on (seed, epoch), so a resumed run sees the same order.
        cache=None caches the split when it is below cache_limit_bytes."""
        clips = self.split(split)
        if seed is not None:
            clips = clips[np.random.default_rng([seed, epoch]).permutation(len(clips))]
        if cache is None:
            cache = self.split_bytes(split) <= self.cache_limit_bytes
        if cache:
            self.cache(split)
        cached = self._cache.get(split)
        if cached is not None:
            row_of = {int(c): i for i, c in enumerate(np.sort(self.split(split)))}
        for lo in range(0, len(clips), batch_size):
            chunk = clips[lo:lo + batch_size]
            if cached is not None:
                rows = np.fromiter((row_of[int(c)] for c in chunk), np.int64, len(chunk))
                yield cached[0][rows], cached[1][rows], self.labels[chunk]
            else:
                yield self.read(chunk)

    def check_finite(self, chunk: int = 16) -> None:
        """Scan every clip for NaN/inf features (reads all of both feature files once)."""
        for lo in range(0, self.n_clips, chunk):
            rows = np.arange(lo, min(lo + chunk, self.n_clips))
            self._read_rows(self._audio, rows, self.paths.audio)
            self._read_rows(self._visual, rows, self.paths.visual)

    def close(self) -> None:
        for ds in (self._audio, self._visual):
            if ds is not None and ds.id.valid:
                ds.file.close()
        self._audio = self._visual = None
        self._cache.clear()

    def __enter__(self) -> AVEData:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_dataset(paths: AVEPaths, cache_limit_bytes: int = DEFAULT_CACHE_LIMIT) -> AVEData:
    """Open and validate an AVE-format dataset (see the module docstring for the layout)."""
    lab_ds = _open_h5(paths.labels, FEATURE_KEY, "labels")
    try:
        if lab_ds.ndim != 3 or lab_ds.shape[1] != SEGMENTS or lab_ds.shape[2] < 2:
            raise DataError(f"{paths.labels}: labels must have shape (N, {SEGMENTS}, C) with C >= 2"
                            f" (one-hot, background last), got {lab_ds.shape}")
        onehot = lab_ds[()].astype(np.float32)
    finally:
        lab_ds.file.close()
    _check_labels(onehot, paths.labels)
    n_clips, n_classes = onehot.shape[0], onehot.shape[2]
    class_names = _read_categories(paths.categories, n_classes)

    audio = _open_h5(paths.audio, FEATURE_KEY, "audio features")
    visual: h5py.Dataset | None = None
    try:
        visual = _open_h5(paths.visual, FEATURE_KEY, "visual features")
        for ds, path, shape in ((audio, paths.audio, (AUDIO_DIM,)),
                                (visual, paths.visual, VISUAL_SHAPE)):
            want = (SEGMENTS, *shape)
            if ds.ndim != 2 + len(shape) or ds.shape[1:] != want:
                raise DataError(f"{path}: features must have shape (N, {', '.join(map(str, want))})"
                                f", got {ds.shape}")
            if ds.dtype.kind not in "fiu":
                raise DataError(f"{path}: features must be numeric, got dtype {ds.dtype}")
            if ds.shape[0] != n_clips:
                raise DataError(f"clip counts disagree: {path} has {ds.shape[0]} clips, "
                                f"{paths.labels} has {n_clips}; all files must list the same clips"
                                " in the same order")
        splits = {"train": _read_order(paths.train_order, "train", n_clips),
                  "val": _read_order(paths.val_order, "val", n_clips),
                  "test": _read_order(paths.test_order, "test", n_clips)}
        for i, a in enumerate(SPLITS):
            for b in SPLITS[i + 1:]:
                shared = np.intersect1d(splits[a], splits[b])
                if shared.size:
                    raise DataError(f"clip {shared[0]} is in both the {a} and {b} splits "
                                    f"({shared.size} clips shared); splits must not overlap")
        recipe = None
        if paths.recipe is not None:
            if not paths.recipe.exists():
                raise DataError(f"recipe file not found: {paths.recipe}")
            try:
                recipe = FeatureRecipe.load(paths.recipe)
            except (ValueError, TypeError) as e:
                raise DataError(f"{paths.recipe} is not a valid feature recipe: {e}") from None
    except BaseException:
        audio.file.close()
        if visual is not None:
            visual.file.close()
        raise
    return AVEData(paths=paths, n_clips=n_clips, class_names=class_names,
                   labels=onehot.argmax(-1).astype(np.int64), splits=splits, recipe=recipe,
                   cache_limit_bytes=cache_limit_bytes, _audio=audio, _visual=visual)


def write_feature_file(path: str | Path, shape: tuple[int, ...], dtype: np.dtype | type,
                       chunks: Iterator[np.ndarray] | Sequence[np.ndarray],
                       key: str = FEATURE_KEY) -> None:
    """Write an h5 dataset of `shape` from consecutive chunks along axis 0, atomically (a
    temporary file renamed into place), so a large feature file never has to be in memory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    check_room(path, math.prod(shape) * np.dtype(dtype).itemsize)
    with atomic_path(path, suffix=".h5") as tmp, h5py.File(tmp, "w") as f:
        ds = f.create_dataset(key, shape=shape, dtype=dtype)
        row = 0
        for chunk in chunks:
            ds[row:row + len(chunk)] = chunk
            row += len(chunk)
        if row != shape[0]:
            raise ValueError(f"{path}: got {row} rows, expected {shape[0]}")


def write_ave_metadata(out_dir: str | Path, labels: np.ndarray,
                       splits: dict[str, Sequence[int] | np.ndarray], categories: Sequence[str],
                       recipe: FeatureRecipe | None = None) -> None:
    """Write labels.h5, the three order files, categories.txt and (if given) recipe.json."""
    out = Path(out_dir)
    labels = np.asarray(labels)
    n = len(labels)
    if labels.ndim != 3 or labels.shape[1] != SEGMENTS:
        raise ValueError(f"labels must be (N, {SEGMENTS}, C), got {labels.shape}")
    if len(categories) != labels.shape[2] - 1:
        raise ValueError(f"{len(categories)} categories for {labels.shape[2]} label classes; "
                         "give the event classes only (background is the last label class)")
    if set(splits) != set(SPLITS):
        raise ValueError(f"splits must have exactly the keys {SPLITS}, got {sorted(splits)}")
    labels = labels.astype(np.float32)
    _check_labels(labels, out / "labels.h5")
    orders = {k: np.asarray(v, dtype=np.int64) for k, v in splits.items()}
    for k, order in orders.items():
        if order.ndim != 1 or ((order < 0) | (order >= n)).any():
            raise ValueError(f"split {k}: indices must be 1-D and in [0, {n})")
    out.mkdir(parents=True, exist_ok=True)
    write_feature_file(out / "labels.h5", labels.shape, np.float32, [labels])
    for k, order in orders.items():
        write_feature_file(out / f"{k}_order.h5", order.shape, np.int64, [order], key=ORDER_KEY)
    atomic_write_text(out / "categories.txt", "".join(f"{c}\n" for c in categories))
    if recipe is not None:
        recipe.save(out / "recipe.json")
    elif (out / "recipe.json").exists():
        (out / "recipe.json").unlink()  # a stale recipe would describe other features


def write_ave_dataset(out_dir: str | Path, audio: np.ndarray, visual: np.ndarray,
                      labels: np.ndarray, splits: dict[str, Sequence[int] | np.ndarray],
                      categories: Sequence[str], recipe: FeatureRecipe | None = None) -> AVEPaths:
    """Write an AVE-format dataset: audio (N, 10, 128), visual (N, 10, 7, 7, 512) (float dtype
    kept), labels (N, 10, C) one-hot with background last (stored float32), splits
    {"train": idx, "val": idx, "test": idx}, categories = the C-1 event class names (no
    background), recipe -> recipe.json. Each file is written atomically. Returns its paths."""
    audio, visual = np.asarray(audio), np.asarray(visual)
    n = len(labels)
    if audio.shape != (n, SEGMENTS, AUDIO_DIM):
        raise ValueError(f"audio must be ({n}, {SEGMENTS}, {AUDIO_DIM}), got {audio.shape}")
    if visual.shape != (n, SEGMENTS, *VISUAL_SHAPE):
        raise ValueError(f"visual must be ({n}, {SEGMENTS}, 7, 7, 512), got {visual.shape}")
    write_ave_metadata(out_dir, labels, splits, categories, recipe)
    out = Path(out_dir)
    write_feature_file(out / "audio_feature.h5", audio.shape, audio.dtype, [audio])
    write_feature_file(out / "visual_feature.h5", visual.shape, visual.dtype, [visual])
    return AVEPaths.from_dir(out)


# ---------------------------------------------------------------------------------------------
# Warm-up padding and lookahead: how a live stream's 10-segment window is built. The streamer's
# detector and the streaming accuracy of model.evaluate both use these functions.


def window_end(t: int, k: int, n_available: int | None = None) -> int:
    """Index of the newest segment in the window that labels segment t with lookahead k: t + k,
    or the last segment of a finished stream (flush) when t + k is past its end."""
    end = t + k
    return end if n_available is None else min(end, n_available - 1)


def window_for_segment(features: np.ndarray, t: int, k: int, pad: str = "repeat-first",
                       n_available: int | None = None) -> tuple[np.ndarray, int]:
    """The 10-segment model window that labels segment t of a stream with lookahead k.

    features: (n, ...) per-segment features of the stream so far (segment 0 = stream start).
    Returns (window (10, ...), position of segment t inside it). The window ends at segment
    e = window_end(t, k, n) and holds segments max(0, e - 9) .. e; while e < 9 it is left-padded
    with 9 - e copies of segment 0 ("repeat-first") or zeros ("zeros"). Before the end of the
    stream the labelled position is always 9 - k; at the end of a stream the remaining segments
    are labelled from the last window (position 9 - (e - t)).
    """
    if pad not in PAD_MODES:
        raise ValueError(f"pad must be one of {PAD_MODES}, got {pad!r}")
    n = len(features) if n_available is None else n_available
    if not 0 <= t < n:
        raise ValueError(f"segment {t} not in a stream of {n} segments")
    if not 0 <= k < SEGMENTS:
        raise ValueError(f"lookahead must be in 0..{SEGMENTS - 1}, got {k}")
    e = window_end(t, k, n)
    seen = features[max(0, e - SEGMENTS + 1):e + 1]
    n_pad = SEGMENTS - len(seen)
    if n_pad:
        filler = (np.repeat(features[:1], n_pad, axis=0) if pad == "repeat-first"
                  else np.zeros((n_pad, *features.shape[1:]), dtype=features.dtype))
        seen = np.concatenate([filler, seen], axis=0)
    return seen, SEGMENTS - 1 - (e - t)
