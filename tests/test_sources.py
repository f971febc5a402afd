"""Sources: bounded queues and drop policy, replay decoding, camera and microphone faults."""

from __future__ import annotations

import importlib.abc
import itertools
import sys
import threading
import time
import tracemalloc
import types

import av
import numpy as np
import pytest

from model.errors import UserError
from streamer.camera import CameraLost, CameraProducer
from streamer.clock import Clock
from streamer.microphone import MicrophoneLost, MicrophoneProducer
from streamer.replay import open_container, replay_source
from streamer.sources import END, Audio, Frame, ItemQueue, Source
from streamer.synthetic import Script, synthetic_source, write_media

RATE = 16000


def frame(t: float) -> Frame:
    return Frame(t, np.zeros((2, 2, 3), np.uint8))


def test_drop_oldest_queue_keeps_newest_and_counts():
    q = ItemQueue(drop_oldest=True, capacity={"video": 4, "audio": 4})
    q.register()
    for i in range(10):
        assert q.put(frame(float(i)))
    q.done()
    got = []
    while (item := q.get(0.01)) is not END:
        got.append(item.t)
    assert got == [6.0, 7.0, 8.0, 9.0]
    assert q.drops == {"video": 6, "audio": 0}
    assert q.high_water["video"] == 4


def test_live_queue_spans_the_same_stream_time_for_both_kinds():
    q = ItemQueue(drop_oldest=True, capacity={"video": 100, "audio": 100}, max_span=1.0)
    q.register()
    for i in range(40):  # 4 s of 10 fps video and of 0.05 s audio blocks, nobody consuming
        q.put(frame(i / 10))
        q.put(Audio(i / 10, np.zeros(800, np.float32), RATE))
        q.put(Audio(i / 10 + 0.05, np.zeros(800, np.float32), RATE))
    q.done()
    kept = {"video": [], "audio": []}
    while (item := q.get(0.01)) is not END:
        kept[item.kind].append(item.t)
    assert kept["video"] == pytest.approx([2.9 + i / 10 for i in range(11)])
    assert kept["audio"][0] == pytest.approx(2.95) and kept["audio"][-1] == pytest.approx(3.95)
    assert q.drops == {"video": 29, "audio": 59}


def test_blocking_queue_loses_nothing_and_get_returns_oldest_across_kinds():
    q = ItemQueue(drop_oldest=False, capacity={"video": 2, "audio": 2})
    q.register()
    n = 50

    def produce():
        for i in range(n):
            q.put(frame(i * 0.1))
            q.put(Audio(i * 0.1 + 0.05, np.zeros(4, np.float32), RATE))
        q.done()

    th = threading.Thread(target=produce)
    th.start()
    got = []
    while (item := q.get(1.0)) is not END:
        got.append(item)
        time.sleep(0.0005)
    th.join()
    assert len(got) == 2 * n and q.drops == {"video": 0, "audio": 0}
    assert [it.t for it in got] == sorted(it.t for it in got)
    assert max(q.high_water.values()) <= 2


def test_failed_producer_delivers_queued_items_then_raises():
    q = ItemQueue(drop_oldest=False)
    q.register()
    q.put(frame(0.0))
    q.put(frame(0.1))
    q.fail(UserError("camera lost"))
    assert not q.put(frame(0.2))  # nothing accepted after the fault
    assert q.get(0.1).t == 0.0 and q.get(0.1).t == 0.1
    with pytest.raises(UserError, match="camera lost"):
        q.get(0.1)


def test_slow_consumer_behind_live_source_drops_oldest_with_bounded_memory():
    script = Script.demo(60.0, size=(48, 64), fps=25)  # ~14 MB of frames, ~4 MB of audio
    cap = {"video": 8, "audio": 8}
    src = synthetic_source(script, fast=True, live=True, capacity=cap, block=1024)
    tracemalloc.start()
    received: dict[str, list[float]] = {"video": [], "audio": []}
    try:
        src.start(Clock())
        while (item := src.get(1.0)) is not END:
            received[item.kind].append(item.t)
            time.sleep(0.002)  # a consumer far slower than the source
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        src.close()
    q = src.queue
    assert src.drops["video"] > 0 and src.drops["audio"] > 0
    for kind in ("video", "audio"):
        assert len(received[kind]) + q.drops[kind] == q.put_count[kind]
        assert received[kind] == sorted(received[kind])  # oldest dropped, order kept
        assert q.high_water[kind] <= cap[kind]
    assert q.put_count["video"] == script.frame_count()
    assert peak < 3_000_000  # bounded: the queue, not the stream, sets the footprint


