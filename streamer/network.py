"""Network streams: any URL FFmpeg opens through PyAV (rtsp://, rtmp://, srt://, http(s)://,
tcp://, udp://, MPEG-TS and the rest), picture and sound of one stream decoded together by the
one decoder of media (`model.media.decode`) and placed on the stream clock by their timestamps.

    producer = NetworkProducer("rtsp://cam.local/live")   # UserError now if it does not open
    source = stream_source("tcp://10.0.0.5:9000")          # a live Source around it

- Open and read timeouts are always set (OPEN_TIMEOUT_S, READ_TIMEOUT_S): PyAV's interrupt
  timeout plus FFmpeg's `rw_timeout`, and `timeout` for the protocols where it is the socket
  timeout; a frozen sender cannot hang the detector.
- Placement by pts: the first connection keeps the sender's own time (pts minus the stream's
  origin, as a replay of the same data would), less the whole seconds that went by between the
  open and the start of capture (the model loading): those seconds of backlog are stale, dropped
  and counted, so the stream starts live; after a reconnect the sender's time restarts,
  so the new connection is placed at its arrival on the stream clock, never before what came
  earlier. The seconds in between have no data: the segmenter closes them flagged `missing`.
- Live: a drop-oldest queue as the camera's (`streamer.sources`).
- On end of data, a read error or a timeout, the stream reconnects on the camera's backoff
  schedule (`backoff_delays`); after the last try it ends with StreamLost (one line) once the
  segments before it are flushed.
- A stream without audio or without video follows the missing-modality rule (silence or the
  held picture, flagged `missing`) and says so once, at open.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable, Iterator

from model.errors import UserError
from model.items import AUDIO, VIDEO, Audio, Frame, Item
from model.media import decode, short_error
from streamer.clock import Clock
from streamer.sources import ItemQueue, Source, ThreadProducer, backoff_delays, retry

OPEN_TIMEOUT_S = 10.0  # connecting and reading the stream's first second
READ_TIMEOUT_S = 5.0  # no data for this long: the sender is frozen or gone
ANALYZE_S = 0.5  # stream FFmpeg reads at open to find its tracks (its default is 5 s): what
# arrives in one burst when a connection opens, kept under the live queue span (LIVE_SPAN_S)
# FFmpeg protocols whose `timeout` option is the socket I/O timeout in microseconds.
SOCKET_TIMEOUT_PROTOCOLS = ("tcp", "udp", "http", "https", "rtsp", "rtsps", "srt")
US = 1_000_000


class StreamLost(UserError):
    pass


def is_url(target: str) -> bool:
    """"rtsp://host/x" is a network stream; "0", "/dev/video2", "clip.mp4" are not."""
    return "://" in target


def open_options(url: str, read_timeout: float = READ_TIMEOUT_S) -> dict[str, str]:
    """FFmpeg options for opening `url` live: the read timeout and a short probe."""
    us = str(int(read_timeout * US))
    options = {"rw_timeout": us, "analyzeduration": str(int(ANALYZE_S * US))}
    if url.split("://", 1)[0].lower() in SOCKET_TIMEOUT_PROTOCOLS:
        options["timeout"] = us
    return options


def open_stream(url: str, open_timeout: float = OPEN_TIMEOUT_S,
                read_timeout: float = READ_TIMEOUT_S):
    """An open PyAV container of `url` with both timeouts set; raises av.FFmpegError / OSError."""
    import av

    return av.open(url, options=open_options(url, read_timeout),
                   timeout=(open_timeout, read_timeout))


def carried(container) -> tuple[str, ...]:
    """The kinds of item a container's tracks give."""
    return tuple(k for k, tracks in ((VIDEO, container.streams.video),
                                     (AUDIO, container.streams.audio)) if tracks)


def shifted(item: Item, shift: float) -> Item:
    """The item `shift` seconds later on the stream clock."""
    if isinstance(item, Audio):
        return Audio(item.t + shift, item.samples, item.rate, item.wall)
    return Frame(item.t + shift, item.rgb, item.wall)


