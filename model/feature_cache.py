"""The per-file cache of `model.extract`: one .npz of features per media file, so a rerun
extracts only new files.

    cache = FeatureCache(out / "clips", recipe, asdict(policy))   # refuses other settings
    if not cache.has("a/clip.mp4"):
        cache.save("a/clip.mp4", extract_file(...))
    notes = cache.notes("a/clip.mp4")

A file's entry (`<file with / as __>.npz`: audio, visual, starts, duration, notes) is written
atomically; `settings.json` records the recipe and clip policy the entries were made with, and
a cache made with other settings is refused rather than mixed. The recipe names the extractor
paths (`visual_path`, `audio_path`), so features of two numeric paths never share a cache: a
resume on another path (another --extractor-path, or auto choosing anew) is refused in one line
naming both paths.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from model.errors import UserError
from model.file_features import FileFeatures
from model.files import atomic_path, atomic_write_text
from model.recipe import FeatureRecipe

SETTINGS = "settings.json"
ENTRY = ("audio", "visual", "starts", "duration", "notes")  # the arrays of a file's entry


def cache_name(file: str) -> str:
    """The entry name of a file: its path flattened to one safe file name."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", file.replace(os.sep, "__")) + ".npz"


class FeatureCache:
    def __init__(self, folder: Path, recipe: FeatureRecipe, policy: dict[str, str]) -> None:
        """Open (or start) the cache in `folder`; a UserError if it holds other settings, or a
        settings file that is not one (damaged)."""
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        settings = {"recipe": recipe.to_dict(), "policy": policy}
        path = folder / SETTINGS
        if not path.is_file():
            atomic_write_text(path, json.dumps(settings, indent=2) + "\n")
            return
        try:
            old = json.loads(path.read_text())
        except ValueError:  # not JSON, not text: not a settings file this cache wrote
            old = None
        if not (isinstance(old, dict)
                and all(isinstance(old.get(k), dict) for k in ("recipe", "policy"))):
            raise UserError(f"{path} is not a feature cache's settings file (damaged or "
                            f"another file): delete {folder} to start over, or use another --out")
        if old != settings:
            before = {**old.get("recipe", {}), **old.get("policy", {})}
            now = {**settings["recipe"], **settings["policy"]}
            diff = [f"{k} {before.get(k)}, this run {now.get(k)}"
                    for k in sorted(before.keys() | now.keys()) if before.get(k) != now.get(k)]
            raise UserError(f"{folder} holds features made with other settings "
                            f"({'; '.join(diff)}): use another --out, or delete {folder} to "
                            "start over")

    def path(self, file: str) -> Path:
        return self.folder / cache_name(file)

    def has(self, file: str) -> bool:
        """Whether the file's features are cached whole (a damaged entry is extracted again)."""
        try:
            with np.load(self.path(file)) as z:
                return set(ENTRY) <= set(z.files)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):
            return False

    def save(self, file: str, ff: FileFeatures) -> None:
        with atomic_path(self.path(file), suffix=".npz") as tmp:
            np.savez(tmp, audio=ff.audio, visual=ff.visual, starts=ff.starts,
                     duration=ff.duration, notes=np.array(ff.notes, dtype=str))

    def notes(self, file: str) -> list[str]:
        with np.load(self.path(file)) as z:
            return [str(n) for n in z["notes"]]

    def starts(self, file: str) -> np.ndarray:
        """(W,) window starts, seconds."""
        with np.load(self.path(file)) as z:
            return z["starts"]

    def features(self, files: list[str], key: str) -> Iterator[np.ndarray]:
        """The `key` ("audio" or "visual") array of each file in turn, float32."""
        for file in files:
            with np.load(self.path(file)) as z:
                yield z[key].astype(np.float32)