def test_synthetic_fast_source_delivers_everything_contiguously():
    script = Script.demo(3.3, fps=10)
    with synthetic_source(script, fast=True, block=700) as src:
        items = list(src)
    frames = [it for it in items if isinstance(it, Frame)]
    audio = [it for it in items if isinstance(it, Audio)]
    assert [f.t for f in frames] == [i / 10 for i in range(33)]
    assert sum(len(a.samples) for a in audio) == round(3.3 * RATE)
    for a, b in itertools.pairwise(audio):
        assert b.t == pytest.approx(a.end, abs=1e-9)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    script = Script.demo(3.5)
    return {
        "stereo": write_media(d / "stereo.mkv", script, fps=30, audio_rate=44100, channels=2),
        "mono": write_media(d / "mono.mkv", script, fps=30, audio_rate=44100, channels=1),
        "script": script, "dir": d,
    }


def test_fast_replay_delivers_every_frame_and_sample(media):
    with replay_source(media["stereo"], fast=True) as src:
        items = list(src)
    frames = [it for it in items if isinstance(it, Frame)]
    audio = [it for it in items if isinstance(it, Audio)]
    assert len(frames) == 105 and frames[0].rgb.shape == (48, 64, 3)
    assert [f.t for f in frames] == sorted(f.t for f in frames)
    assert frames[-1].t == pytest.approx(104 / 30, abs=1e-3)
    assert sum(len(a.samples) for a in audio) == round(3.5 * RATE)
    assert all(a.rate == RATE and a.samples.dtype == np.float32 for a in audio)
    for a, b in itertools.pairwise(audio):
        assert b.t == pytest.approx(a.end, abs=1e-9)


def test_stereo_is_averaged_to_mono(media):
    def samples(path):
        with replay_source(path, fast=True) as src:
            return np.concatenate([it.samples for it in src if isinstance(it, Audio)])

    stereo, mono = samples(media["stereo"]), samples(media["mono"])
    # the right channel is 0.8 x the left: their mean is 0.9 x (FFmpeg's mono downmix: 1.27 x)
    np.testing.assert_allclose(stereo, 0.9 * mono, atol=2e-3)
    assert np.abs(mono).max() > 0.3


def test_replay_bad_files_are_user_errors(media, tmp_path):
    with pytest.raises(UserError, match="no such file"):
        open_container(tmp_path / "missing.mp4")
    with pytest.raises(UserError, match="directory"):
        open_container(tmp_path)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 100)
    with pytest.raises(UserError, match="cannot open"):
        open_container(text)
    silent = tmp_path / "silent.mkv"
    with av.open(str(silent), "w") as out:
        vs = out.add_stream("mpeg4", rate=10)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        for i in range(5):
            f = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            f.pts = i
            out.mux(vs.encode(f))
        out.mux(vs.encode())
    with pytest.raises(UserError, match="no audio track"):
        open_container(silent)


# ------------------------------------------------------------------ camera (fake OpenCV)
class FakeCapture:
    def __init__(self, frames: int, opened: bool = True) -> None:
        self.frames, self.opened, self.released = frames, opened, False

    def isOpened(self) -> bool:
        return self.opened

    def read(self):
        if self.frames <= 0:
            return False, None
        self.frames -= 1
        bgr = np.zeros((4, 6, 3), np.uint8)
        bgr[..., 0] = 255  # blue in OpenCV's BGR order
        return True, bgr

    def release(self) -> None:
        self.released = True


def camera_factory(captures):
    captures = list(captures)
    return lambda device: captures.pop(0) if captures else FakeCapture(0, opened=False)


def test_missing_camera_is_a_user_error():
    with pytest.raises(UserError, match="no camera at 3"):
        CameraProducer("3", open_capture=camera_factory([FakeCapture(0, opened=False)]))


def test_camera_reconnects_then_reports_loss_after_backoff():
    first, second = FakeCapture(3), FakeCapture(2)
    cam = CameraProducer("0", open_capture=camera_factory([first, second]),
                         delays=[0.0, 0.0, 0.0])
    src = Source("camera", [cam], live=True)
    src.start(Clock())
    got = []
    with pytest.raises(CameraLost, match="camera 0 was lost"):
        for item in src:
            got.append(item)
    src.close()
    assert len(got) == 5  # 3 frames, lost, back at the first try for 2 more, lost for good
    assert cam.reconnects == 1 + 3
    assert got[0].rgb[0, 0].tolist() == [0, 0, 255]  # converted to RGB
    assert first.released and second.released
    assert [t.name for t in threading.enumerate() if t.name.startswith("jca-")] == []


