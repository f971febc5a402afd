"""Synthetic stream: generated frames and tones with known events, for tests and demos.

    script = Script.demo(duration=30)               # events and a ground-truth label per second
    source = synthetic_source(script, fast=True, block=1024)
    write_media("clip.mkv", script, fps=30, audio_rate=44100, channels=2)  # the same as a file

Everything is a pure function of (script, time): a frame depends only on its time, an audio
sample only on its index, so the stream is identical whatever the block size, pacing or
consumer speed. An event of class c shows a coloured square moving across the picture and
sounds a tone of TONES[c] Hz; background is a dark picture and faint noise.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from model.classes import BACKGROUND
from model.extractors.vggish_frontend import SAMPLE_RATE
from streamer.clock import Clock
from streamer.sources import AUDIO, VIDEO, Audio, Frame, ItemQueue, Source, ThreadProducer

TONES = {"beep": 440.0, "whistle": 1760.0, "hum": 110.0}  # event class -> tone frequency (Hz)
COLOURS = {"beep": (230, 40, 40), "whistle": (40, 200, 60), "hum": (60, 80, 230)}


@dataclass(frozen=True)
class Event:
    label: str  # a key of TONES
    start: float  # seconds
    end: float


@dataclass(frozen=True)
class Script:
    duration: float  # seconds of stream
    events: tuple[Event, ...] = ()
    size: tuple[int, int] = (48, 64)  # frame (H, W)
    fps: float = 25.0
    seed: int = 0

    @classmethod
    def demo(cls, duration: float = 30.0, **kw: object) -> Script:
        """A repeating 10-s pattern: 3 s beep, 2 s background, 2 s whistle, 1 s hum, 2 s silence."""
        events = []
        for base in range(0, math.ceil(duration), 10):
            events += [Event("beep", base + 0, base + 3), Event("whistle", base + 5, base + 7),
                       Event("hum", base + 7, base + 8)]
        kept = tuple(e for e in events if e.start < duration)
        return cls(duration=duration, events=kept, **kw)  # type: ignore[arg-type]

    def label_at(self, t: float) -> str:
        for e in self.events:
            if e.start <= t < e.end:
                return e.label
        return BACKGROUND

    def truth(self, segment: int) -> str:
        """Ground-truth label of 1-s segment i: the label at its midpoint."""
        return self.label_at(segment + 0.5)

    def frame(self, t: float) -> np.ndarray:
        """The picture at time t: (H, W, 3) uint8."""
        h, w = self.size
        img = np.empty((h, w, 3), np.uint8)
        y = np.arange(h, dtype=np.int32)[:, None]
        img[:] = (20 + (y * 40) // max(h, 1))[..., None].astype(np.uint8)  # dark vertical gradient
        label = self.label_at(t)
        if label != BACKGROUND:
            side = max(2, min(h, w) // 3)
            x0 = int((t % 1.0) * (w - side))
            y0 = (h - side) // 2
            img[y0:y0 + side, x0:x0 + side] = COLOURS[label]
        return img

    def samples(self, start: int, n: int, rate: int = SAMPLE_RATE) -> np.ndarray:
        """Samples start .. start+n-1 at `rate`: (n,) float32 in [-1, 1]."""
        idx = np.arange(start, start + n, dtype=np.int64)
        t = idx / rate
        out = noise(idx, self.seed) * 0.01
        for e in self.events:
            on = (t >= e.start) & (t < e.end)
            if on.any():
                out[on] += 0.5 * np.sin(2 * np.pi * TONES[e.label] * t[on])
        return out.astype(np.float32)

    def frame_count(self) -> int:
        return math.ceil(self.duration * self.fps - 1e-9)

    def sample_count(self, rate: int = SAMPLE_RATE) -> int:
        return round(self.duration * rate)


def noise(idx: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic white noise in [-1, 1) indexed by sample number (a hash, no RNG state)."""
    x = idx.astype(np.uint64) + np.uint64(seed * 0x9E3779B97F4A7C15 % (1 << 64))  # mod 2**64
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xFF51AFD7ED558CCD)
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xC4CEB9FE1A85EC53)
    x ^= x >> np.uint64(33)
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53) * 2.0 - 1.0


