"""Where measured A/V offsets live between runs: one small JSON file per user.

    save_offset(source_key(source.name), offset_ms, confidence, events)   # calibrate.sync --save
    saved = load_offset(source_key(source.name))      # main.py, when --av-offset is not given
    saved.offset_ms if saved else 0.0

The file is $JCA_LIVE_CONFIG if set, else $XDG_CONFIG_HOME/jca-live/calibration.json (default
~/.config/jca-live/calibration.json). Offsets are keyed by capture setup: the streamer's source
name for a camera ("camera:0 + mic:USB Audio", the microphone by its device name) and the
absolute path for a replayed file (the streamer owns the store because it names its sources;
calibrate.sync writes it). Written atomically (model.files).

    {"version": 1, "av_offset": {"camera:0 + mic:USB Audio": {"offset_ms": 83.2,
     "confidence": 0.91, "events": 8, "frame_ms": 33.3, "measured": "2025-01-01T12:00:00Z"}}}
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from model.errors import UserError
from model.files import atomic_write_text

ENV = "JCA_LIVE_CONFIG"
VERSION = 1


@dataclass(frozen=True)
class SavedOffset:
    key: str
    offset_ms: float
    confidence: float
    events: int
    measured: str
    path: Path  # the file it came from


def config_path() -> Path:
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "jca-live" / "calibration.json"


def source_key(source_name: str, replay: str | Path | None = None) -> str:
    """The identity of a capture setup: a replayed file by its absolute path, anything else by
    the streamer's source name."""
    return f"replay:{Path(replay).resolve()}" if replay is not None else source_name


def _read(path: Path) -> dict:
    if not path.exists():
        return {"version": VERSION, "av_offset": {}}
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"calibration file {path} is unreadable ({e}); delete it and re-run "
                        "python -m calibrate.sync --save") from None
    if not isinstance(data, dict) or not isinstance(data.get("av_offset", {}), dict):
        raise UserError(f"calibration file {path} is not a jca-live calibration file; delete "
                        "it and re-run python -m calibrate.sync --save")
    data.setdefault("av_offset", {})
    return data


def load_offset(key: str, path: Path | None = None) -> SavedOffset | None:
    """The offset saved for this capture setup, or None."""
    path = path or config_path()
    entry = _read(path)["av_offset"].get(key)
    if entry is None:
        return None
    ms = entry.get("offset_ms") if isinstance(entry, dict) else None
    if not isinstance(ms, int | float) or isinstance(ms, bool) or abs(ms) > 10_000:
        raise UserError(f"calibration file {path}: bad offset for {key!r} ({entry!r}); re-run "
                        "python -m calibrate.sync --save")
    return SavedOffset(key, float(ms), float(entry.get("confidence", 0.0)),
                       int(entry.get("events", 0)), str(entry.get("measured", "")), path)


def save_offset(key: str, offset_ms: float, confidence: float, events: int,
                frame_ms: float | None = None, path: Path | None = None) -> Path:
    """Record (or replace) the offset of a capture setup; returns the file written."""
    path = path or config_path()
    data = _read(path)
    data["version"] = VERSION
    data["av_offset"][key] = {
        "offset_ms": round(float(offset_ms), 2), "confidence": round(float(confidence), 4),
        "events": int(events), "frame_ms": None if frame_ms is None else round(frame_ms, 3),
        "measured": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    try:
        atomic_write_text(path, json.dumps(data, indent=2) + "\n")
    except OSError as e:
        raise UserError(f"cannot write the calibration file {path} ({e.strerror}); set "
                        f"{ENV} to a writable file path") from None
    return path
