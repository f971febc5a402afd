"""Replay a recorded file as if it were live (PyAV: video and audio decoded in one pass).

    source = replay_source("clip.mp4", fast=False)   # paced by pts on the stream clock
    source = replay_source("clip.mp4", fast=True)    # as fast as consumed, nothing dropped

Stream time is the file's presentation time (pts minus the file's start, as model.extract
reads it, so streaming features equal offline ones). Frames
are converted to RGB; audio is resampled to 16 kHz (channels kept, then averaged to mono: the
VGGish recipe, not FFmpeg's -3 dB downmix) and stamped by sample count from the first audio
frame, so the blocks are contiguous. Packets of the two streams may interleave out of order:
the segmenter cuts by timestamp, so order across kinds does not matter.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from model.errors import UserError
from model.extract import stream_origin  # stream time 0: the offline rule
from model.extractors.vggish_frontend import SAMPLE_RATE
from streamer.clock import Clock
from streamer.sources import AUDIO, VIDEO, Audio, Frame, ItemQueue, Source, ThreadProducer


class DecodeError(UserError):
    """The file stopped decoding part way through."""


def open_container(path: str | Path):
    """Open a media file with both a video and an audio stream, or raise a one-line UserError."""
    import av

    p = Path(path)
    if not p.exists():
        raise UserError(f"no such file: {p}; pass an existing video file to --replay")
    if p.is_dir():
        raise UserError(f"{p} is a directory; pass a video file to --replay")
    try:
        container = av.open(str(p))
    except (av.FFmpegError, OSError) as e:
        raise UserError(f"cannot open {p} as a video file ({e}); "
                        "pass a playable video file with sound") from None
    if not container.streams.video:
        container.close()
        raise UserError(f"{p} has no video track; the detector needs picture and sound")
    if not container.streams.audio:
        container.close()
        raise UserError(f"{p} has no audio track; the detector needs picture and sound "
                        "(pick a file with sound)")
    return container


def to_mono(frame) -> np.ndarray:
    """A resampled planar float AudioFrame -> (n,) float32, channels averaged."""
    x = frame.to_ndarray()  # (C, n)
    return x.reshape(len(frame.layout.channels), -1).mean(axis=0, dtype=np.float32)


def decode(container, realtime: bool = False, clock: Clock | None = None,
           stop: threading.Event | None = None):
    """Yield (Frame | Audio) items of one pass over `container`, in decode order.

    With `realtime`, each item is released at its stream time on `clock` (audio at its last
    sample); the generator returns early when `stop` is set."""
    import av

    stop = stop or threading.Event()
    vs, as_ = container.streams.video[0], container.streams.audio[0]
    origin = stream_origin(container)
    resampler = av.AudioResampler(format="fltp", rate=SAMPLE_RATE)  # layout kept, mono below
    audio_t0: float | None = None
    n_audio = 0
    last_t = 0.0

    def audio_items(frames):
        nonlocal n_audio
        for f in frames:
            x = to_mono(f)
            if len(x):
                yield Audio(audio_t0 + n_audio / SAMPLE_RATE, x, SAMPLE_RATE)
                n_audio += len(x)

    try:
        for packet in container.demux(vs, as_):
            for f in packet.decode():
                if packet.stream is vs:
                    last_t = (f.time if f.time is not None else last_t) - origin
                    items = [Frame(last_t, f.to_ndarray(format="rgb24"))]
                else:
                    if audio_t0 is None:
                        audio_t0 = (f.time or 0.0) - origin
                    items = list(audio_items(resampler.resample(f)))
                for item in items:
                    ready = item.end if isinstance(item, Audio) else item.t
                    if realtime and clock is not None and not clock.sleep_until(ready, stop):
                        return
                    if stop.is_set():
                        return
                    yield item
        if audio_t0 is not None:
            yield from audio_items(resampler.resample(None))
    except av.FFmpegError as e:
        name = Path(container.name).name
        raise DecodeError(f"{name}: decode error near {last_t:.1f} s ({e}); the file is damaged "
                          "past that point: re-encode it (e.g. ffmpeg -i IN OUT)") from None


class ReplayProducer(ThreadProducer):
    kinds = (VIDEO, AUDIO)
    name = "replay"

    def __init__(self, path: str | Path, realtime: bool) -> None:
        super().__init__()
        self.path, self.realtime = Path(path), realtime
        self.container = open_container(path)  # fail here, before any thread starts

    def capture(self, queue: ItemQueue, clock: Clock, stop: threading.Event) -> None:
        try:
            for item in decode(self.container, self.realtime, clock, stop):
                if not queue.put(item):
                    return
        finally:
            self.container.close()

    def stop(self) -> None:
        super().stop()
        if self._thread is None:
            self.container.close()


def replay_source(path: str | Path, fast: bool = False,
                  capacity: dict[str, int] | None = None) -> Source:
    """A file replayed in real time (live-like: drops the oldest when behind) or `fast`."""
    producer = ReplayProducer(path, realtime=not fast)
    return Source(f"replay:{Path(path).name}", [producer], live=not fast, capacity=capacity,
                  realtime=not fast)
