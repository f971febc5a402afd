"""Shared fixtures."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module: small models run far faster on one thread than on two
    on a 2-core machine shared with other jobs (benchmarks/RESULTS.md, JCA window latency)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
