"""Media files -> stamped items: the one decoder behind offline extraction and live replay.

    container = open_media("clip.mp4")        # UserError: missing, a folder, not media
    for item in decode(container):            # Frame(t, rgb) / Audio(t, samples, 16000)
        ...
    container.close()

Stream time is the file's presentation time minus its origin (`stream_origin`), so a file
replayed live and the same file extracted offline count segments from the same instant.
- video: the first video track, each frame stamped by its timestamp; `rgb` converts a decoded
  frame (default: full-size RGB), and with `lazy` only when the consumer reads `Frame.rgb`.
- audio: the first audio track, resampled to 16 kHz packed float and averaged over its
  channels, whatever the layout (mono to 7.1, named or not): the VGGish recipe, not FFmpeg's
  -3 dB downmix. Blocks are stamped by sample count from the first audio frame, so they are
  contiguous.
Packets of the two tracks come in the order the file stores them; the segmenter cuts by
timestamp, so the order across kinds does not matter.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from model.errors import UserError
from model.extractors.vggish_frontend import SAMPLE_RATE
from model.items import Audio, Frame, Item

# FFmpeg's resampler output: packed float, one row of interleaved channels. (PyAV's to_ndarray
# of a planar frame crashes the process with 8 or more channels.)
AUDIO_FORMAT = "flt"
FALLBACK_FPS = 25.0  # spacing of frames without a timestamp when the track declares no rate


class DecodeError(UserError):
    """The file stopped decoding part way through."""


def open_media(path: str | Path):
    """An open PyAV input container, or a one-line UserError naming what is wrong."""
    import av

    p = Path(path)
    if not p.exists():
        raise UserError(f"no such file: {p}; pass an existing video file")
    if p.is_dir():
        raise UserError(f"{p} is a directory; pass a video file")
    try:
        return av.open(str(p))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot open {p} as a video file ({short_error(e)}); pass a playable "
                        "video file with sound") from None


def short_error(e: BaseException) -> str:
    """An FFmpeg error as one line of at most 200 characters."""
    msg = " ".join(str(e).split()) or type(e).__name__
    return msg if len(msg) < 200 else msg[:197] + "..."


def stream_origin(container) -> float:
    """Stream time 0 of a file, in its own seconds: the container start, else the earliest
    stream start."""
    if container.start_time is not None:
        return container.start_time / 1e6
    starts = [float(s.start_time * s.time_base) for s in container.streams
              if s.start_time is not None and s.time_base is not None]
    return min(starts, default=0.0)


def full_rgb(frame) -> np.ndarray:
    """A decoded video frame -> (H, W, 3) uint8 RGB."""
    return frame.to_ndarray(format="rgb24")


def mono(frame) -> np.ndarray:
    """A packed float AudioFrame -> (n,) float32, the mean of its channels."""
    if frame.samples == 0:
        return np.zeros(0, np.float32)
    x = frame.to_ndarray().reshape(frame.samples, -1)  # (n, channels), any channel count
    return x.mean(axis=1, dtype=np.float32)


def decode(container, rgb: Callable[[object], np.ndarray] = full_rgb,
           lazy: bool = False) -> Iterator[Item]:
    """Frame and Audio items of one pass over the first video and audio tracks of `container`
    (either may be absent), in decode order. Raises DecodeError if the file breaks off."""
    import av

    video = container.streams.video[0] if container.streams.video else None
    audio = container.streams.audio[0] if container.streams.audio else None
    if video is not None:
        video.thread_type = "AUTO"
    origin = stream_origin(container)
    frame_dt = 1.0 / float(video.average_rate or FALLBACK_FPS) if video is not None else 0.0
    resampler = av.AudioResampler(format=AUDIO_FORMAT, rate=SAMPLE_RATE)  # layout kept
    audio_t0: float | None = None
    n_audio = 0
    last_t = -frame_dt

    def audio_items(frames) -> Iterator[Audio]:
        nonlocal n_audio
        for f in frames:
            x = mono(f)
            if len(x):
                yield Audio(audio_t0 + n_audio / SAMPLE_RATE, x, SAMPLE_RATE)
                n_audio += len(x)

    try:
        for packet in container.demux([s for s in (video, audio) if s is not None]):
            for f in packet.decode():
                if packet.stream is video:
                    last_t = f.time - origin if f.time is not None else last_t + frame_dt
                    yield Frame(last_t, functools.partial(rgb, f) if lazy else rgb(f))
                else:
                    if audio_t0 is None:
                        audio_t0 = (f.time if f.time is not None else origin) - origin
                    yield from audio_items(resampler.resample(f))
        if audio_t0 is not None:
            yield from audio_items(resampler.resample(None))
    except av.FFmpegError as e:
        name = Path(container.name).name
        raise DecodeError(f"{name}: decode error near {max(last_t, 0.0):.1f} s ({short_error(e)});"
                          " the file is damaged past that point: re-encode it (e.g. ffmpeg -i IN "
                          "OUT)") from None
