"""Shared fixtures."""

from __future__ import annotations

import pytest
import torch

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


def pytest_terminal_summary(terminalreporter) -> None:
    if SUMMARY_LINES:
        terminalreporter.section("reported by tests")
        for line in SUMMARY_LINES:
            terminalreporter.write_line(line)
