"""The built wheel ships every package of the project (a plain `pip install .` must work), and
its console command runs from the installed copy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from streamer.synthetic import Script, write_media

ROOT = Path(__file__).resolve().parents[1]
TOP = ("model", "streamer", "calibrate", "benchmarks")


def project_packages() -> set[str]:
    """Every folder under the top-level packages that has an __init__.py, as a dotted name."""
    return {".".join(p.parent.relative_to(ROOT).parts)
            for top in TOP for p in (ROOT / top).rglob("__init__.py")
            if "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The project's wheel, built offline from a copy of the checkout."""
    out = tmp_path_factory.mktemp("wheel")
    src = out / "src"  # setuptools builds in the source tree: keep the checkout clean
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "runs", "cache", "build", "*.egg-info", "__pycache__", ".*_cache"))
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    return next(out.glob("jca_live-*.whl"))


@pytest.mark.slow
def test_wheel_ships_every_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {n.rsplit("/", 1)[0].replace("/", ".") for n in names if n.endswith("/__init__.py")}
    assert "model.backends" in project_packages()
    assert project_packages() <= shipped, sorted(project_packages() - shipped)
    assert "main.py" in names
    assert not any(n.startswith("tests/") for n in names)


@pytest.mark.slow
def test_installed_jca_live_command_labels_a_file(wheel: Path, tmp_path: Path) -> None:
    """pip installs the wheel into a folder; its `jca-live`, run from another folder, labels a
    clip with the installed modules, not the checkout's."""
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q",
         "--target", str(site), str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-2000:]
    clip = write_media(tmp_path / "clip.mkv", Script.demo(2.0), fps=10)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    run = subprocess.run(
        [str(site / "bin" / "jca-live"), "--replay", str(clip), "--random-weights", "--fast",
         "--headless", "--device", "cpu", "--backend", "eager", "--frames-per-segment", "1",
         "--extractor-path", "fp32"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    records = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["segment"] for r in records] == [0, 1]
    assert (cwd / "runs" / "predictions.jsonl").read_text().count("\n") == 2
    where = subprocess.run(
        [sys.executable, "-c", "import model, streamer; print(model.__file__); "
         "print(streamer.__file__)"], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=60)
    for path in where.stdout.split():
        assert Path(path).is_relative_to(site), path
