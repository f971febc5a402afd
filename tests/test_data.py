"""AVE-format reading/writing, validation errors, and the warm-up window policy."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from model.data import (
    SEGMENTS,
    AVEPaths,
    DataError,
    open_dataset,
    window_end,
    window_for_segment,
    write_ave_dataset,
)
from model.errors import UserError
from model.recipe import FeatureRecipe

SHARED = Path(__file__).resolve().parents[2] / "shared" / "ave"


def _arrays(n: int = 12, c: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    audio = rng.random((n, SEGMENTS, 128))  # float64, like the released files
    visual = rng.random((n, SEGMENTS, 7, 7, 512))
    cls = rng.integers(0, c, (n, SEGMENTS))
    labels = np.eye(c, dtype=np.float32)[cls]
    splits = {"train": np.arange(0, n - 4), "val": [n - 4, n - 3], "test": [n - 1, n - 2]}
    return audio, visual, labels, cls, splits


@pytest.fixture
def small(tmp_path):
    audio, visual, labels, cls, splits = _arrays()
    paths = write_ave_dataset(tmp_path, audio, visual, labels, splits, ["a", "b", "c"],
                              FeatureRecipe.ave(frames_per_segment=4))
    return tmp_path, paths, audio, visual, cls


def test_roundtrip_casts_to_float32_in_any_clip_order(small):
    _, paths, audio, visual, cls = small
    with open_dataset(paths) as data:
        assert data.class_names == ["a", "b", "c", "background"]
        assert data.n_clips == 12 and data.n_classes == 4
        assert data.recipe == FeatureRecipe.ave(frames_per_segment=4)
        np.testing.assert_array_equal(data.split("test"), [11, 10])  # file order kept
        idx = [7, 2, 3, 2, 11]
        a, v, y = data.read(idx)
        assert a.dtype == np.float32 and v.dtype == np.float32
        np.testing.assert_array_equal(a, audio[idx].astype(np.float32))
        np.testing.assert_array_equal(v, visual[idx].astype(np.float32))
        np.testing.assert_array_equal(y, cls[idx])


def test_batches_shuffle_by_seed_and_epoch_and_cache_agrees(small):
    _, paths, audio, _, cls = small
    with open_dataset(paths) as data:
        def rows(**kw):
            out = []
            for a, _, _ in data.batches("train", 3, **kw):
                out += [int(np.flatnonzero((audio.astype(np.float32) == x).all((1, 2)))[0])
                        for x in a]
            return out

        e1 = rows(seed=1, epoch=1, cache=False)
        assert sorted(e1) == list(range(8))  # every train clip once
        assert rows(seed=1, epoch=1, cache=True) == e1  # cached == lazy
        assert rows(seed=1, epoch=1, cache=False) == e1  # same (seed, epoch) -> same order
        assert rows(seed=1, epoch=2, cache=False) != e1
        assert rows(cache=False) == list(range(8))  # no seed: file order
        for a, _, y in data.batches("train", 3, seed=3, epoch=0):
            for x, lab in zip(a, y, strict=True):
                i = int(np.flatnonzero((audio.astype(np.float32) == x).all((1, 2)))[0])
                np.testing.assert_array_equal(lab, cls[i])


def test_defaults_when_optional_files_are_absent(small):
    d, *_ = small
    (d / "categories.txt").unlink()
    (d / "recipe.json").unlink()
    with open_dataset(AVEPaths.from_dir(d)) as data:
        assert data.class_names == ["class_0", "class_1", "class_2", "background"]
        assert data.recipe is None


def test_paths_can_be_overridden(small, tmp_path_factory):
    d, *_ = small
    other = tmp_path_factory.mktemp("elsewhere") / "labs.h5"
    (d / "labels.h5").rename(other)
    with pytest.raises(DataError, match="labels file not found"):
        open_dataset(AVEPaths.from_dir(d))
    with open_dataset(AVEPaths.from_dir(d, labels=other)) as data:
        assert data.n_clips == 12


def _rewrite(path: Path, key: str, array) -> None:
    path.unlink()
    with h5py.File(path, "w") as f:
        f.create_dataset(key, data=array)


@pytest.mark.parametrize("breakage, message", [
    (lambda d: (d / "audio_feature.h5").unlink(), "audio features file not found"),
    (lambda d: (d / "visual_feature.h5").write_text("not h5"), "not a readable HDF5 file"),
    (lambda d: _rewrite(d / "audio_feature.h5", "features", np.zeros((12, 10, 128))),
     "has no dataset 'avadataset'"),
    (lambda d: _rewrite(d / "audio_feature.h5", "avadataset", np.zeros((12, 10, 64))),
     r"must have shape \(N, 10, 128\)"),
    (lambda d: _rewrite(d / "visual_feature.h5", "avadataset", np.zeros((12, 10, 512))),
     r"must have shape \(N, 10, 7, 7, 512\)"),
    (lambda d: _rewrite(d / "audio_feature.h5", "avadataset", np.zeros((11, 10, 128))),
     "clip counts disagree"),
    (lambda d: _rewrite(d / "test_order.h5", "order", np.array([11, 12])), "out of range"),
    (lambda d: _rewrite(d / "test_order.h5", "order", np.array([-1])), "out of range"),
    (lambda d: _rewrite(d / "test_order.h5", "order", np.array([11, 11])), "more than once"),
    (lambda d: _rewrite(d / "test_order.h5", "order", np.array([11, 0])),
     "in both the train and test splits"),
    (lambda d: _rewrite(d / "val_order.h5", "order", np.array([], dtype=np.int64)), "empty"),
    (lambda d: _rewrite(d / "labels.h5", "avadataset", np.zeros((12, 10, 4))), "not one-hot"),
    (lambda d: _rewrite(d / "labels.h5", "avadataset", np.zeros((12, 9, 4))),
     r"labels must have shape \(N, 10, C\)"),
    (lambda d: (d / "categories.txt").write_text("a\nb\n"), "lists 2 event classes"),
    (lambda d: (d / "recipe.json").write_text('{"bogus": 1}'), "not a valid feature recipe"),
])
def test_bad_input_is_one_clear_user_error(small, breakage, message):
    d, *_ = small
    breakage(d)
    with pytest.raises(UserError, match=message) as info:
        open_dataset(AVEPaths.from_dir(d))
    assert "\n" not in str(info.value)


def test_nan_features_are_caught_when_read_naming_file_and_clip(small):
    d, paths, _, visual, _ = small
    visual = visual.copy()
    visual[5, 3, 1, 1, 7] = np.nan
    _rewrite(d / "visual_feature.h5", "avadataset", visual)
    with open_dataset(paths) as data:
        data.read([1, 2])  # clean clips read fine
        with pytest.raises(DataError, match=r"visual_feature.h5: clip 5 has NaN"):
            data.read([4, 5])
        with pytest.raises(DataError, match="clip 5"):
            data.check_finite()


def test_categories_file_may_list_background_last(small):
    d, paths, *_ = small
    (d / "categories.txt").write_text("a\nb\nc\nbackground\n")
    with open_dataset(paths) as data:
        assert data.class_names == ["a", "b", "c", "background"]


def _live_stream_reference(n: int, k: int, pad: str) -> dict[int, tuple[list[float], int]]:
    """What a live detector does, segment by segment: after segment s arrives it labels s - k
    from the last 10 segments (left-padded during warm-up); at the end of the stream it labels
    the rest from the last window. Returns t -> (window as segment ids, position of t)."""
    def position(window: list[float], t: int) -> int:  # the real segment, not a padding copy
        return len(window) - 1 - window[::-1].index(float(t))

    done: dict[int, tuple[list[float], int]] = {}
    history: list[float] = []
    filler = 0.0 if pad == "repeat-first" else -1.0  # segment 0's id, or a "zero" marker
    for s in range(n):
        history.append(float(s))
        window = ([filler] * max(0, 10 - len(history)) + history)[-10:]
        t = s - k
        if t >= 0:
            done[t] = (window, position(window, t))
    for t in range(max(0, n - k), n):
        done[t] = (window, position(window, t))
    return done


@pytest.mark.parametrize("pad", ["repeat-first", "zeros"])
@pytest.mark.parametrize("n", [3, 10, 14])
def test_window_for_segment_matches_a_simulated_live_stream(pad, n):
    features = np.arange(n, dtype=np.float64)[:, None] * np.ones((1, 2))  # segment id as value
    for k in range(SEGMENTS):
        ref = _live_stream_reference(n, k, pad)
        for t in range(n):
            window, pos = window_for_segment(features, t, k, pad=pad)
            want, want_pos = ref[t]
            if pad == "zeros":
                want = [0.0 if x == -1.0 else x for x in want]
            assert window.shape == (10, 2)
            np.testing.assert_array_equal(window[:, 0], want)
            assert pos == want_pos
            if t + k < n:
                assert pos == 9 - k  # before the stream ends: always 9 - k
                assert window_end(t, k, n) == t + k


def test_window_rejects_bad_arguments():
    f = np.zeros((5, 3))
    with pytest.raises(ValueError, match="lookahead"):
        window_for_segment(f, 0, 10)
    with pytest.raises(ValueError, match="pad"):
        window_for_segment(f, 0, 0, pad="mirror")
    with pytest.raises(ValueError, match="segment 5"):
        window_for_segment(f, 5, 0)


def _lazy_features(path: Path, shape: tuple[int, ...]) -> None:
    with h5py.File(path, "w") as f:  # storage is allocated on first write: nothing is written
        f.create_dataset("avadataset", shape=shape, dtype=np.float64)


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/ave is not present")
def test_real_ave_labels_and_orders_load(tmp_path):
    with h5py.File(SHARED / "labels.h5") as f:
        n = f["avadataset"].shape[0]
    _lazy_features(tmp_path / "audio.h5", (n, 10, 128))
    _lazy_features(tmp_path / "visual.h5", (n, 10, 7, 7, 512))
    paths = AVEPaths.from_dir(SHARED, audio=tmp_path / "audio.h5", visual=tmp_path / "visual.h5")
    with open_dataset(paths) as data:
        assert data.n_clips == 4143 and data.n_classes == 29
        assert data.class_names[0] == "Church bell" and data.class_names[-1] == "background"
        assert data.class_names[27] == "Mandolin"
        assert [len(data.split(s)) for s in ("train", "val", "test")] == [3339, 402, 402]
        assert int((data.labels == 28).sum()) == 7078
        test = data.labels[data.split("test")]
        assert test.size == 4020
        assert round(float((test == 28).mean()) * 100, 1) == 17.8
        assert (data.labels[26] == 28).all()  # the Start = End = 0 annotation
        a, v, y = data.read(data.split("test")[:3])
        assert a.shape == (3, 10, 128) and v.shape == (3, 10, 7, 7, 512)
        np.testing.assert_array_equal(y, data.labels[data.split("test")[:3]])
