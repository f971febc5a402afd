"""Replay a recorded file as if it were live: `model.media`'s decoder on a capture thread.

    source = replay_source("clip.mp4", fast=False)   # paced by pts on the stream clock
    source = replay_source("clip.mp4", fast=True)    # as fast as consumed, nothing dropped

The items are those offline extraction cuts (`model.media.decode`: the same stream time,
full-size RGB frames, 16 kHz mono audio), so streaming features equal offline ones. In real
time each item is released at its stream time (audio at its last sample).
"""

from __future__ import annotations

import threading
from pathlib import Path

from model.errors import UserError
from model.media import DecodeError, decode, open_media
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
    return container


class ReplayProducer(ThreadProducer):
    kinds = (VIDEO, AUDIO)
    name = "replay"

    def __init__(self, path: str | Path, realtime: bool) -> None:
        super().__init__()
        self.path, self.realtime = Path(path), realtime
        self.container = open_container(path)  # fail here, before any thread starts

    def capture(self, queue: ItemQueue, clock: Clock, stop: threading.Event) -> None:
        try:
            for item in decode(self.container):
                ready = item.end if isinstance(item, Audio) else item.t
                if self.realtime and not clock.sleep_until(ready, stop):
                    return
                if stop.is_set() or not queue.put(item):
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
