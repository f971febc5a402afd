"""The suite keeps every cache in its own folder (tests/conftest.py): a whole CLI run on the
default settings, then a plot of its log, under the suite's environment and an empty HOME, write
nothing under HOME and do write the caches where the suite put them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import HERMETIC_ENV

ROOT = Path(__file__).resolve().parents[1]


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_a_default_cli_run_writes_nothing_under_home(tmp_path):
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = {**os.environ, "HOME": str(home)}
    run = subprocess.run([sys.executable, str(ROOT / "main.py"), "--synthetic", "--random-weights",
                          "--duration", "2", "--fast", "--headless"],
                         cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    log = work / "runs" / "predictions.jsonl"
    assert [json.loads(line)["segment"] for line in log.read_text().splitlines()] == [0, 1]
    plot = subprocess.run([sys.executable, "-m", "streamer.plot", str(log), "--out",
                           str(work / "t.png")], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert plot.returncode == 0, plot.stderr
    assert (work / "t.png").stat().st_size > 0
    assert files_under(home) == []
    # the run did keep its caches: the extractor-path choice and the probe costs, in the suite's
    assert files_under(Path(HERMETIC_ENV["JCA_LIVE_CACHE"]))
    assert all(not Path(v).is_relative_to(Path.home()) for v in HERMETIC_ENV.values())
