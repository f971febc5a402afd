"""Offline extraction on small generated videos: shapes, determinism, the sampling rule, odd
clips (short, long, no audio, odd rates, broken), annotations, splits, resume, and the CLI."""

import json
import subprocess
import sys
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import h5py
import numpy as np
import pytest
from stream_fakes import TinyVisualNet

from model import extract
from model.annotations import AnnotatedEvent, read_annotations, segment_labels
from model.data import AVEPaths, open_dataset
from model.errors import UserError, run_cli
from model.extractors import Extractors, build_extractors, select_frames, vggish
from model.extractors.audio import AudioExtractor
from model.extractors.visual import VisualExtractor
from model.file_features import ClipError, ClipPolicy, extract_file
from model.recipe import FeatureRecipe

ROOT = Path(__file__).resolve().parents[1]


def make_clip(path, seconds, fps=10, rate=16000, channels=1, audio=True, video=True,
              size=(64, 48)):
    """A clip whose picture and tone change every second (so segments differ)."""
    w, h = size
    with av.open(str(path), "w") as c:
        if video:
            vs = c.add_stream("mpeg4", rate=Fraction(fps).limit_denominator(1000))
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        if audio:
            st = c.add_stream("aac", rate=rate)
            st.layout = "stereo" if channels == 2 else "mono"
        if video:
            for i in range(round(seconds * fps)):
                t = i / fps
                img = np.zeros((h, w, 3), np.uint8)
                img[..., int(t) % 3] = (60 + 37 * int(t)) % 256
                img[: int(h * (t % 1)), :, 1] = 220
                for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    c.mux(p)
            for p in vs.encode(None):
                c.mux(p)
        if audio:
            n = round(seconds * rate)
            t = np.arange(n) / rate
            x = (0.3 * np.sin(2 * np.pi * (300 + 150 * np.floor(t)) * t)).astype(np.float32)
            x = np.ascontiguousarray(np.stack([x] * channels))
            for s in range(0, n, 1024):
                fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[:, s:s + 1024]),
                                                format="fltp", layout=st.layout.name)
                fr.rate, fr.pts = rate, s
                for p in st.encode(fr):
                    c.mux(p)
            for p in st.encode(None):
                c.mux(p)
    return path


@pytest.fixture(scope="module")
def small():
    """Cheap seeded extractors with the real output shapes."""
    v = TinyVisualNet()
    a = vggish.VGGish((4, 8, 8, 16), 32)
    a.init_random(1)
    recipe = FeatureRecipe("random:seed=0", "ave", 2, "random:seed=0", "ave")
    return Extractors(VisualExtractor(v, "ave"), AudioExtractor(a, "ave"), recipe)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    make_clip(d / "ten.mp4", 10)
    make_clip(d / "short.mp4", 4, fps=7, rate=44100, channels=2)
    make_clip(d / "long.mp4", 23, fps=4, rate=22050)
    make_clip(d / "odd.mp4", 10, fps=12.5, rate=8000)
    make_clip(d / "silent.mp4", 10, fps=5, audio=False)
    make_clip(d / "radio.mp4", 10, video=False)
    (d / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"junk" * 500)
    return d


