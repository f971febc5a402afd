"""Event annotations of media files: AVE `Annotations.txt` and the project's CSV, one reader.

    ann = read_annotations(Path("events.csv"))          # or Annotations.txt
    for f in ann.files:                                 # AnnotatedFile: file, events, split
        ids = segment_labels(f.events, 0.0, ann.categories)   # (10,) class ids, background last

Formats:
- AVE `Annotations.txt`: `Category&VideoID&Quality&Start&End` lines (an optional header line
  `Category&...`), one file per line, named by its video id. Classes: `categories.txt` beside
  the annotations if present (AVE's class order), else sorted names. Splits: the AVE order files
  (`train_order.h5`, `val_order.h5`, `test_order.h5`) beside it, if present, index the lines.
- CSV with header `file,label,start,end` (+ optional `split` = train/val/test), times in
  seconds, any number of events per file; an empty label or `background` lists a file with no
  event. Classes: sorted names.
A `categories` file (one class name per line) replaces the class list of either.

Labels: second t (seconds from `start`) takes the label of the first event covering its middle,
t + 0.5 (for whole seconds: Start <= t < End, as AVE); background where none does.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.classes import BACKGROUND
from model.errors import UserError
from model.layout import ORDER_KEY, SEGMENTS, SPLITS

AVE_FIELDS = 5  # Category&VideoID&Quality&Start&End
CSV_COLUMNS = ("file", "label", "start", "end")


@dataclass(frozen=True)
class AnnotatedEvent:
    label: str
    start: float  # seconds
    end: float


@dataclass
class AnnotatedFile:
    """One media file and what the annotations say about it."""

    file: str  # CSV: relative to the videos folder; AVE: the video id
    events: list[AnnotatedEvent] = field(default_factory=list)
    split: str | None = None
    lines: list[int] = field(default_factory=list)  # AVE: annotation rows using this file


@dataclass
class Annotations:
    format: str  # "ave" | "csv"
    files: list[AnnotatedFile]
    categories: list[str]
    ave_splits: dict[str, np.ndarray] | None = None  # AVE order files, indices into lines


def detect_format(text: str) -> str | None:
    """"ave" or "csv" by the first line of `text` that is not empty, None if neither."""
    first = next((ln for ln in text.lstrip("\ufeff").splitlines() if ln.strip()), "")
    if "&" in first:
        return "ave"
    names = {c.strip().lower() for c in first.split(",")}
    return "csv" if set(CSV_COLUMNS) <= names else None


def parse_annotations(text: str, name: str) -> Annotations:
    """Annotations in either format from their text (`name` says where, in messages); an
    unknown format is read as a CSV, which names the columns it misses."""
    return _parse_ave(text, name) if detect_format(text) == "ave" else _parse_csv(text, name)


def read_annotations(path: Path, categories_file: Path | None = None) -> Annotations:
    """A file's annotations, with AVE's order files and categories.txt beside it, and the
    class list of `categories_file` if given (every label must be in it)."""
    if not path.is_file():
        raise UserError(f"annotations file {path} not found: pass --annotations FILE "
                        "(AVE Annotations.txt or a CSV with header file,label,start,end)")
    ann = parse_annotations(path.read_text(encoding="utf-8-sig", errors="replace"), str(path))
    if ann.format == "ave":
        ann.ave_splits = _read_ave_orders(path.parent)
        beside = path.parent / "categories.txt"
        if categories_file is None and beside.is_file():
            categories_file = beside
    if categories_file is not None:
        names = read_categories(categories_file)
        used = {e.label for f in ann.files for e in f.events}
        unknown = sorted(used - set(names))
        if unknown:
            raise UserError(f"labels {unknown[:5]} are not in {categories_file}: add them there "
                            "or fix the annotations")
        ann.categories = names
    if not ann.files:
        raise UserError(f"{path} has no annotation rows")
    return ann


def read_categories(path: Path) -> list[str]:
    """Event class names, one per line."""
    try:
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise UserError(f"categories file {path} is not a text file: one event class name per "
                        "line") from None
    if not names:
        raise UserError(f"categories file {path} is empty: one event class name per line")
    return names


def _parse_ave(text: str, name: str) -> Annotations:
    files: list[AnnotatedFile] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lower().startswith("category&"):
            continue
        parts = line.strip().split("&")
        if len(parts) != AVE_FIELDS:
            raise UserError(f"{name}:{n}: an annotation needs {AVE_FIELDS} fields "
                            f"Category&VideoID&Quality&Start&End, got {line!r}")
        label, vid, _, start, end = parts
        try:
            event = AnnotatedEvent(label, float(start), float(end))
        except ValueError:
            raise UserError(f"{name}:{n}: Start and End must be numbers, got {line!r}") from None
        files.append(AnnotatedFile(file=vid, events=[event], lines=[len(files)]))
    categories = sorted({f.events[0].label for f in files})
    return Annotations("ave", files, categories)


def _read_ave_orders(folder: Path) -> dict[str, np.ndarray] | None:
    """AVE's split files beside the annotations: split -> line indices (None if absent)."""
    orders = {k: folder / f"{k}_order.h5" for k in SPLITS}
    if not all(p.is_file() for p in orders.values()):
        return None
    import h5py

    splits = {}
    for k, p in orders.items():
        with h5py.File(p, "r") as f:
            splits[k] = np.asarray(f[ORDER_KEY][()], np.int64)
    return splits


