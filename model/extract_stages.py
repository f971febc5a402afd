"""The stages of `model.extract_ray`'s pipeline and the rows they pass, with no Ray in them:
the decode task (`decode_files`), the VGG19 and VGGish actors (`VisualActor`, `AudioActor`) and
the driver's `Assembler`, which puts a file's windows back together.

A row is one 10-s window of one file (`index` into the job's files, `window`, `last`):
`frames` (m, 224, 224, 3) uint8, its distinct selected frames, and `counts` (10, m), how many
of each segment's k selections each takes; `samples` (10, 16000), its audio; on the last
window `info` holds the file's duration and notes. VGG19 replaces frames and counts by
`visual` (10, 7, 7, 512) and `frames` (how many it saw); VGGish replaces samples by `audio`
(10, 128). A file that gives no clip is one row with `window` ERROR_WINDOW and its message.
Both actors run the extractor path the driver chose; an actor whose machine cannot run it
passes every row on as REFUSED_WINDOW, carrying its one-line reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.extract import find_video
from model.extractors.audio import AudioExtractor
from model.extractors.factory import PathUnavailable, path_runner
from model.extractors.runtime import RunOptions
from model.extractors.visual import VisualExtractor
from model.file_features import ClipError, ClipPolicy, Cut, FileFeatures, cut_windows
from model.items import Frame
from model.layout import AUDIO_DIM, SEGMENTS, VISUAL_SHAPE
from model.segments import ClosedSegment, Shot, compute_features, mean_feature

ERROR_WINDOW = -1  # the `window` of a row that reports a file's ClipError
REFUSED_WINDOW = -2  # ... of a row an actor refused: its machine cannot run the extractor path

Row = dict[str, np.ndarray]  # one-row batch: every column holds one value


# ---- decode + cut (a Ray task per file) ------------------------------------------------------

def one_row(**columns: object) -> Row:
    return {k: np.asarray(v)[None] for k, v in columns.items()}


def window_row(index: int, w: int, window: list[ClosedSegment]) -> Row:
    """Window `w` of file `index`: its distinct selected frames (m, 224, 224, 3) uint8, how many
    of each segment's k selections each frame takes (10, m), its audio (10, 16000)."""
    column: dict[int, int] = {}  # id(shot) -> its frame's column (a held frame is one shot)
    frames = []
    counts = np.zeros((SEGMENTS, sum(len(s.picks) for s in window)), np.int64)
    for i, seg in enumerate(window):
        for shot, n in seg.picks:
            if id(shot) not in column:
                column[id(shot)] = len(frames)
                frames.append(shot.frame.rgb)
            counts[i, column[id(shot)]] += n
    return one_row(index=index, window=w, last=False, info="", frames=np.stack(frames),
                   counts=counts[:, :len(frames)],
                   samples=np.stack([seg.audio for seg in window]))


def error_row(index: int, message: str) -> Row:
    """A file's ClipError. Its arrays are tiny stand-ins: an empty array would change the
    column's type in Ray Data's blocks."""
    return one_row(index=index, window=ERROR_WINDOW, last=True,
                   info=json.dumps({"error": message}), frames=np.zeros((1, 1, 1, 3), np.uint8),
                   counts=np.zeros((1, 1), np.int64), samples=np.zeros((1, 1), np.float32))


def decode_files(batch: dict[str, np.ndarray], *, indices: np.ndarray, names: np.ndarray,
                 videos: str, fmt: str, k: int, policy: ClipPolicy) -> Iterator[Row]:
    """Ray Data task: the files `batch["id"]` picks from `indices` (into the job's files) and
    `names` -> their window rows, the last one flagged and carrying the file's duration and
    notes; a ClipError -> an error row. (numpy arrays: every task reads them from the object
    store without a copy, however long the corpus.)"""
    for i in batch["id"]:
        index, name = int(indices[i]), str(names[i])
        cut = Cut()
        row = None
        try:
            path = find_video(Path(videos), name, fmt)
            for w, window in enumerate(cut_windows(path, k, policy, cut=cut)):
                if row is not None:
                    yield row
                row = window_row(index, w, window)
        except ClipError as e:  # the file cannot give a clip: the same answer on every retry
            yield error_row(index, str(e))
            continue
        assert row is not None  # cut_windows gives a window or raises
        row["last"][0] = True
        row["info"] = np.asarray([json.dumps({"duration": cut.duration, "notes": cut.notes})])
        yield row


# ---- the networks (Ray actors: built once each, fed batches of window rows) -----------------

def window_visual(shots: list[Shot], counts: np.ndarray) -> np.ndarray:
    """(10, 7, 7, 512): each segment's mean over its selections (`model.segments.mean_feature`,
    as the local path takes it), from the window's computed shots and counts (10, m)."""
    return np.stack([mean_feature(tuple((s, int(n)) for s, n in zip(shots, row, strict=True)
                                        if n)) for row in counts])


