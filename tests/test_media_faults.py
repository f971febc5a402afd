"""What the one decoder (model.media) does with files that are not plain: a phone's rotated clip
is analysed upright (replay, extraction, overlay); a file cut short ends with both durations and
every prediction made kept (replay, main.py, model.extract); a clip too short for one segment
says so."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from media_fuzz import SIZE, stand_in_runtime, write_clip
from stream_fakes import FakeVisual, fake_extractors

from model import extract
from model.errors import UserError
from model.file_features import ClipPolicy, extract_file
from model.items import Audio, Frame
from model.media import DecodeError, decode, open_media
from streamer import app
from streamer.options import AppOptions, parse_args
from streamer.replay import replay_source

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000
FPS = 10
FASTSTART = {"movflags": "faststart"}  # the index first: a cut file still opens
TRUNCATED = r"the data ends at 2\.\d s of the 5\.0 s the file declares"


# ---- rotation --------------------------------------------------------------------------------

def portrait() -> np.ndarray:
    """(64, 48, 3) upright: red top half, blue bottom half, a white square at the top left."""
    img = np.zeros((64, 48, 3), np.uint8)
    img[:32, :, 0] = 200
    img[32:, :, 2] = 200
    img[4:16, 4:16] = 255
    return img


def write_phone_clip(path: Path, upright: np.ndarray, seconds: int = 2) -> Path:
    """A clip as a phone held upright records it: the sensor's landscape picture (the upright
    one turned a quarter counterclockwise) and a display matrix of -90 degrees."""
    stored = np.ascontiguousarray(np.rot90(upright, 1))  # (48, 64, 3)
    with av.open(str(path), "w") as c:
        vs = c.add_stream("mpeg4", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = stored.shape[1], stored.shape[0], "yuv420p"
        vs.set_display_rotation(-90)
        st = c.add_stream("pcm_s16le", rate=RATE, layout="mono")
        for i in range(seconds * FPS):
            f = av.VideoFrame.from_ndarray(stored, format="rgb24")
            f.pts, f.time_base = i, Fraction(1, FPS)
            c.mux(vs.encode(f))
        c.mux(vs.encode())
        f = av.AudioFrame.from_ndarray(np.zeros((1, seconds * RATE), np.int16), format="s16",
                                       layout="mono")
        f.rate, f.pts = RATE, 0
        c.mux(st.encode(f))
        c.mux(st.encode())
    return path


def stored_frames(path: Path) -> list[tuple[float, np.ndarray]]:
    """(time, RGB) of each frame as the file stores it (PyAV, no display matrix applied)."""
    with av.open(str(path)) as c:
        return [(f.time, f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]


def test_a_phone_clip_is_analysed_upright_in_replay_extraction_and_overlay(tmp_path,
                                                                            monkeypatch, capsys):
    upright = portrait()
    path = write_phone_clip(tmp_path / "phone.mp4", upright)
    stored = stored_frames(path)
    assert stored[0][1].shape == (48, 64, 3)  # sideways in the file
    shown = [np.rot90(x, -1) for _, x in stored]  # a quarter turn clockwise, as players show it
    assert np.abs(shown[0].astype(int) - upright).mean() < 8  # (the codec is lossy)

    with replay_source(path, fast=True) as src:
        frames = [item.rgb for item in src if isinstance(item, Frame)]
    assert len(frames) == len(shown)
    for got, want in zip(frames, shown, strict=True):
        np.testing.assert_array_equal(got, want)

    ff = extract_file(path, fake_extractors(1), ClipPolicy())
    fake = FakeVisual()
    for t in (0, 1):  # K = 1: each segment's first frame
        want = fake.frame_features(shown[t * FPS][None])[0]
        sideways = fake.frame_features(stored[t * FPS][1][None])[0]
        np.testing.assert_allclose(ff.visual[0, t], want, atol=1e-3)
        assert np.abs(sideways - want).max() > 0.1

    runtime = stand_in_runtime()
    monkeypatch.setattr(app, "load_runtime", lambda opts: runtime)
    overlay = tmp_path / "overlay.mp4"
    app.run(parse_args(["--replay", str(path), "--random-weights", "--fast", "--headless",
                        "--log", str(tmp_path / "log.jsonl"), "--events", "",
                        "--overlay", str(overlay)]))
    capsys.readouterr()
    drawn = [x for _, x in stored_frames(overlay)]
    assert len(drawn) == len(shown) and all(x.shape == upright.shape for x in drawn)


def test_a_singular_display_matrix_leaves_the_picture_as_stored(tmp_path):
    path = write_clip(tmp_path / "odd.mp4", display_matrix=[0] * 9)  # no angle to read
    with replay_source(path, fast=True) as src:
        shapes = {item.rgb.shape for item in src if isinstance(item, Frame)}
    assert shapes == {(*SIZE, 3)}


# ---- truncation ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cut_files(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """A folder with a whole 5-s mkv and 5-s faststart mp4, and each cut at half its bytes."""
    d = tmp_path_factory.mktemp("cut")
    wholes = [write_clip(d / "whole.mkv", seconds=5),
              write_clip(d / "whole.mp4", seconds=5, options=FASTSTART)]
    cut = {}
    for p in wholes:
        data = p.read_bytes()
        cut[p.suffix] = d / f"half{p.suffix}"
        cut[p.suffix].write_bytes(data[:len(data) // 2])
    return d, cut


def by_kind(items) -> tuple[list[tuple[float, np.ndarray]], np.ndarray]:
    frames = [(i.t, i.rgb) for i in items if isinstance(i, Frame)]
    audio = [i.samples for i in items if isinstance(i, Audio)]
    return frames, np.concatenate(audio) if audio else np.zeros(0, np.float32)


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_a_cut_file_ends_replay_with_both_durations_after_what_it_holds(cut_files, suffix):
    folder, cut = cut_files
    items = []
    with (pytest.raises(DecodeError, match=TRUNCATED),  # FFmpeg reads to the cut silently
          replay_source(cut[suffix], fast=True) as src):
        items.extend(src)
    with open_media(folder / f"whole{suffix}") as c:
        whole = list(decode(c))
    frames, audio = by_kind(items)
    whole_frames, whole_audio = by_kind(whole)
    assert 20 <= len(frames) <= 30 and len(audio) >= 2 * RATE
    for (t, x), (t0, x0) in zip(frames, whole_frames, strict=False):
        assert t == t0
        np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(audio, whole_audio[:len(audio)])


@pytest.mark.slow
def test_a_cut_file_through_main_py_is_one_line_exit_2_and_keeps_its_predictions(cut_files,
                                                                                  tmp_path):
    _, cut = cut_files
    log = tmp_path / "log.jsonl"
    p = subprocess.run([sys.executable, "main.py", "--replay", str(cut[".mkv"]), "--fast",
                        "--headless", "--random-weights", "--backend", "eager", "--device", "cpu",
                        "--frames-per-segment", "1", "--log", str(log), "--events", ""],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    last = p.stderr.splitlines()[-1]
    assert last.startswith("error: half.mkv: the data ends at 2.") and "of the 5.0 s" in last
    records = [json.loads(x) for x in log.read_text().splitlines()]
    assert [r["segment"] for r in records] == list(range(len(records))) and len(records) >= 2
    assert [json.loads(x) for x in p.stdout.splitlines()] == records


def test_cut_files_fail_in_extraction_and_the_batch_goes_on(cut_files, tmp_path):
    folder, _ = cut_files
    ann = tmp_path / "events.csv"
    ann.write_text("file,label,start,end\nwhole.mkv,beep,0,2\nhalf.mkv,beep,0,2\n"
                   "half.mp4,beep,0,2\n")
    s = extract.run(folder, ann, tmp_path / "out", fake_extractors(1))
    assert s.clips == 1 and set(s.failed) == {"half.mkv", "half.mp4"}
    for file, reason in s.failed.items():
        assert reason.startswith(f"{file}: the data ends at 2.") and "of the 5.0 s" in reason


# ---- too short -------------------------------------------------------------------------------

def test_a_clip_shorter_than_half_a_segment_says_so(tmp_path):
    short = write_clip(tmp_path / "short.mkv", seconds=0.3)
    opts = AppOptions(source="replay", replay=str(short), random_weights=True, fast=True,
                      log=str(tmp_path / "log.jsonl"), events="")
    with pytest.raises(UserError, match=r"short\.mkv is 0\.30 s long, shorter than half a "
                                        r"segment \(0\.5 s\): nothing to label"):
        app.run(opts)  # before anything loads or is written
    assert not (tmp_path / "log.jsonl").exists()

    # declares 1.2 s, holds 0.3 s (not cut by over a second): said once its data ends
    data = write_clip(tmp_path / "longer.mkv", seconds=1.2).read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[:len(data) // 4])
    with (pytest.raises(UserError, match=r"cut\.mkv is 0\.\d+ s long, shorter than half"),
          replay_source(cut, fast=True) as src):
        assert sum(isinstance(i, Frame) for i in src) >= 2