def item_end(item: Item) -> float:
    return item.end if isinstance(item, Audio) else item.t


def missing_note(url: str, kinds: tuple[str, ...]) -> str | None:
    """The one line saying what a stream without sound or picture gives instead."""
    if AUDIO not in kinds:
        return (f"note: {url} carries no audio: its segments are silence, flagged missing "
                "(audio)")
    if VIDEO not in kinds:
        return (f"note: {url} carries no video: its segments hold a black picture, flagged "
                "missing (video)")
    return None


class NetworkProducer(ThreadProducer):
    name = "stream"

    def __init__(self, url: str, delays: list[float] | None = None,
                 open_timeout: float = OPEN_TIMEOUT_S, read_timeout: float = READ_TIMEOUT_S,
                 say: Callable[[str], None] | None = None) -> None:
        """Opens the stream now: a URL that does not open is a UserError, before any thread."""
        super().__init__()
        self.url = url
        self.delays = backoff_delays() if delays is None else delays
        self.timeouts = (open_timeout, read_timeout)
        self.reconnects = 0  # connections made after the first
        self.lost: list[str] = []  # why each connection ended
        self.skipped_s = 0  # whole seconds of the sender's time dropped as stale at start
        self.container = self._open()
        self.opened_at = time.monotonic()
        if self.container is None:
            raise UserError(f"cannot open stream {url} ({self.lost[-1]}): check the address and "
                            "that the sender is running")
        self.kinds = carried(self.container)
        if not self.kinds:
            self.container.close()
            raise UserError(f"stream {url} carries neither video nor audio; pass a stream with "
                            "picture or sound")
        note = missing_note(url, self.kinds)
        if note:
            (say or _stderr)(note)

    def _open(self):
        import av

        try:
            return open_stream(self.url, *self.timeouts)
        except (av.FFmpegError, OSError) as e:
            self.lost.append(short_error(e))
            return None

    def _reconnect(self) -> bool:
        self.container = self._open()
        if self.container is not None:
            self.reconnects += 1
        return self.container is not None

    def _items(self) -> Iterator[Item]:
        """One connection's items; its end (or error) is noted in `lost`."""
        container = self.container
        try:
            yield from decode(container)
            self.lost.append("the sender ended the stream")
        except UserError as e:  # model.media.DecodeError: a read error or a timeout
            self.lost.append(short_error(e.__context__ or e))  # FFmpeg's own words
        finally:
            container.close()
            self.container = None

    def capture(self, queue: ItemQueue, clock: Clock, stop: threading.Event) -> None:
        end = 0.0  # stream time where the data placed so far ends
        stale = self.skipped_s = math.floor(time.monotonic() - self.opened_at)  # stale backlog
        while not stop.is_set():
            first = self.reconnects == 0
            shift: float | None = -stale if first else None
            for item in self._items():
                if first and stale and item.t < stale:
                    queue.count_drop(item.kind)  # sent while the detector was loading
                    continue
                if shift is None:  # the sender's time restarted: place it at its arrival
                    shift = max(end, clock.now()) - item.t
                placed = shifted(item, shift)
                end = max(end, item_end(placed))
                if stop.is_set() or not queue.put(placed):
                    return
            if stop.is_set():
                return
            if not retry(self._reconnect, self.delays, stop):
                if stop.is_set():
                    return
                raise StreamLost(f"stream {self.url} was lost ({self.lost[-1]}) and did not come "
                                 f"back after {len(self.delays)} tries: check the sender, then "
                                 "restart")

    def stop(self) -> None:
        super().stop()
        if self._thread is None and self.container is not None:
            self.container.close()
            self.container = None


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def stream_source(url: str, delays: list[float] | None = None,
                  open_timeout: float = OPEN_TIMEOUT_S, read_timeout: float = READ_TIMEOUT_S,
                  say: Callable[[str], None] | None = None) -> Source:
    """A live Source of one network stream."""
    producer = NetworkProducer(url, delays, open_timeout, read_timeout, say)
    return Source(f"stream:{url}", [producer], live=True)