def refuse(batch: dict[str, np.ndarray], message: str) -> dict[str, np.ndarray]:
    """`batch` as an actor that cannot run the run's extractor path passes it on: every row
    REFUSED_WINDOW with `message` in `info`. (The driver stops the run on the first, in one
    line: a constructor that raised would end in pages of Ray's tracebacks.)"""
    n = len(batch["window"])
    return batch | {"window": np.full(n, REFUSED_WINDOW, np.int64),
                    "info": np.full(n, json.dumps({"refused": message}))}


def computed(batch: dict[str, np.ndarray]) -> list[int]:
    """The rows of `batch` that hold a window to compute (not a file's error, not refused)."""
    return [r for r in range(len(batch["window"])) if batch["window"][r] >= 0]


class VisualActor:
    """VGG19, built once per actor on the run's extractor path: window rows' frames ->
    `visual` (10, 7, 7, 512) and `frames` (how many went through VGG19)."""

    def __init__(self, net, preprocess: str, identity: str, options: dict[str, object],
                 path: str) -> None:
        """`net`: VGG19 in Ray's object store (an ObjectRef), fetched once here. On a machine
        that cannot run `path` every row is refused (`refuse`)."""
        import ray

        net, opts = ray.get(net), RunOptions(**options)
        self.extractor, self.refused = None, None
        try:
            runner = path_runner("vgg19", net, path, opts, preprocess)
        except PathUnavailable as e:
            self.refused = str(e)
            return
        self.extractor = VisualExtractor(net, preprocess, opts, identity, runner, path)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["window"])
        visual = np.zeros((n, SEGMENTS, *VISUAL_SHAPE), np.float32)
        frames = np.zeros(n, np.int64)
        rest = {k: v for k, v in batch.items() if k not in ("frames", "counts")}
        if self.refused is not None:
            return refuse(rest, self.refused) | {"visual": visual, "frames": frames}
        ok = computed(batch)
        shots = {r: [Shot(Frame(0.0, rgb)) for rgb in batch["frames"][r]] for r in ok}
        compute_features([s for r in ok for s in shots[r]], self.extractor.frame_features)
        for r in ok:
            visual[r] = window_visual(shots[r], batch["counts"][r])
            frames[r] = len(shots[r])
        return rest | {"visual": visual, "frames": frames}


class AudioActor:
    """VGGish, built once per actor on the run's extractor path: window rows' `samples` ->
    `audio` (10, 128)."""

    def __init__(self, net, postprocess: str, pca, identity: str, options: dict[str, object],
                 path: str) -> None:
        """`net`: VGGish in Ray's object store (an ObjectRef), fetched once here; `path` as
        VisualActor's."""
        import ray

        net, opts = ray.get(net), RunOptions(**options)
        self.extractor, self.refused = None, None
        try:
            runner = path_runner("vggish", net, path, opts)
        except PathUnavailable as e:
            self.refused = str(e)
            return
        self.extractor = AudioExtractor(net, postprocess, pca, opts, identity, runner, path)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["window"])
        audio = np.zeros((n, SEGMENTS, AUDIO_DIM), np.float32)
        rest = {k: v for k, v in batch.items() if k != "samples"}
        if self.refused is not None:
            return refuse(rest, self.refused) | {"audio": audio}
        ok = computed(batch)
        emb = self.extractor.segments([s for r in ok for s in batch["samples"][r]])
        audio[ok] = emb.reshape(len(ok), SEGMENTS, AUDIO_DIM)
        return rest | {"audio": audio}


# ---- the driver's side: rows back into files -------------------------------------------------

@dataclass
class Assembler:
    """Window rows of many files in any order -> each file's FileFeatures once all its windows
    are in (its last window says how many there are), or its ClipError message."""

    windows: dict[int, dict[int, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    ends: dict[int, tuple[int, dict]] = field(default_factory=dict)  # index -> (windows, info)
    failed: set[int] = field(default_factory=set)

    def add(self, row: dict) -> tuple[int, FileFeatures | str] | None:
        """Take one row -> (file index, its features or its error) when that file is
        complete, else None."""
        index, w = int(row["index"]), int(row["window"])
        if index in self.failed:
            return None
        info = json.loads(str(row["info"])) if row["info"] else {}
        if w == ERROR_WINDOW:
            self.failed.add(index)
            self.windows.pop(index, None)
            self.ends.pop(index, None)
            return index, info["error"]
        self.windows.setdefault(index, {})[w] = (row["audio"], row["visual"])
        if row["last"]:
            self.ends[index] = (w + 1, info)
        if index not in self.ends or len(self.windows[index]) < self.ends[index][0]:
            return None
        n, info = self.ends.pop(index)
        parts = self.windows.pop(index)
        audio, visual = (np.stack([parts[i][j] for i in range(n)]).astype(np.float32)
                         for j in (0, 1))
        return index, FileFeatures(audio, visual, np.arange(n, dtype=np.float64) * SEGMENTS,
                                   info["duration"], list(info["notes"]))
