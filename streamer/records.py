"""The prediction log's format: one JSON object per segment, one per line (the ARCHITECTURE
contract plus the extras of docs/INTERFACES.md). Written and read only here.

    f.write(log_line(record) + "\\n")    # everything but the in-process `attention`
    records = read_log("runs/predictions.jsonl")
    got = read_predictions(path)            # got.records, got.skipped (cut or binary lines)
    got = read_jsonl(path, "event file", ("label", "start", "end"), fix)   # any JSONL of ours

Strict JSON: a NaN or infinity (which most parsers refuse) is an error here, never written; the
pipeline keeps them out of records (a segment with one is flagged `nonfinite`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model.errors import UserError

IN_PROCESS_ONLY = ("attention",)  # record fields for in-process sinks, never written
REQUIRED = ("segment", "label", "class_id")  # what read_log needs of every line


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def json_text(obj: Any) -> str:
    """Strict JSON of a log object (numpy values as plain numbers and lists); ValueError on a
    NaN or infinity."""
    return json.dumps(obj, default=_jsonable, allow_nan=False)


def log_line(record: Mapping[str, Any]) -> str:
    """The prediction-log JSON of a record."""
    return json_text({k: v for k, v in record.items() if k not in IN_PROCESS_ONLY})


@dataclass(frozen=True)
class JsonLines:
    """What a JSONL file of the project's holds: its complete records, in file order, and how
    many of its lines are not one (the half line a crash or a full disk leaves, binary bytes,
    a line that is not JSON or lacks a field every record has)."""

    records: list[dict]
    skipped: int

    def skipped_text(self) -> str:
        """"0 lines skipped", "1 line skipped (not a whole record)", ..."""
        if not self.skipped:
            return "0 lines skipped"
        return f"{self.skipped} line{'s' if self.skipped > 1 else ''} skipped (not a whole record)"


def _refuse(constant: str) -> None:
    raise ValueError(f"{constant} is not strict JSON")


def _record(raw: bytes, required: Sequence[str]) -> dict | None:
    try:
        r = json.loads(raw.decode("utf-8"), parse_constant=_refuse)
    except ValueError:  # UnicodeDecodeError and JSONDecodeError included
        return None
    return r if isinstance(r, dict) and set(required) <= r.keys() else None


def read_jsonl(path: str | Path, what: str, required: Sequence[str], fix: str) -> JsonLines:
    """The complete records of a JSONL file (`what` names it in messages: "prediction log"; an
    object needs every field in `required`); the other lines are skipped and counted. A file
    that cannot be read, or has lines and not one record, is a UserError ending in `fix`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{what} {path} not found; {fix}") from None
    except OSError as e:
        raise UserError(f"cannot read the {what} {path} ({e.strerror}); {fix}") from None
    records, skipped = [], 0
    for raw in data.split(b"\n"):
        if raw.strip():
            r = _record(raw, required)
            if r is None:
                skipped += 1
            else:
                records.append(r)
    if skipped and not records:
        raise UserError(f"{path} is not a {what}: none of its {skipped} lines is a record "
                        f"with {', '.join(required)}; {fix}")
    return JsonLines(records, skipped)


def read_predictions(path: str | Path) -> JsonLines:
    """The complete records of a prediction log, in segment order, and the lines skipped."""
    got = read_jsonl(path, "prediction log", REQUIRED,
                     "give the JSONL file written by main.py --log")
    if not got.records:
        raise UserError(f"{path} holds no predictions; run the detector long enough for one "
                        "segment")
    return JsonLines(sorted(got.records, key=lambda r: int(r["segment"])), got.skipped)


def read_log(path: str | Path) -> list[dict]:
    """The records of a prediction log, in segment order (lines that are not whole records
    skipped: read_predictions counts them)."""
    return read_predictions(path).records