# ------------------------------------------------------------------ microphone (fake sounddevice)
class _RaisingFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return None


def test_microphone_without_portaudio_names_the_fix(monkeypatch):
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_RaisingFinder(), *sys.meta_path])
    with pytest.raises(UserError, match="apt-get install libportaudio2"):
        MicrophoneProducer()


def fake_sounddevice(devices):
    sd = types.ModuleType("sounddevice")

    class PortAudioError(Exception):
        pass

    class InputStream:
        def __init__(self, callback, finished_callback, samplerate, **kw):
            self.callback, self.finished, self.samplerate = callback, finished_callback, samplerate
            self.time = 100.0
            self.active = True  # PortAudio's: False once the device or its server is gone
            sd.streams.append(self)
            self.closed = False

        def start(self):
            pass

        def stop(self):
            pass

        def close(self):
            self.closed = True

    def query_devices(device=None, kind=None):
        if kind is None:
            return devices
        for i, d in enumerate(devices):
            if d["max_input_channels"] and (device is None or device in (i, d["name"])):
                return d
        raise ValueError(f"no device {device}")

    sd.PortAudioError, sd.InputStream, sd.query_devices = PortAudioError, InputStream, query_devices
    sd.streams = []
    return sd


def test_no_microphone_and_unknown_microphone_are_user_errors(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", fake_sounddevice([]))
    with pytest.raises(UserError, match="no microphone found"):
        MicrophoneProducer()
    mic = {"name": "USB mic", "max_input_channels": 1, "default_samplerate": 48000.0}
    monkeypatch.setitem(sys.modules, "sounddevice", fake_sounddevice([mic]))
    with pytest.raises(UserError, match="no microphone 'Webcam'"):
        MicrophoneProducer("Webcam")


def test_microphone_blocks_are_stamped_contiguously_and_overflows_counted(monkeypatch):
    mic = {"name": "USB mic", "max_input_channels": 2, "default_samplerate": 16000.0}
    sd = fake_sounddevice([mic])
    monkeypatch.setitem(sys.modules, "sounddevice", sd)
    producer = MicrophoneProducer("USB mic")
    src = Source("mic", [producer], live=True)
    src.start(Clock())
    (stream,) = sd.streams
    ok = types.SimpleNamespace(input_overflow=False)
    block = np.stack([np.full(256, 0.5, np.float32), np.zeros(256, np.float32)], axis=1)
    for i in range(3):  # ADC times jitter; the stamps follow the sample count
        t = types.SimpleNamespace(inputBufferAdcTime=100.0 + i * 0.016 + 0.001 * (i % 2))
        stream.callback(block, 256, t, ok)
    stream.callback(block, 256, types.SimpleNamespace(inputBufferAdcTime=100.5),
                    types.SimpleNamespace(input_overflow=True))
    src.close()
    items = list(src.queue._items["audio"])
    assert stream.closed and len(items) == 4
    np.testing.assert_allclose(items[0].samples, 0.25)  # two channels averaged
    assert items[1].t - items[0].t == pytest.approx(256 / RATE)
    assert items[2].t - items[1].t == pytest.approx(256 / RATE)
    assert items[3].t - items[0].t == pytest.approx(0.5, abs=0.01)  # re-anchored after overflow
    assert src.drops["audio"] == 1 and producer.overflows == 1


def test_microphone_that_goes_inactive_ends_the_source_with_one_line(monkeypatch):
    """PortAudio raises nothing when a microphone (or its sound server) goes away: the stream
    just turns inactive. The watchdog ends the source, after the blocks captured before."""
    mic = {"name": "USB mic", "max_input_channels": 1, "default_samplerate": 16000.0}
    sd = fake_sounddevice([mic])
    monkeypatch.setitem(sys.modules, "sounddevice", sd)
    src = Source("mic", [MicrophoneProducer("USB mic")], live=True)
    src.start(Clock())
    (stream,) = sd.streams
    ok = types.SimpleNamespace(input_overflow=False)
    stream.callback(np.zeros((256, 1), np.float32), 256,
                    types.SimpleNamespace(inputBufferAdcTime=100.0), ok)
    stream.active = False
    items = []
    with pytest.raises(MicrophoneLost, match="stopped delivering audio") as e:
        items.extend(src)
    assert len(items) == 1 and "\n" not in str(e.value)
    src.close()
    assert stream.closed
