"""Media files -> stamped items: the one decoder behind offline extraction and live replay.

    container = open_media("clip.mp4")        # UserError: missing, a folder, not media
    for item in decode(container):            # Frame(t, rgb) / Audio(t, samples, 16000)
        ...
    container.close()

Stream time is the file's presentation time minus its origin (`stream_origin`), so a file
replayed live and the same file extracted offline count segments from the same instant.
- video: the first video track, each frame stamped by its timestamp; `rgb` converts a decoded
  frame (default: full-size RGB), and with `lazy` only when the consumer reads `Frame.rgb`.
  The picture is turned upright as the file's display matrix says (a phone's portrait clip:
  -90 degrees, a quarter turn clockwise), by quarter turns; a mirror in the matrix is not
  undone (only its rotation part is applied).
- audio: the first audio track, averaged over its channels whatever the layout (mono to 7.1,
  named or not: the VGGish recipe, not FFmpeg's -3 dB downmix) and resampled to 16 kHz as the
  official VGGish front end does (model.extractors.resample, the one resampler of the offline,
  replay and microphone paths). Blocks are stamped by sample count from the first audio frame,
  so they are contiguous.
Packets of the two tracks come in the order the file stores them; the segmenter cuts by
timestamp, so the order across kinds does not matter.

A file that breaks off is a `DecodeError` once the items before the break are given: an FFmpeg
error part way, or data ending more than TRUNCATED_S before the end the file declares (a
download or copy cut short; FFmpeg reads such a file to its cut without a word). `Extent` says
how far the data went.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.errors import UserError
from model.extractors.resample import StreamResampler
from model.extractors.vggish_frontend import SAMPLE_RATE
from model.items import Audio, Frame, Item

# Decoded audio converted (rate kept) to packed float, one row of interleaved channels. (PyAV's
# to_ndarray of a planar frame crashes the process with 8 or more channels.)
AUDIO_FORMAT = "flt"
FALLBACK_FPS = 25.0  # spacing of frames without a timestamp when the track declares no rate
TRUNCATED_S = 1.0  # data ending this much before the declared end: the file is cut short
QUARTER_TURN, HALF_TURN = 90, 180  # degrees


class DecodeError(UserError):
    """The file stopped decoding part way through."""


@dataclass
class Extent:
    """How far a file's data goes, in stream time, as `decode` reads it."""

    declared: float | None = None  # where the file says its decoded tracks end (None: unsaid)
    video: float | None = None  # the last frame's time plus one frame interval
    audio: float | None = None  # the end of the last audio sample

    @property
    def read(self) -> float:
        """Where the data read so far ends, either kind."""
        return max(self.video or 0.0, self.audio or 0.0)

    @property
    def stream_end(self) -> float:
        """The end of the stream by the segment rule (model.segments): the video's end, the
        audio's without video."""
        return self.video if self.video is not None else (self.audio or 0.0)


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


def declared_end(container, streams) -> float | None:
    """Where the file says `streams` end, in stream time: their own durations (mp4, mov), else
    the container's (matroska); None if it says nothing."""
    origin = stream_origin(container)
    ends = [(float(s.start_time * s.time_base) if s.start_time is not None else origin)
            - origin + float(s.duration * s.time_base)
            for s in streams if s.duration and s.time_base]
    if ends:
        return max(ends)
    return container.duration / 1e6 if container.duration else None


def upright(image: np.ndarray, rotation: float) -> np.ndarray:
    """(H, W, ...) turned counterclockwise by `rotation` degrees (a display matrix's angle,
    PyAV's `VideoFrame.rotation`), to the nearest quarter turn; an angle outside [-180, 180]
    (a singular matrix) leaves it as it is."""
    turns = round(rotation / QUARTER_TURN) % 4 if abs(rotation) <= HALF_TURN else 0
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def display_rgb(rgb: Callable[[object], np.ndarray], frame) -> np.ndarray:
    """`rgb(frame)` as the picture is shown: upright."""
    return upright(rgb(frame), frame.rotation)


def full_rgb(frame) -> np.ndarray:
    """A decoded video frame -> (H, W, 3) uint8 RGB."""
    return frame.to_ndarray(format="rgb24")


def channels(frame) -> np.ndarray:
    """A packed float AudioFrame -> (n, channels) float32, any channel count."""
    return frame.to_ndarray().reshape(frame.samples, -1)


def decode(container, rgb: Callable[[object], np.ndarray] = full_rgb, lazy: bool = False,
           extent: Extent | None = None) -> Iterator[Item]:
    """Frame and Audio items of one pass over the first video and audio tracks of `container`
    (either may be absent), in decode order; `extent` follows how far they go. Raises
    DecodeError if the file breaks off (see the module docstring)."""
    import av

    video = container.streams.video[0] if container.streams.video else None
    audio = container.streams.audio[0] if container.streams.audio else None
    streams = [s for s in (video, audio) if s is not None]
    if video is not None:
        video.thread_type = "AUTO"
    origin = stream_origin(container)
    frame_dt = 1.0 / float(video.average_rate or FALLBACK_FPS) if video is not None else 0.0
    converter = av.AudioResampler(format=AUDIO_FORMAT)  # rate and layout kept
    to_16k: StreamResampler | None = None  # made at the track's rate, from its first frame
    ext = extent if extent is not None else Extent()
    ext.declared = declared_end(container, streams)
    audio_t0: float | None = None
    n_audio = 0
    last_t = -frame_dt

    def audio_items(frames, end: bool = False) -> Iterator[Audio]:
        """16 kHz mono items of converted frames (end: and the resampler's last samples)."""
        nonlocal n_audio, to_16k
        blocks = []
        for f in frames:
            to_16k = to_16k or StreamResampler(f.sample_rate)
            blocks.append(to_16k.push(channels(f)) if f.samples else np.zeros(0, np.float32))
        if end and to_16k is not None:
            blocks.append(to_16k.flush())
        for x in blocks:
            if len(x):
                t = audio_t0 + n_audio / SAMPLE_RATE
                n_audio += len(x)
                ext.audio = audio_t0 + n_audio / SAMPLE_RATE
                yield Audio(t, x, SAMPLE_RATE)

    name = Path(container.name).name
    try:
        for packet in container.demux(streams):
            for f in packet.decode():
                if packet.stream is video:
                    last_t = f.time - origin if f.time is not None else last_t + frame_dt
                    ext.video = max(ext.video or 0.0, last_t + frame_dt)
                    yield Frame(last_t, functools.partial(display_rgb, rgb, f) if lazy
                                else display_rgb(rgb, f))
                else:
                    if audio_t0 is None:
                        audio_t0 = (f.time if f.time is not None else origin) - origin
                    yield from audio_items(converter.resample(f))
        if audio_t0 is not None:
            yield from audio_items(converter.resample(None), end=True)
    except av.FFmpegError as e:
        raise DecodeError(f"{name}: decode error near {ext.read:.1f} s ({short_error(e)}); the "
                          "file is damaged past that point: re-encode it (e.g. ffmpeg -i IN OUT)"
                          ) from None
    if ext.declared is not None and ext.declared - ext.read > TRUNCATED_S:
        raise DecodeError(f"{name}: the data ends at {ext.read:.1f} s of the {ext.declared:.1f} s "
                          "the file declares (cut short or damaged); use the complete file or "
                          "re-encode it (e.g. ffmpeg -i IN OUT)")
