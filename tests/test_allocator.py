"""The allocator release (streamer.allocator): due once every `every_s` of the clock it is given,
shared by every stream's waiting thread, and nothing where the C library has no malloc_trim."""

from __future__ import annotations

import platform
import sys
import threading

import pytest

from streamer.allocator import Release, malloc_trim


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_release_is_due_once_every_interval():
    clock, calls = Clock(), []
    r = Release(lambda: calls.append(clock.t), every_s=60.0, clock=clock)
    assert not r.maybe()  # not at start: the interval runs from the moment it is made
    clock.t += 59.9
    assert not r.maybe()
    clock.t += 0.1
    assert r.maybe() and not r.maybe()  # once, then the next interval
    clock.t += 200.0  # a long wait is one release, not one per interval missed
    assert r.maybe() and not r.maybe()
    assert calls == [160.0, 360.0] and r.count == 2


def test_many_waiting_threads_share_one_release():
    clock, calls = Clock(), []
    r = Release(lambda: calls.append(1), every_s=60.0, clock=clock)
    clock.t += 60.0
    start = threading.Barrier(8)
    results: list[bool] = []

    def wait() -> None:
        start.wait()
        results.append(r.maybe())

    threads = [threading.Thread(target=wait) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True] and calls == [1]


def test_without_malloc_trim_nothing_is_released():
    r = Release(None, every_s=0.0)
    assert not r.maybe() and r.count == 0


@pytest.mark.skipif(sys.platform != "linux" or platform.libc_ver()[0] != "glibc",
                    reason="malloc_trim is glibc's")
def test_glibc_has_malloc_trim():
    trim = malloc_trim()
    assert trim is not None
    assert trim() in (0, 1)  # 1: memory was given back, 0: there was none to give
