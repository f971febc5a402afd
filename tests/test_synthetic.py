"""The synthetic AVE-format generator: format, layout, determinism and the class structure that
needs both modalities."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from model.data import AVEPaths, open_dataset
from model.synthetic import SyntheticOptions, make_dataset, plan_classes

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "ave"


def test_plan_blocks_of_eight():
    plan = plan_classes(8)
    assert plan.kinds == ["audio", "audio", "visual", "visual",
                          "joint", "joint", "joint", "joint"]
    pairs = set(zip(plan.audio_pattern.tolist(), plan.visual_pattern.tolist(), strict=True))
    assert len(pairs) == 8  # the combination always identifies the class
    assert plan_classes(9).kinds[8] == "either"  # a lone class is separable either way
    plan = plan_classes(10)
    assert plan.kinds[8:] == ["audio", "audio"]  # the next block starts
    assert len(set(zip(plan.audio_pattern.tolist(), plan.visual_pattern.tolist(),
                       strict=True))) == 10


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    make_dataset(d, n_clips=60, n_classes=9, seed=3)
    return d


def test_format_and_layout(synth):
    with open_dataset(AVEPaths.from_dir(synth)) as data:
        assert data.n_clips == 60 and data.n_classes == 9
        assert sum(len(data.split(s)) for s in ("train", "val", "test")) == 60
        for row in data.labels:
            events = np.flatnonzero(row != 8)
            assert events.size >= 3  # min_event
            assert np.all(np.diff(events) == 1)  # one contiguous run
            assert len(set(row[events].tolist())) == 1  # one class per clip
        a, v, _ = data.read(range(60))
        assert a.shape == (60, 10, 128) and v.shape == (60, 10, 7, 7, 512)
        assert a.min() >= 0 and v.min() >= 0  # ReLU'd like real features
        assert 0.3 < (a == 0).mean() < 0.7


def _cos(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y) / (np.linalg.norm(x, axis=-1) * np.linalg.norm(y) + 1e-12)


def test_classes_need_both_modalities(synth):
    """Class means recover the plan: classes that share an audio pattern have the same audio
    evidence (so only vision separates them) and vice versa; background segments of an event
    clip show the class in at most one modality."""
    plan = plan_classes(8)
    with open_dataset(AVEPaths.from_dir(synth)) as data:
        a, v, y = data.read(range(60))
    a = a - a.mean((0, 1))  # remove the noise's mean direction
    v = v - v.mean((0, 1, 2, 3))
    v_avg = v.mean((2, 3))  # (N, 10, 512)
    audio_mean = {c: a[y == c].mean(0) for c in range(8) if (y == c).any()}
    visual_mean = {c: v_avg[y == c].mean(0) for c in range(8) if (y == c).any()}
    for c1 in audio_mean:
        for c2 in audio_mean:
            if c1 < c2:
                same_a = plan.audio_pattern[c1] == plan.audio_pattern[c2]
                same_v = plan.visual_pattern[c1] == plan.visual_pattern[c2]
                assert (_cos(audio_mean[c1], audio_mean[c2]) > 0.5) == same_a
                assert (_cos(visual_mean[c1], visual_mean[c2]) > 0.5) == same_v
    shows_a, shows_v, both = [], [], 0
    for i in range(60):
        events = y[i][y[i] != 8]
        c = int(events[0])
        for t in np.flatnonzero(y[i] == 8):
            sa = _cos(a[i, t], audio_mean[c]) > 0.5
            sv = _cos(v[i, t].reshape(49, 512), visual_mean[c]).max() > 0.3  # at the object
            shows_a.append(sa)
            shows_v.append(sv)
            both += sa and sv
    assert both == 0  # a background segment never shows the class in both modalities
    assert 0.2 < np.mean(shows_a) < 0.5 and 0.2 < np.mean(shows_v) < 0.5  # about 1/3 each


def test_deterministic_and_clip_stable(tmp_path):
    make_dataset(tmp_path / "a", n_clips=8, n_classes=5, seed=1)
    make_dataset(tmp_path / "b", n_clips=8, n_classes=5, seed=1)
    make_dataset(tmp_path / "c", n_clips=8, n_classes=5, seed=2)
    for name in ("audio_feature.h5", "visual_feature.h5", "labels.h5", "test_order.h5"):
        with h5py.File(tmp_path / "a" / name) as fa, h5py.File(tmp_path / "b" / name) as fb:
            key = next(iter(fa))
            np.testing.assert_array_equal(fa[key][()], fb[key][()])
    with h5py.File(tmp_path / "a" / "audio_feature.h5") as fa, \
            h5py.File(tmp_path / "c" / "audio_feature.h5") as fc:
        assert not np.array_equal(fa["avadataset"][()], fc["avadataset"][()])


def test_float64_option(tmp_path):
    make_dataset(tmp_path, n_clips=4, n_classes=3, opts=SyntheticOptions(dtype="float64"))
    with h5py.File(tmp_path / "visual_feature.h5") as f:
        assert f["avadataset"].dtype == np.float64


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/ave is not present")
def test_cli_takes_the_layout_from_real_labels(tmp_path):
    out = tmp_path / "from_ave"
    r = subprocess.run([sys.executable, "-m", "model.synthetic", "--out", str(out),
                        "--clips", "20", "--layout-from", str(SHARED / "labels.h5")],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    with h5py.File(SHARED / "labels.h5") as f:
        real = f["avadataset"][()].argmax(-1)
    with open_dataset(AVEPaths.from_dir(out)) as data:
        assert data.n_classes == 29
        real_rows = {tuple(row) for row in real.tolist()}
        assert all(tuple(row) in real_rows for row in data.labels.tolist())


def test_cli_bad_layout_file_is_one_line(tmp_path):
    bad = tmp_path / "labels.h5"
    bad.write_text("nope")
    r = subprocess.run([sys.executable, "-m", "model.synthetic", "--out", str(tmp_path / "o"),
                        "--layout-from", str(bad)], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
