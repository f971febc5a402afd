"""Light modules stay light: importing one in a fresh interpreter loads none of h5py, rich,
torch and OpenCV (`model.extractors` loads them only when one of its names is used)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("h5py", "rich", "torch", "cv2")
LIGHT = ("streamer.window", "streamer.segmenter", "model.extractors.vggish_frontend",
         "model.extractors", "model.layout", "model.items", "model.segments", "model.media",
         "model.annotations")


def loaded_after_import(module: str) -> list[str]:
    """The HEAVY modules in sys.modules after a fresh interpreter imports `module`."""
    code = (f"import sys, json, {module}\n"
            f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("module", LIGHT)
def test_module_loads_nothing_heavy(module):
    assert loaded_after_import(module) == []


def test_the_check_sees_a_heavy_import():
    assert loaded_after_import("model.data") == ["h5py"]
    assert "torch" in loaded_after_import("model.extractors.factory")