class SyntheticProducer(ThreadProducer):
    """Puts the script's frames and audio blocks of `block` samples in time order."""

    kinds = (VIDEO, AUDIO)
    name = "synthetic"

    def __init__(self, script: Script, block: int = 1024, realtime: bool = False) -> None:
        super().__init__()
        if block < 1:
            raise ValueError(f"block must be >= 1, got {block}")
        self.script, self.block, self.realtime = script, block, realtime

    def capture(self, queue: ItemQueue, clock: Clock, stop: threading.Event) -> None:
        s = self.script
        n_frames, n_samples = s.frame_count(), s.sample_count()
        fi, si = 0, 0
        while (fi < n_frames or si < n_samples) and not stop.is_set():
            n = min(self.block, n_samples - si)
            tv = fi / s.fps if fi < n_frames else math.inf
            # an audio block can be captured only once its last sample has been played
            ta_ready = (si + n) / SAMPLE_RATE if si < n_samples else math.inf
            if tv <= ta_ready:
                item: Frame | Audio = Frame(tv, s.frame(tv))
                fi, ready = fi + 1, tv
            else:
                item = Audio(si / SAMPLE_RATE, s.samples(si, n), SAMPLE_RATE)
                si, ready = si + n, ta_ready
            if self.realtime and not clock.sleep_until(ready, stop):
                return
            if not queue.put(item):
                return


def synthetic_source(script: Script, fast: bool = True, block: int = 1024,
                     live: bool | None = None,
                     capacity: dict[str, int] | None = None) -> Source:
    """A synthetic stream; `fast` = as fast as consumed, else paced on the clock like a live one.
    `live` (default: not fast) drops the oldest item when the consumer falls behind."""
    live = (not fast) if live is None else live
    return Source("synthetic", [SyntheticProducer(script, block, realtime=not fast)], live=live,
                  capacity=capacity, realtime=not fast)


def write_media(path: str | Path, script: Script, fps: float | None = None,
                audio_rate: int = 44100, channels: int = 1, video_codec: str = "mpeg4",
                audio_codec: str = "pcm_s16le") -> Path:
    """Encode the script as a video file with PyAV (container from the suffix: .mkv, .mp4, .mov).

    Exactly frame_count() frames at `fps` and round(duration * audio_rate) samples per channel,
    both starting at time 0 (with PCM audio; an AAC encoder pads its last frame)."""
    import av

    fps = fps or script.fps
    rate = Fraction(fps).limit_denominator(1001)
    path = Path(path)
    n_frames = math.ceil(script.duration * fps - 1e-9)
    n_samples = round(script.duration * audio_rate)
    layout = "mono" if channels == 1 else "stereo"
    h, w = script.size
    with av.open(str(path), "w") as out:
        vs = out.add_stream(video_codec, rate=rate)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        as_ = out.add_stream(audio_codec, rate=audio_rate, layout=layout)
        fmt = as_.codec_context.format.name if as_.codec_context.format else "s16"
        step = as_.codec_context.frame_size or 1024
        vi, ai = 0, 0
        while vi < n_frames or ai < n_samples:
            if vi < n_frames and (ai >= n_samples or vi / fps <= ai / audio_rate):
                frame = av.VideoFrame.from_ndarray(script.frame(float(vi / rate)), format="rgb24")
                frame.pts, frame.time_base = vi, 1 / rate
                out.mux(vs.encode(frame))
                vi += 1
            else:
                n = min(step, n_samples - ai)
                mono = script.samples(ai, n, audio_rate)
                chans = [mono] if channels == 1 else [mono, 0.8 * mono]
                out.mux(as_.encode(_audio_frame(chans, fmt, layout, audio_rate, ai)))
                ai += n
        out.mux(vs.encode())
        out.mux(as_.encode())
    return path


def _audio_frame(chans: list[np.ndarray], fmt: str, layout: str, rate: int, pts: int):
    import av

    x = np.stack(chans)  # (C, n) float in [-1, 1]
    if fmt.startswith(("s16", "s32")):
        bits = 16 if fmt.startswith("s16") else 32
        scale = float(2 ** (bits - 1))
        x = np.clip(np.round(x * (scale - 1)), -scale, scale - 1).astype(f"int{bits}")
    else:
        x = x.astype(np.float32)
    if not fmt.endswith("p"):  # packed formats interleave channels in one plane
        x = x.T.reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x), format=fmt, layout=layout)
    frame.sample_rate, frame.pts, frame.time_base = rate, pts, Fraction(1, rate)
    return frame
