"""One media file -> the AVE-format features of its 10-second windows.

    ff = extract_file(Path("clip.mp4"), build_extractors(...), ClipPolicy())
    ff.audio, ff.visual       # (W, 10, 128), (W, 10, 7, 7, 512) float32
    ff.starts, ff.notes       # window starts in seconds, what was padded or dropped
    cut = Cut()               # decode and cut only, the networks run elsewhere (extract_ray):
    for window in cut_windows(Path("clip.mp4"), 16, ClipPolicy(), cut=cut):
        ...                   # 10 ClosedSegments; their `picks` are the frames for VGG19
    cut.duration, cut.notes   # once the windows are exhausted

The file is cut exactly as a live replay of it is: `model.media.decode` gives the stamped items
and `model.segments.Segmenter` the segments (frames chosen by `select_frames`, a segment with no
frame holds the last one, audio placed by timestamp, the end of the stream by the segment-count
rule). Every 10 segments make a window; VGG19 runs on the window's selected frames in batches
of the extractors' batch size, and only those frames (and each segment's last) are converted to
RGB. Clip policy (`ClipPolicy`, the model.extract flags):
- windows [0, 10), [10, 20), ...; a trailing remainder of at least 9.5 s gives 10 segments
  (the last one partial) and so one more window; a shorter remainder is dropped (noted).
  `long_clips="truncate"` keeps the first window only.
- a clip with fewer than 10 segments is padded to 10 (`short_clips="pad"`: the last frame held,
  silence) or skipped (`"skip"`).
- no audio track: skipped (`no_audio="skip"`) or silent (`"silence"`). No video track,
  unreadable or broken files, and files cut short (data ending over a second before the end
  they declare, `model.media`): `ClipError`, with the decoder's line naming both durations.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.errors import UserError
from model.extractors import Extractors, vgg19
from model.items import AUDIO, VIDEO
from model.layout import SEGMENTS
from model.media import DecodeError, decode, open_media
from model.segments import ClosedSegment, Segmenter, segment_count, visual_features

MIN_WINDOW_SECONDS = SEGMENTS - 0.5  # 10 segments by the segment-count rule
DROP_NOTE_SECONDS = 0.05  # a dropped remainder shorter than this is not worth a note


@dataclass(frozen=True)
class ClipPolicy:
    long_clips: str = "windows"  # "windows" | "truncate"
    short_clips: str = "pad"  # "pad" | "skip"
    no_audio: str = "skip"  # "skip" | "silence"


class ClipError(Exception):
    """This file cannot give a clip (reported in the summary, the batch goes on)."""


@dataclass
class FileFeatures:
    audio: np.ndarray  # (W, 10, 128)
    visual: np.ndarray  # (W, 10, 7, 7, 512)
    starts: np.ndarray  # (W,) window start, seconds
    duration: float
    notes: list[str]


def vgg_rgb(frame) -> np.ndarray:
    """A decoded frame -> (224, 224, 3) uint8: VGG19's input size, so a selected frame waiting
    for its window's batch is small."""
    return vgg19.resize(frame.to_ndarray(format="rgb24")[None])[0]


def window_features(window: list[ClosedSegment], ex: Extractors) -> tuple[np.ndarray, np.ndarray]:
    """(10, 128), (10, 7, 7, 512) of one window's segments."""
    audio = ex.audio.segments([s.audio for s in window])
    return audio, visual_features(window, ex.visual.frame_features)


@dataclass
class Cut:
    """What cutting a file found besides its windows, set once `cut_windows` is exhausted."""

    duration: float = 0.0  # seconds of data (the video's end)
    notes: list[str] = field(default_factory=list)


def extract_file(path: Path, ex: Extractors, policy: ClipPolicy,
                 max_windows: int | None = None) -> FileFeatures:
    """Features of every window of one file (see the module docstring for the rules)."""
    cut = Cut()
    windows = [window_features(w, ex) for w in
               cut_windows(path, ex.recipe.frames_per_segment, policy, max_windows, cut)]
    audio, visual = (np.stack(x).astype(np.float32) for x in zip(*windows, strict=True))
    return FileFeatures(audio, visual, np.arange(len(windows), dtype=np.float64) * SEGMENTS,
                        cut.duration, cut.notes)


def cut_windows(path: Path, k: int, policy: ClipPolicy, max_windows: int | None = None,
                cut: Cut | None = None) -> Iterator[list[ClosedSegment]]:
    """The file's windows of 10 closed segments, in order, decoded and cut with no network pass:
    each segment carries its `picks` (k frames a second chosen for VGG19, as (224, 224, 3) RGB).
    `cut` gets the duration and notes when the generator is exhausted. ClipError: no clip."""
    cut = cut if cut is not None else Cut()
    try:
        container = open_media(path)
    except UserError as e:
        raise ClipError(str(e)) from None
    with container:
        has_audio = bool(container.streams.audio)
        if not container.streams.video:
            raise ClipError("no video track")
        if not has_audio and policy.no_audio == "skip":
            raise ClipError("no audio track (use --no-audio silence to extract it with silence)")
        if max_windows is None and policy.long_clips == "truncate":
            max_windows = 1
        seg = Segmenter(None, k, kinds=(VIDEO, AUDIO) if has_audio else (VIDEO,))
        closed: list[ClosedSegment] = []
        n = 0  # windows given

        def take_windows() -> Iterator[list[ClosedSegment]]:
            nonlocal n
            while len(closed) >= SEGMENTS and n != max_windows:
                window = closed[:SEGMENTS]
                del closed[:SEGMENTS]
                n += 1
                yield window

        try:
            for item in decode(container, rgb=vgg_rgb, lazy=True):
                closed.extend(seg.push(item))
                yield from take_windows()
                if n == max_windows:
                    break
        except DecodeError as e:
            raise ClipError(str(e)) from None
    if seg.n_frames == 0:
        raise ClipError("no decodable video frames")
    duration = seg.data_end()
    notes = [] if has_audio else ["no audio track: silent audio"]
    if n != max_windows:  # the end of the file, not the window limit
        short = n == 0 and segment_count(duration) < SEGMENTS
        if short and policy.short_clips == "skip":
            raise ClipError(f"shorter than {MIN_WINDOW_SECONDS} s ({duration:.2f} s; use "
                            "--short-clips pad to pad it)")
        closed.extend(seg.finish(min_count=SEGMENTS if short else 0))
        yield from take_windows()
        remainder = duration - n * SEGMENTS
        if short:
            notes.append(f"{duration:.2f} s clip padded to 10 s (last frame held, silence)")
        elif remainder > DROP_NOTE_SECONDS:
            notes.append(f"last {remainder:.2f} s dropped (not a whole 10-s window)")
    if n > 1:
        notes.append(f"{duration:.2f} s -> {n} windows of 10 s")
    cut.duration, cut.notes = duration, notes
