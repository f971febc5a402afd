"""Sources behind one interface: stamped frames and audio blocks from capture threads.

    source = replay_source("clip.mp4", fast=True)     # or camera / microphone / synthetic
    source.start(Clock())
    for item in source:                               # Frame(t, rgb) / Audio(t, samples, rate)
        ...
    source.close()                                    # stops and joins every capture thread

A source is a set of producers (capture threads, or a PortAudio callback) that only capture:
they copy the data, stamp it on the stream clock and put it on one bounded `ItemQueue`. Live
sources drop the oldest item of a kind when its queue is full or spans more than
LIVE_SPAN_S, and count the drop; `--fast` replay blocks the producer instead (nothing lost,
deterministic). A producer's fault (camera
lost, decode error) ends the source: the items captured before it are still delivered, then
`get` raises it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Protocol

from model.items import AUDIO, KINDS, VIDEO, Item
from model.items import Audio as Audio  # the items every source yields, re-exported for them
from model.items import Frame as Frame
from streamer.clock import Clock

# Items a kind's queue holds at most (memory stays bounded whatever the consumer does: 32
# frames of 1080p are 200 MB), and the stream time a live queue spans before it drops its
# oldest: the same for both kinds, so a consumer that falls behind loses picture and sound of
# the same moments, never one kind only.
DEFAULT_CAPACITY = {VIDEO: 32, AUDIO: 256}
LIVE_SPAN_S = 1.0


class EndOfStream:
    """What `ItemQueue.get` returns once every producer has finished and the queue is empty."""


END = EndOfStream()


class ItemQueue:
    """A bounded queue per kind behind one lock; `get` returns the oldest head across kinds."""

    def __init__(self, drop_oldest: bool, capacity: dict[str, int] | None = None,
                 max_span: float | None = None) -> None:
        """drop_oldest: else `put` blocks when full; max_span: with drop_oldest, also drop
        items more than this many seconds older than the newest of their kind."""
        self.drop_oldest, self.max_span = drop_oldest, max_span
        self.capacity = dict(DEFAULT_CAPACITY if capacity is None else capacity)
        self._items: dict[str, deque[Item]] = {k: deque() for k in self.capacity}
        self._cond = threading.Condition()
        self._open = 0  # producers still running
        self._closed = False  # no more puts accepted
        self._error: BaseException | None = None
        self.drops = dict.fromkeys(self.capacity, 0)
        self.high_water = dict.fromkeys(self.capacity, 0)
        self.put_count = dict.fromkeys(self.capacity, 0)

    def register(self) -> None:
        with self._cond:
            self._open += 1

    def put(self, item: Item) -> bool:
        """Queue an item; False once the queue is closed (the producer should stop)."""
        q, cap = self._items[item.kind], self.capacity[item.kind]
        with self._cond:
            while not self._closed and len(q) >= cap and not self.drop_oldest:
                self._cond.wait()
            if self._closed:
                return False
            while q and (len(q) >= cap or (self.max_span is not None
                                           and item.t - q[0].t > self.max_span)):
                q.popleft()
                self.drops[item.kind] += 1
            q.append(item)
            self.put_count[item.kind] += 1
            self.high_water[item.kind] = max(self.high_water[item.kind], len(q))
            self._cond.notify_all()
            return True

    def count_drop(self, kind: str, n: int = 1) -> None:
        """Count items lost before they reached the queue (e.g. a microphone overflow)."""
        with self._cond:
            self.drops[kind] += n

    def done(self) -> None:
        """A producer finished (end of file, stopped)."""
        with self._cond:
            self._open -= 1
            self._cond.notify_all()

    def fail(self, error: BaseException) -> None:
        """A producer failed: accept nothing more; `get` drains what is queued, then raises."""
        with self._cond:
            if self._error is None:
                self._error = error
            self._closed = True
            self._cond.notify_all()

    def close(self) -> None:
        """Stop accepting items and wake every blocked producer."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _pop_oldest(self) -> Item | None:
        heads = [q for q in self._items.values() if q]
        if not heads:
            return None
        q = min(heads, key=lambda q: q[0].t)
        item = q.popleft()
        self._cond.notify_all()
        return item

    def get(self, timeout: float | None = None) -> Item | EndOfStream | None:
        """The oldest queued item; None after `timeout` s without one; END at the end.

        Raises the producer's error once everything queued before it has been delivered."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                item = self._pop_oldest()
                if item is not None:
                    return item
                if self._error is not None:
                    raise self._error
                if self._open <= 0 or self._closed:
                    return END
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def drained(self) -> set[str]:
        """Kinds with nothing queued."""
        with self._cond:
            return {k for k, q in self._items.items() if not q}

    def __len__(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._items.values())


class Producer(Protocol):
    kinds: tuple[str, ...]

    def start(self, queue: ItemQueue, clock: Clock) -> None: ...

    def stop(self) -> None:
        """Stop capturing and join every thread this producer started."""
        ...


class ThreadProducer:
    """A producer whose capture loop runs on its own thread: subclasses define `capture`.

    `capture(queue, clock, stop)` returns at the end of its data or when `stop` is set; an
    exception it raises ends the source (delivered to the consumer after the queued items)."""

    kinds: tuple[str, ...] = ()
    name = "capture"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def capture(self, queue: ItemQueue, clock: Clock, stop: threading.Event) -> None:
        raise NotImplementedError

    def start(self, queue: ItemQueue, clock: Clock) -> None:
        queue.register()

        def run() -> None:
            try:
                self.capture(queue, clock, self._stop)
            except BaseException as e:
                queue.fail(e)
            finally:
                queue.done()

        self._thread = threading.Thread(target=run, name=f"jca-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


class Source:
    """Producers + one bounded queue, iterated by the pipeline's compute thread."""

    def __init__(self, name: str, producers: list[Producer], live: bool,
                 capacity: dict[str, int] | None = None, realtime: bool | None = None) -> None:
        self.name = name
        self.producers = producers
        self.live = live  # drop the oldest when full (else block the producer)
        self.realtime = live if realtime is None else realtime  # items arrive at clock pace
        self.kinds = tuple(k for k in KINDS if any(k in p.kinds for p in producers))
        self.queue = ItemQueue(drop_oldest=live, capacity=capacity,
                               max_span=LIVE_SPAN_S if live else None)
        self._started = False
        self._closed = False

    @property
    def drops(self) -> dict[str, int]:
        return {k: self.queue.drops.get(k, 0) for k in KINDS}

    def start(self, clock: Clock) -> None:
        self._started = True
        try:
            for p in self.producers:
                p.start(self.queue, clock)
        except BaseException:
            self.close()
            raise

    def get(self, timeout: float | None = None) -> Item | EndOfStream | None:
        return self.queue.get(timeout)

    def __iter__(self) -> Iterator[Item]:
        if not self._started:
            self.start(Clock())
        while True:
            item = self.queue.get(0.1)
            if isinstance(item, EndOfStream):
                return
            if item is not None:
                yield item

    def close(self) -> None:
        """Stop every producer and join its threads (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.queue.close()
        for p in self.producers:
            p.stop()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def backoff_delays(first: float = 0.5, factor: float = 2.0, tries: int = 5) -> list[float]:
    """Reconnect delays: 0.5, 1, 2, 4, 8 s by default."""
    return [first * factor**i for i in range(tries)]


def retry(action: Callable[[], bool], delays: list[float], stop: threading.Event) -> bool:
    """Call `action` after each delay until it returns True; False if all fail or `stop` is set."""
    for d in delays:
        if stop.wait(d):
            return False
        if action():
            return True
    return False