def _parse_csv(text: str, name: str) -> Annotations:
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))  # tolerates a spreadsheet's BOM
    cols = [c.strip() for c in reader.fieldnames or []]
    missing = [c for c in CSV_COLUMNS if c not in cols]
    if missing:
        raise UserError(f"{name}: missing column(s) {missing}; the header must be "
                        "file,label,start,end (optionally split)")
    by_file: dict[str, AnnotatedFile] = {}
    for n, raw in enumerate(reader, 2):
        if None in raw.values():  # fewer fields than the header: what a cut line looks like
            raise UserError(f"{name}:{n}: the row has fewer fields than the header "
                            f"({','.join(cols)}); complete or remove it (a cut or damaged "
                            "file?)")
        row = {k.strip(): (v or "").strip() for k, v in raw.items() if k}
        try:
            start, end = float(row["start"] or 0), float(row["end"] or 0)
        except ValueError:
            raise UserError(f"{name}:{n}: start and end must be seconds, got "
                            f"{row['start']!r}, {row['end']!r}") from None
        if not 0 <= start <= end:
            raise UserError(f"{name}:{n}: need 0 <= start <= end, got {start}, {end}")
        split = row.get("split") or None
        if split is not None and split not in SPLITS:
            raise UserError(f"{name}:{n}: split must be one of {SPLITS}, got {split!r}")
        f = by_file.setdefault(row["file"], AnnotatedFile(file=row["file"], split=split))
        if f.split != split:
            raise UserError(f"{name}:{n}: {row['file']} has rows in splits {f.split} and "
                            f"{split}; one file belongs to one split")
        if row["label"].lower() not in ("", BACKGROUND):
            f.events.append(AnnotatedEvent(row["label"], start, end))
    categories = sorted({e.label for f in by_file.values() for e in f.events})
    return Annotations("csv", list(by_file.values()), categories)


def second_labels(events: list[AnnotatedEvent], start: float, n: int) -> list[str]:
    """Labels of the n seconds from `start`: the first event (with a label) covering each
    second's middle; BACKGROUND where none does."""
    out = []
    for t in range(n):
        mid = start + t + 0.5
        out.append(next((e.label for e in events if e.label and e.start <= mid < e.end),
                        BACKGROUND))
    return out


def segment_labels(events: list[AnnotatedEvent], window_start: float,
                   categories: list[str]) -> np.ndarray:
    """(10,) class ids of one window (background = len(categories))."""
    ids = {name: i for i, name in enumerate(categories)} | {BACKGROUND: len(categories)}
    return np.array([ids[label] for label in second_labels(events, window_start, SEGMENTS)],
                    np.int64)