def decode_all(path):
    with av.open(str(path)) as c:
        frames = [(f.time, f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    return frames, samples


# ---- one file --------------------------------------------------------------------------------

def test_offline_features_equal_the_live_rule(clips, small):
    """Independent decode + select_frames + segment_feature gives the same features."""
    ff = extract_file(clips / "ten.mp4", small, ClipPolicy())
    frames, samples = decode_all(clips / "ten.mp4")  # 16 kHz mono: no resampling needed
    for t in range(10):
        seg = [(ft - t, rgb) for ft, rgb in frames if t <= ft < t + 1]
        times = [x for x, _ in seg]
        assert len(select_frames(times, 2)) == 2
        ref = small.visual.segment_feature(np.stack([r for _, r in seg]), times, 2)
        np.testing.assert_allclose(ff.visual[0, t], ref, rtol=1e-4, atol=1e-4)
        ref_audio = small.audio(samples[t * 16000:(t + 1) * 16000])
        np.testing.assert_allclose(ff.audio[0, t], ref_audio, rtol=1e-4, atol=1e-5)


def test_odd_frame_and_sample_rates(clips, small):
    ff = extract_file(clips / "odd.mp4", small, ClipPolicy())  # 12.5 fps, 8 kHz
    assert ff.visual.shape == (1, 10, 7, 7, 512) and ff.audio.shape == (1, 10, 128)
    assert np.isfinite(ff.visual).all() and np.isfinite(ff.audio).all()
    silence = small.audio(np.zeros(16000, np.float32))
    assert not np.allclose(ff.audio[0, 5], silence)  # the 8 kHz tone was resampled, not lost


def test_short_clip_is_padded_or_skipped(clips, small):
    ff = extract_file(clips / "short.mp4", small, ClipPolicy())  # 4 s, 7 fps
    assert ff.visual.shape == (1, 10, 7, 7, 512)
    assert any("padded" in n for n in ff.notes)
    frames, _ = decode_all(clips / "short.mp4")
    held = small.visual.frame_features(frames[-1][1][None])[0]  # last frame, held
    for t in range(4, 10):
        np.testing.assert_allclose(ff.visual[0, t], held, rtol=1e-4, atol=1e-4)
    silence = small.audio(np.zeros(0, np.float32))
    for t in range(5, 10):  # seconds after the end of the 4 s of audio
        np.testing.assert_allclose(ff.audio[0, t], silence, rtol=1e-4, atol=1e-5)
    assert not np.allclose(ff.audio[0, 1], silence)
    with pytest.raises(ClipError, match="shorter"):
        extract_file(clips / "short.mp4", small, ClipPolicy(short_clips="skip"))


def test_long_clip_windows_or_truncate(clips, small):
    ff = extract_file(clips / "long.mp4", small, ClipPolicy())  # 23 s
    assert ff.visual.shape == (2, 10, 7, 7, 512) and ff.audio.shape == (2, 10, 128)
    np.testing.assert_array_equal(ff.starts, [0.0, 10.0])
    assert any("dropped" in n for n in ff.notes)
    one = extract_file(clips / "long.mp4", small, ClipPolicy(long_clips="truncate"))
    assert one.visual.shape[0] == 1
    np.testing.assert_allclose(one.visual[0], ff.visual[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(one.audio[0], ff.audio[0], rtol=1e-4, atol=1e-5)
    assert not np.allclose(ff.visual[1, 3], ff.visual[0, 3])


def test_remainder_of_at_least_9_5_s_is_a_window(tmp_path, small):
    ff = extract_file(make_clip(tmp_path / "c.mp4", 19.75, fps=4), small,
                              ClipPolicy())
    assert ff.visual.shape[0] == 2 and not any("dropped" in n for n in ff.notes)


def test_no_audio_no_video_and_broken_files(clips, small):
    with pytest.raises(ClipError, match="no audio track"):
        extract_file(clips / "silent.mp4", small, ClipPolicy())
    ff = extract_file(clips / "silent.mp4", small, ClipPolicy(no_audio="silence"))
    silence = small.audio(np.zeros(16000, np.float32))
    np.testing.assert_allclose(ff.audio[0], np.tile(silence, (10, 1)), rtol=1e-4, atol=1e-5)
    with pytest.raises(ClipError, match="no video track"):
        extract_file(clips / "radio.mp4", small, ClipPolicy())
    with pytest.raises(ClipError, match="cannot open"):
        extract_file(clips / "broken.mp4", small, ClipPolicy())


# ---- annotations and labels ------------------------------------------------------------------

def test_segment_labels_midpoint_rule():
    cats = ["car", "dog"]
    events = [AnnotatedEvent("dog", 2, 5), AnnotatedEvent("car", 4.2, 6.6),
              AnnotatedEvent("", 0, 9)]
    np.testing.assert_array_equal(segment_labels(events, 0.0, cats),
                                  [2, 2, 1, 1, 1, 0, 0, 2, 2, 2])
    np.testing.assert_array_equal(segment_labels([AnnotatedEvent("car", 12, 15.5)], 10.0,
                                                         cats), [2, 2, 0, 0, 0, 2, 2, 2, 2, 2])


def test_seeded_splits_are_deterministic_and_sized():
    s = extract.seeded_splits(50, seed=3)
    assert s == extract.seeded_splits(50, seed=3) != extract.seeded_splits(50, seed=4)
    assert (s.count("train"), s.count("val"), s.count("test")) == (40, 5, 5)
    assert sorted(extract.seeded_splits(3, 0)) == ["test", "train", "val"]
    assert extract.seeded_splits(2, 0) == ["train", "train"]


def test_csv_annotation_errors(tmp_path):
    bad = tmp_path / "a.csv"
    bad.write_text("file,label,begin,end\nx.mp4,dog,0,1\n")
    with pytest.raises(UserError, match="start"):
        read_annotations(bad)
    bad.write_text("file,label,start,end\nx.mp4,dog,3,1\n")
    with pytest.raises(UserError, match=r"a\.csv:2"):
        read_annotations(bad)
    bad.write_text("file,label,start,end,split\nx.mp4,dog,0,1,train\nx.mp4,cat,1,2,test\n")
    with pytest.raises(UserError, match="one split"):
        read_annotations(bad)


# ---- the batch -------------------------------------------------------------------------------

def test_run_csv_dataset_failures_and_resume(clips, small, tmp_path):
    ann = tmp_path / "events.csv"
    ann.write_text("file,label,start,end\n"
                   "ten.mp4,dog,2,5\nten.mp4,car,7,10\n"
                   "broken.mp4,dog,0,1\n"
                   "long.mp4,car,12,15.5\n"
                   "silent.mp4,dog,0,10\n"
                   "nowhere.mp4,dog,0,1\n"
                   "short.mp4,background,0,0\n")
    out = tmp_path / "out"
    s = extract.run(clips, ann, out, small)
    assert set(s.failed) == {"broken.mp4", "silent.mp4", "nowhere.mp4"}
    assert "no audio track" in s.failed["silent.mp4"]
    assert "not found" in s.failed["nowhere.mp4"]
    assert s.clips == 4 and s.files_ok == 3 and s.cached == 0  # ten, long x2, short
    with open_dataset(AVEPaths.from_dir(out)) as d:
        assert d.n_clips == 4 and d.categories == ["car", "dog"]
        assert d.recipe == small.recipe
        np.testing.assert_array_equal(d.labels[0], [2, 2, 1, 1, 1, 2, 2, 0, 0, 0])
        np.testing.assert_array_equal(d.labels[2], [2, 2, 0, 0, 0, 2, 2, 2, 2, 2])  # 2nd window
        np.testing.assert_array_equal(d.labels[3], [2] * 10)
        audio, visual, _ = d.read([0, 1, 2, 3])
        assert audio.shape == (4, 10, 128) and visual.shape == (4, 10, 7, 7, 512)
        splits = {k: set(d.split(k).tolist()) for k in ("train", "val", "test")}
    assert set().union(*splits.values()) == {0, 1, 2, 3}
    assert any(splits[k] >= {1, 2} for k in splits)  # both windows of long.mp4 share a split
    summary = json.loads((out / "extract_summary.json").read_text())
    assert summary["random_weights"] is True and "broken.mp4" in summary["failed"]
    rows = (out / "clips.csv").read_text().splitlines()
    assert rows[0] == "row,file,window_start,split" and rows[3].startswith("2,long.mp4,10,")

    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "clips").glob("*.npz")}
    again = extract.run(clips, ann, out, small)
    assert again.cached == 3 and again.clips == 4
    assert {p.name: p.stat().st_mtime_ns for p in (out / "clips").glob("*.npz")} == mtimes

    other = Extractors(small.visual, small.audio,
                       FeatureRecipe("random:seed=0", "ave", 5, "random:seed=0", "ave"))
    with pytest.raises(UserError, match="frames_per_segment"):
        extract.run(clips, ann, out, other)


def test_the_cache_is_keyed_by_the_extractor_paths(clips, small, tmp_path):
    """Features of two numeric paths never meet in one cache: a resume on another path (another
    --extractor-path, or auto choosing anew) is refused in one line naming both."""
    ann = tmp_path / "events.csv"
    ann.write_text("file,label,start,end\nten.mp4,dog,2,5\n")
    out = tmp_path / "out"
    fp32 = replace(small.recipe, visual_path="fp32", audio_path="fp32")
    extract.run(clips, ann, out, Extractors(small.visual, small.audio, fp32))
    other = replace(fp32, visual_path="openvino-bf16")
    with pytest.raises(UserError) as e:
        extract.run(clips, ann, out, Extractors(small.visual, small.audio, other))
    line = str(e.value)
    assert "\n" not in line and "(visual_path fp32, this run openvino-bf16)" in line
    assert extract.run(clips, ann, out, Extractors(small.visual, small.audio, fp32)).cached == 1
    assert json.loads((out / "recipe.json").read_text())["visual_path"] == "fp32"


def test_run_csv_split_column(clips, small, tmp_path):
    ann = tmp_path / "events.csv"
    ann.write_text("file,label,start,end,split\nten.mp4,dog,0,3,val\nlong.mp4,car,0,1,test\n")
    s = extract.run(clips, ann, tmp_path / "out", small)
    assert orders(tmp_path / "out") == {"train": [], "val": [0], "test": [1, 2]}
    assert any("train split is empty" in w for w in s.warnings)


def test_run_too_few_clips_for_disjoint_splits(clips, small, tmp_path):
    ann = tmp_path / "events.csv"
    ann.write_text("file,label,start,end\nten.mp4,dog,0,3\n")
    s = extract.run(clips, ann, tmp_path / "out", small)
    assert orders(tmp_path / "out") == {"train": [0], "val": [], "test": []}
    assert any("all in train" in w for w in s.warnings)


def orders(out):
    result = {}
    for k in ("train", "val", "test"):
        with h5py.File(out / f"{k}_order.h5", "r") as f:
            result[k] = f["order"][()].tolist()
    return result


def test_run_ave_annotations_with_order_files(clips, small, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for vid, src in (("AAA", "ten.mp4"), ("BBB", "broken.mp4"), ("CCC", "long.mp4")):
        (videos / f"{vid}.mp4").write_bytes((clips / src).read_bytes())
    meta = tmp_path / "meta"
    meta.mkdir()
    (meta / "Annotations.txt").write_text(
        "Category&VideoID&Quality&StartTime&EndTime\n"
        "Male speech, man speaking&AAA&good&3&6\nBark&BBB&good&0&10\nBark&CCC&bad&0&2\n")
    (meta / "categories.txt").write_text("Bark\nMale speech, man speaking\nUnused\n")
    for split, idx in (("train", [0]), ("val", [1]), ("test", [2])):
        with h5py.File(meta / f"{split}_order.h5", "w") as f:
            f["order"] = np.array(idx, np.int64)
    out = tmp_path / "out"
    s = extract.run(videos, meta / "Annotations.txt", out, small)
    assert list(s.failed) == ["BBB"] and s.clips == 2  # AVE: the first 10 s of long.mp4 only
    assert orders(out) == {"train": [0], "val": [], "test": [1]}  # rows renumbered
    assert any("val split is empty" in w for w in s.warnings)
    assert (out / "categories.txt").read_text().splitlines() == [
        "Bark", "Male speech, man speaking", "Unused"]
    with h5py.File(out / "labels.h5", "r") as f:
        labels = f["avadataset"][()].argmax(-1)
    np.testing.assert_array_equal(labels[0], [3, 3, 3, 1, 1, 1, 3, 3, 3, 3])
    np.testing.assert_array_equal(labels[1], [0, 0, 3, 3, 3, 3, 3, 3, 3, 3])


def test_nothing_extractable_is_a_user_error(clips, small, tmp_path):
    ann = tmp_path / "a.csv"
    ann.write_text("file,label,start,end\nbroken.mp4,dog,0,1\n")
    with pytest.raises(UserError, match="no clip could be extracted"):
        extract.run(clips, ann, tmp_path / "out", small)
    with pytest.raises(UserError, match="videos folder"):
        extract.run(tmp_path / "nope", ann, tmp_path / "out", small)


# ---- the CLI ---------------------------------------------------------------------------------

def test_cli_ten_second_clip_full_size_is_deterministic(clips, tmp_path):
    """The CLI (full-size random VGG19 + VGGish, K=1) and an in-process run agree exactly."""
    (tmp_path / "a.csv").write_text("file,label,start,end\nten.mp4,knock,0,1\n")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "model.extract", "--videos", str(clips), "--annotations",
         str(tmp_path / "a.csv"), "--out", str(out), "--random-weights",
         "--frames-per-segment", "1", "--extractor-path", "fp32", "--no-progress"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "UNTRAINED" in proc.stderr and "1 clips from 1 files" in proc.stdout
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["random_weights"] is True and recipe["frames_per_segment"] == 1
    assert (recipe["visual_path"], recipe["audio_path"], recipe["precision"],
            recipe["resize"]) == ("fp32", "fp32", "fp32", "cv2 bilinear")
    with h5py.File(out / "visual_feature.h5") as fv, h5py.File(out / "audio_feature.h5") as fa:
        visual, audio = fv["avadataset"][()], fa["avadataset"][()]
    assert visual.shape == (1, 10, 7, 7, 512) and audio.shape == (1, 10, 128)
    assert not np.allclose(visual[0, 0], visual[0, 1])

    ex = build_extractors(random_weights=True, seed=0, frames_per_segment=1)
    ff = extract_file(clips / "ten.mp4", ex, ClipPolicy())
    np.testing.assert_allclose(ff.visual, visual, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ff.audio, audio, rtol=1e-5, atol=1e-6)


def test_cli_errors_are_one_line(tmp_path, capsys):
    args = ["--videos", str(tmp_path / "none"), "--annotations", str(tmp_path / "none.csv"),
            "--out", str(tmp_path / "o")]
    for extra, needle in ((["--weights-dir", str(tmp_path)], "python -m model.weights fetch"),
                          (["--random-weights", "--frames-per-segment", "1"], "videos folder")):
        with pytest.raises(SystemExit) as e:
            run_cli(lambda a=args + extra: extract.main(a))
        assert e.value.code == 2
        err = [line for line in capsys.readouterr().err.splitlines()
               if not line.startswith("warning:")]
        assert len(err) == 1 and needle in err[0]
