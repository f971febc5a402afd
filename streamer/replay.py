"""Replay a recorded file as if it were live: `model.media`'s decoder on a capture thread.

    source = replay_source("clip.mp4", fast=False)   # paced by pts on the stream clock
    source = replay_source("clip.mp4", fast=True)    # as fast as consumed, nothing dropped

The items are those offline extraction cuts (`model.media.decode`: the same stream time,
full-size upright RGB frames, 16 kHz mono audio), so streaming features equal offline ones. In
real time each item is released at its stream time (audio at its last sample).

A file that breaks off (a decode error, or data ending over a second before the end the file
declares) ends the stream with a DecodeError after the items before the break. A clip too
short for one segment (under 0.5 s) is refused: at open from the duration it declares, else
once its data ends.
"""

from __future__ import annotations

import threading
from pathlib import Path

from model.errors import UserError
from model.media import DecodeError, Extent, declared_end, decode, open_media
from model.segments import segment_count
from streamer.clock import Clock
from streamer.sources import AUDIO, VIDEO, Audio, ItemQueue, Source, ThreadProducer

__all__ = ["DecodeError", "ReplayProducer", "open_container", "replay_source"]


def open_container(path: str | Path):
    """Open a media file with both a video and an audio stream, or raise a one-line UserError."""
    container = open_media(path)
    p = Path(path)
    if not container.streams.video:
        container.close()
        raise UserError(f"{p} has no video track; the detector needs picture and sound")
    if not container.streams.audio:
        container.close()
        raise UserError(f"{p} has no audio track; the detector needs picture and sound "
                        "(pick a file with sound)")
    declared = declared_end(container, [container.streams.video[0], container.streams.audio[0]])
    if declared is not None and segment_count(declared) == 0:
        container.close()
        raise too_short(p, declared)
    return container


def too_short(path: Path, seconds: float) -> UserError:
    return UserError(f"{path} is {seconds:.2f} s long, shorter than half a segment (0.5 s): "
                     "nothing to label; pass a clip of at least 0.5 s")


class ReplayProducer(ThreadProducer):
    kinds = (VIDEO, AUDIO)
    name = "replay"

    def __init__(self, path: str | Path, realtime: bool) -> None:
        super().__init__()
        self.path, self.realtime = Path(path), realtime
        self.container = open_container(path)  # fail here, before any thread starts

    def capture(self, queue: ItemQueue, clock: Clock, stop: threading.Event) -> None:
        extent = Extent()
        try:
            for item in decode(self.container, extent=extent):
                ready = item.end if isinstance(item, Audio) else item.t
                if self.realtime and not clock.sleep_until(ready, stop):
                    return
                if stop.is_set() or not queue.put(item):
                    return
        finally:
            self.container.close()
        if segment_count(extent.stream_end) == 0:
            raise too_short(self.path, extent.stream_end)

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
