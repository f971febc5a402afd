"""The prediction log's format: one JSON object per segment, one per line (the ARCHITECTURE
contract plus the extras of docs/INTERFACES.md). Written and read only here.

    f.write(log_line(record) + "\\n")    # everything but the in-process `attention`
    records = read_log("runs/predictions.jsonl")

Strict JSON: a NaN or infinity (which most parsers refuse) is an error here, never written; the
pipeline keeps them out of records (a segment with one is flagged `nonfinite`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
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


def read_log(path: str | Path) -> list[dict]:
    """The records of a prediction log, in segment order."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"prediction log {path} not found; give the JSONL file written by "
                        "main.py --log")
    records = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path} line {i} is not JSON ({e.msg}); give a prediction log "
                            "(one JSON object per line)") from None
        if not isinstance(r, dict) or not set(REQUIRED) <= set(r):
            raise UserError(f"{path} line {i} is not a prediction record (needs "
                            f"{', '.join(REQUIRED)}); give a prediction log")
        records.append(r)
    if not records:
        raise UserError(f"{path} holds no predictions; run the detector long enough for one "
                        "segment")
    return sorted(records, key=lambda r: int(r["segment"]))
