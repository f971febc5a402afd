"""The one decoder (model.media) behind replay and extraction: any audio channel layout, and only
the frames a consumer uses are converted to RGB."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from stream_fakes import FakeAudio

from model.items import Frame
from model.media import decode, open_media
from model.segments import Segmenter
from streamer.synthetic import Script, write_media

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000
SECONDS = 3
# container, channel layout: FFmpeg names the layout in a mov and leaves it unnamed ("8
# channels", known by its count only) in a matroska file; 7.1 crashed the process with a planar
# float resample.
LAYOUTS = [("mov", "7.1"), ("mkv", "7.1"), ("mkv", "5.1"), ("mkv", "2.1"), ("mkv", "stereo"),
           ("mkv", "mono"), ("mov", "3.0"), ("mkv", "3.0"), ("mov", "5.1(side)"),
           ("mkv", "hexadecagonal")]
CLI_LAYOUTS = [("mov", "7.1"), ("mkv", "7.1"), ("mkv", "3.0"), ("mov", "5.1(side)"),
               ("mkv", "hexadecagonal")]

# Replay and extraction of each clip in a child process: a crash there is a failed test here.
CHILD = """
import sys
from pathlib import Path
import numpy as np
sys.path.insert(0, "tests")
from stream_fakes import fake_extractors
from model.file_features import ClipPolicy, extract_file
from model.items import Audio
from streamer.replay import replay_source

for path in sys.argv[1:]:
    with replay_source(path, fast=True) as src:
        audio = np.concatenate([i.samples for i in src if isinstance(i, Audio)])
    ff = extract_file(Path(path), fake_extractors(1), ClipPolicy())
    np.savez(path + ".npz", replay=audio, features=ff.audio[0])
"""


def channel_signals(n_channels: int) -> np.ndarray:
    """(channels, samples) int16: a different tone and level on every channel."""
    t = np.arange(SECONDS * RATE) / RATE
    x = [(0.05 + 0.04 * c) * np.sin(2 * np.pi * (200 + 150 * c) * t) for c in range(n_channels)]
    return np.round(np.stack(x) * 32767).astype(np.int16)


def write_clip(path: Path, layout: str) -> np.ndarray:
    """A clip with 16 kHz PCM audio in `layout` and a few frames; returns its (channels, n)."""
    with av.open(str(path), "w") as c:
        vs = c.add_stream("mpeg4", rate=10)
        vs.width, vs.height, vs.pix_fmt = 32, 32, "yuv420p"
        audio = c.add_stream("pcm_s16le", rate=RATE)
        audio.layout = layout
        signals = channel_signals(audio.layout.nb_channels)
        for i in range(SECONDS * 10):
            f = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 8 * i, np.uint8), format="rgb24")
            f.pts = i
            c.mux(vs.encode(f))
        c.mux(vs.encode())
        for s in range(0, signals.shape[1], 1024):
            block = np.ascontiguousarray(signals[:, s:s + 1024].T.reshape(1, -1))  # packed
            f = av.AudioFrame.from_ndarray(block, format="s16", layout=layout)
            f.rate, f.pts = RATE, s
            c.mux(audio.encode(f))
        c.mux(audio.encode())
    return signals


def test_any_channel_layout_is_averaged_in_replay_and_extraction(tmp_path):
    clips = {}
    for ext, layout in LAYOUTS:
        path = tmp_path / f"{layout.replace('.', '_')}.{ext}"
        clips[path] = write_clip(path, layout)
    proc = subprocess.run([sys.executable, "-c", CHILD, *map(str, clips)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    fake_audio = FakeAudio()
    for path, signals in clips.items():
        expected = signals.astype(np.float64).mean(axis=0) / 32768  # the channels' mean
        with np.load(f"{path}.npz") as out:
            np.testing.assert_allclose(out["replay"], expected, atol=1e-6, err_msg=path.name)
            for t in range(SECONDS):
                np.testing.assert_allclose(
                    out["features"][t], fake_audio(expected[t * RATE:(t + 1) * RATE]),
                    rtol=1e-5, atol=1e-5, err_msg=path.name)


@pytest.mark.slow
def test_7_1_and_odd_layouts_through_main_py_and_model_extract(tmp_path):
    """The CLIs as a user runs them: main.py --replay on a 7.1 file (each segment's level is
    that of the channels' mean), python -m model.extract on 7.1 and odd or unnamed layouts."""
    videos = tmp_path / "videos"
    videos.mkdir()
    clips = {}
    for ext, layout in CLI_LAYOUTS:
        path = videos / f"{layout.replace('.', '_').replace('(', '_').rstrip(')')}.{ext}"
        clips[path] = write_clip(path, layout)
    seven_one = videos / "7_1.mov"
    log = tmp_path / "log.jsonl"
    replay = subprocess.Popen(
        [sys.executable, "main.py", "--replay", str(seven_one), "--fast", "--headless",
         "--random-weights", "--backend", "eager", "--device", "cpu", "--frames-per-segment",
         "1", "--log", str(log), "--events", ""],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    (tmp_path / "events.csv").write_text(
        "file,label,start,end\n" + "".join(f"{p.name},tone,0,3\n" for p in clips))
    extraction = subprocess.run(
        [sys.executable, "-m", "model.extract", "--videos", str(videos), "--annotations",
         str(tmp_path / "events.csv"), "--out", str(tmp_path / "out"), "--random-weights",
         "--frames-per-segment", "1", "--no-progress"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    _, err = replay.communicate(timeout=300)
    assert replay.returncode == 0, err[-2000:]
    mixed = clips[seven_one].astype(np.float64).mean(axis=0) / 32768  # the channels' mean
    records = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(records) == SECONDS
    for r in records:
        x = mixed[r["segment"] * RATE:(r["segment"] + 1) * RATE]
        assert abs(r["audio_rms_db"] - 20 * np.log10(np.sqrt(np.mean(x**2)))) <= 0.051

    assert extraction.returncode == 0, extraction.stderr[-2000:]
    summary = json.loads((tmp_path / "out/extract_summary.json").read_text())
    assert summary["failed"] == {} and summary["clips"] == len(clips)


def test_only_the_frames_the_segments_use_are_converted(tmp_path):
    path = write_media(tmp_path / "clip.mkv", Script.demo(4.0, fps=30), fps=30,
                       audio_rate=RATE)
    converted = []

    def rgb(frame):
        converted.append(frame.time)
        return frame.to_ndarray(format="rgb24")

    frames = 0
    seg = Segmenter(None, k=1)
    closed = []
    with open_media(path) as c:
        for item in decode(c, rgb=rgb, lazy=True):
            frames += isinstance(item, Frame)
            closed += seg.push(item)
    closed += seg.finish()
    assert frames == 120 and len(closed) == 4
    # each segment's selected frame (its first) and its last frame, which may be held
    assert len(converted) <= 2 * len(closed)
    assert all(len(s.picks) == 1 and s.picks[0][0].frame.rgb.shape == (48, 64, 3)
               for s in closed)
