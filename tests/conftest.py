"""Shared fixtures."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

# Every cache the product or its libraries keep lives in one folder of this run, never under HOME
# and never one a previous run (or another checkout) left: set before any test module imports
# matplotlib or the product. test_hermetic.py checks that a CLI run under these writes nothing
# under HOME.
CACHE_ROOT = Path(tempfile.mkdtemp(prefix="jca-live-tests-"))
HERMETIC_ENV = {
    "JCA_LIVE_CACHE": str(CACHE_ROOT / "jca-live"),  # extractor paths, probe costs, OpenVINO IR
    "JCA_LIVE_ENGINES": str(CACHE_ROOT / "engines"),  # window backends
    "JCA_LIVE_WEIGHTS": str(CACHE_ROOT / "weights"),
    "MPLCONFIGDIR": str(CACHE_ROOT / "matplotlib"),
    "XDG_CACHE_HOME": str(CACHE_ROOT / "xdg-cache"),  # fontconfig and other XDG users
    "XDG_CONFIG_HOME": str(CACHE_ROOT / "xdg-config"),  # PulseAudio clients' runtime link
    # a local Ray cluster otherwise makes its auth token in ~/.ray (the tests' clusters are
    # loopback-only and end with the test)
    "RAY_AUTH_MODE": "disabled",
}
os.environ.update(HERMETIC_ENV)
atexit.register(shutil.rmtree, CACHE_ROOT, ignore_errors=True)

SUMMARY_LINES: list[str] = []  # what tests report at the end of the run (summary_lines)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module: small models run far faster on one thread than on two
    on a 2-core machine shared with other jobs (benchmarks/RESULTS.md, JCA window latency)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def summary_lines() -> list[str]:
    """Lines a test adds to the end of the run's output (e.g. a fuzz corpus and its outcome)."""
    return SUMMARY_LINES


def probed_slots() -> list[str]:
    """The extractor-path probes this run made in the suite's cache (each costs conversions and
    compiles of full-size networks: a test that needs none passes --extractor-path fp32)."""
    from model.extractors.paths import CACHE_FILE

    try:
        data = json.loads((Path(HERMETIC_ENV["JCA_LIVE_CACHE"]) / CACHE_FILE).read_text())
    except (OSError, ValueError):
        return []
    return sorted(slot for machine in data.get("machines", {}).values() for slot in machine
                  if not slot.startswith("frames-per-segment"))


def pytest_terminal_summary(terminalreporter) -> None:
    lines = [*SUMMARY_LINES, f"extractor-path probes in the suite's cache: {probed_slots()}"]
    terminalreporter.section("reported by tests")
    for line in lines:
        terminalreporter.write_line(line)
