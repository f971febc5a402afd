"""benchmarks.soak's arithmetic: the slope leaves the warm-up out and is in MB per hour; the
senders' playlists outlast the soak."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from benchmarks.soak import Sample, playlist, resident_mb, slope_mb_per_hour


def sample(t_s: float, rss: float) -> Sample:
    return Sample(t_s, rss, rss, None, 0, 0, 0, 1, 0.0)


def test_slope_after_warmup_in_mb_per_hour():
    warm = [sample(t, 500.0 + 200.0 * t / 300) for t in range(0, 300, 30)]  # the climb to warm
    flat_then_10 = [sample(t, 700.0 + 10.0 * (t - 300) / 3600) for t in range(300, 3900, 60)]
    assert slope_mb_per_hour(warm + flat_then_10, 300) == pytest.approx(10.0)
    assert slope_mb_per_hour(warm + flat_then_10, 0) > 50  # with the warm-up it is no figure
    assert slope_mb_per_hour(warm, 300) is None


def test_playlist_outlasts_the_soak():
    clips = [Path("a.ts"), Path("b.ts"), Path("c.ts")]
    lengths = [15.0, 16.0, 17.0]
    served = playlist(clips, lengths, 3600.0, 1.0)
    assert served[:4] == [*clips, clips[0]]
    # every connection as short as the shortest clip and its gap still covers the hour
    assert len(served) * (min(lengths) + 1.0) >= 3600.0


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")
def test_resident_memory_has_its_anonymous_part():
    mem = resident_mb()
    assert 0 < mem["anon"] <= mem["rss"]
