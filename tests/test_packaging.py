"""The built wheel ships every package of the project (a plain `pip install .` must work)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP = ("model", "streamer", "calibrate", "benchmarks")


def project_packages() -> set[str]:
    """Every folder under the top-level packages that has an __init__.py, as a dotted name."""
    return {".".join(p.parent.relative_to(ROOT).parts)
            for top in TOP for p in (ROOT / top).rglob("__init__.py")
            if "__pycache__" not in p.parts}


@pytest.mark.slow
def test_wheel_ships_every_package(tmp_path: Path) -> None:
    src = tmp_path / "src"  # setuptools builds in the source tree: keep the checkout clean
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "runs", "cache", "build", "*.egg-info", "__pycache__", ".*_cache"))
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(src)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(tmp_path.glob("jca_live-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {n.rsplit("/", 1)[0].replace("/", ".") for n in names if n.endswith("/__init__.py")}
    assert "model.backends" in project_packages()
    assert project_packages() <= shipped, sorted(project_packages() - shipped)
    assert "main.py" in names
    assert not any(n.startswith("tests/") for n in names)
