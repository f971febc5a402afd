"""One resampler for every audio path: the decoder (offline extraction and replay) and the
microphone give the samples of model.extractors.resample, and the live path's output does not
depend on how the device cut the stream into blocks."""

from __future__ import annotations

import sys
import types

import av
import numpy as np
import pytest

from model.extractors.resample import resample_to_16k
from model.media import decode, open_media
from streamer.clock import Clock
from streamer.microphone import MicrophoneProducer
from streamer.sources import Source

RATE = 44100


def stereo(seconds: float = 1.5, seed: int = 0) -> np.ndarray:
    """(n, 2) float32: a chirp left, noise right (energy up to the top mel band)."""
    t = np.arange(int(seconds * RATE)) / RATE
    rng = np.random.default_rng(seed)
    left = 0.4 * np.sin(2 * np.pi * (300 * t + 2500 * t ** 2))
    right = 0.2 * rng.standard_normal(len(t))
    return np.stack([left, right], axis=1).astype(np.float32)


def fake_sounddevice(rate: int) -> types.ModuleType:
    """A device that records at `rate` only (so the microphone resamples)."""
    sd = types.ModuleType("sounddevice")
    sd.streams = []

    class PortAudioError(Exception):
        pass

    class InputStream:
        def __init__(self, callback, finished_callback, samplerate, **kw):
            if samplerate != rate:
                raise PortAudioError(f"invalid sample rate {samplerate}")
            self.callback, self.active, self.time = callback, True, 100.0
            sd.streams.append(self)

        def start(self):
            pass

        def stop(self):
            pass

        def close(self):
            pass

    mic = {"name": "fake", "max_input_channels": 2, "default_samplerate": float(rate)}
    sd.PortAudioError, sd.InputStream = PortAudioError, InputStream
    sd.query_devices = lambda device=None, kind=None: mic if kind else [mic]
    return sd


def microphone_samples(x: np.ndarray, blocks: list[int], monkeypatch) -> np.ndarray:
    """The 16 kHz samples the microphone source queues for `x` delivered in `blocks`."""
    monkeypatch.setitem(sys.modules, "sounddevice", fake_sounddevice(RATE))
    # not live: the queue keeps every block (a live one keeps the last second)
    src = Source("mic", [MicrophoneProducer("fake")], live=False, capacity={"audio": 10_000})
    src.start(Clock())
    (stream,) = sys.modules["sounddevice"].streams
    ok = types.SimpleNamespace(input_overflow=False)
    start = 0
    for n in blocks:
        t = types.SimpleNamespace(inputBufferAdcTime=100.0 + start / RATE)
        stream.callback(x[start:start + n], n, t, ok)
        start += n
    src.close()
    return np.concatenate([item.samples for item in src.queue._items["audio"]])


def splits(n: int, sizes: list[int]) -> list[int]:
    out, i = [], 0
    while sum(out) < n:
        out.append(min(sizes[i % len(sizes)], n - sum(out)))
        i += 1
    return out


def test_the_microphone_gives_the_same_samples_whatever_the_block_sizes(monkeypatch):
    x = stereo()
    runs = [microphone_samples(x, splits(len(x), sizes), monkeypatch)
            for sizes in ([441], [1024], [4096], [100, 3000, 7, 999])]
    offline = resample_to_16k(x, RATE)  # whole signal, the end flushed
    for y in runs:
        n = min(len(y), len(runs[0]))
        assert n > len(offline) - 400  # all but the resampler's look-ahead at the end
        np.testing.assert_allclose(y[:n], runs[0][:n], rtol=0, atol=1e-6)
        np.testing.assert_allclose(y[:n], offline[:n], rtol=0, atol=1e-5)


def write_wav(path, x: np.ndarray) -> None:
    with av.open(str(path), "w") as out:
        s = out.add_stream("pcm_f32le", rate=RATE, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x.reshape(1, -1)), format="flt",
                                           layout="stereo")
        frame.sample_rate = RATE
        for packet in s.encode(frame):
            out.mux(packet)
        for packet in s.encode(None):
            out.mux(packet)


@pytest.mark.parametrize("seconds", [1.5, 2.25])
def test_the_decoder_resamples_as_the_offline_resampler(tmp_path, seconds):
    """What extraction and replay read of a 44.1 kHz stereo file is resample_to_16k of its
    samples (the channels averaged), end included."""
    x = stereo(seconds)
    write_wav(tmp_path / "a.wav", x)
    container = open_media(tmp_path / "a.wav")
    items = list(decode(container))
    container.close()
    y = np.concatenate([i.samples for i in items])
    assert all(i.rate == 16000 for i in items)
    assert items[1].t == pytest.approx(len(items[0].samples) / 16000)
    np.testing.assert_allclose(y, resample_to_16k(x, RATE), rtol=0, atol=1e-5)
