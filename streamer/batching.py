"""Shared workers for many streams in one process: each network (VGG19, VGGish, the window
model) runs on one thread that takes every request queued when it gets free and runs them as one
batch (no waiting for a fuller batch: an idle worker serves a lone request at once).

    workers = Workers.start(rt)          # rt: a streamer.runtime.Runtime
    shared = workers.runtime(rt)         # the same Runtime whose calls go to the workers
    pipes = [assemble(shared, s, sinks) for s in sources]
    ...
    workers.close()

Requests of different shapes (streams of different frame sizes) are run as one call per shape.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from streamer.runtime import Runtime

Array = Any  # numpy arrays or torch tensors, batch first


def _cat(xs: Sequence[Any]) -> Any:
    if isinstance(xs[0], np.ndarray):
        return np.concatenate(xs)
    import torch

    return torch.cat(list(xs))


def _split(out: Any, sizes: Sequence[int]) -> list[Any]:
    """Batch-first output(s) of one call -> one piece per request (tuples kept as tuples)."""
    if out is None:
        return [None] * len(sizes)
    if isinstance(out, tuple | list):
        return [tuple(p) for p in zip(*(_split(o, sizes) for o in out), strict=True)]
    bounds = np.cumsum([0, *sizes])
    return [out[a:b] for a, b in itertools.pairwise(bounds)]


@dataclass
class _Request:
    args: tuple[Array, ...]
    n: int
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


def by_shape(batch: list[_Request]) -> list[list[_Request]]:
    """Requests whose arrays concatenate (the same shape past the batch axis), in order."""
    groups: dict[tuple, list[_Request]] = {}
    for r in batch:
        groups.setdefault(tuple(tuple(a.shape[1:]) for a in r.args), []).append(r)
    return list(groups.values())


class Batcher:
    """`fn(*batched arrays) -> batched output(s)` served to many threads: callers block while
    the worker runs their request inside a batch of everything queued (at most `max_batch`
    items); arrays are concatenated on axis 0 and the outputs split back."""

    def __init__(self, fn: Callable[..., Any], name: str, max_batch: int = 256) -> None:
        self.fn, self.name, self.max_batch = fn, name, max_batch
        self._queue: deque[_Request] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.batches: list[int] = []  # items per call
        self.busy_s = 0.0
        self._thread = threading.Thread(target=self._loop, name=f"batch-{name}", daemon=True)
        self._thread.start()

    def __call__(self, *args: Array) -> Any:
        req = _Request(args, len(args[0]))
        with self._cond:
            if self._closed:
                raise RuntimeError(f"batcher {self.name} is closed")
            self._queue.append(req)
            self._cond.notify()
        req.done.wait()
        if req.error is not None:
            raise req.error
        return req.result

    def _take(self) -> list[_Request] | None:
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if not self._queue:
                return None
            batch, n = [], 0
            while self._queue and (not batch or n + self._queue[0].n <= self.max_batch):
                req = self._queue.popleft()
                batch.append(req)
                n += req.n
            return batch

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            t0 = time.perf_counter()
            for group in by_shape(batch):
                self._run(group)
            self.busy_s += time.perf_counter() - t0
            self.batches.append(sum(r.n for r in batch))
            for r in batch:
                r.done.set()

    def _run(self, batch: list[_Request]) -> None:
        try:
            args = [_cat([r.args[i] for r in batch]) for i in range(len(batch[0].args))]
            pieces = _split(self.fn(*args), [r.n for r in batch])
            for r, p in zip(batch, pieces, strict=True):
                r.result = p
        except BaseException as e:
            for r in batch:
                r.error = e

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()

    def stats(self, wall_s: float) -> dict[str, Any]:
        b = self.batches
        return {"calls": len(b), "items": int(sum(b)),
                "mean_batch": round(float(np.mean(b)), 2) if b else 0.0,
                "max_batch": max(b, default=0), "busy_s": round(self.busy_s, 3),
                "utilization": round(self.busy_s / wall_s, 3) if wall_s > 0 else 0.0}


def batched_audio(audio_features: Callable[[np.ndarray], np.ndarray]
                  ) -> Callable[[np.ndarray], np.ndarray]:
    """(N, 16000) -> (N, 128): the extractor's own batched `segments` when it has one."""
    segments = getattr(audio_features, "segments", None)
    if segments is not None:
        return lambda x: np.asarray(segments(x), np.float32)
    return lambda x: np.stack([audio_features(s) for s in x]).astype(np.float32)


@dataclass
class Workers:
    """One Batcher per network of a runtime, shared by every stream assembled on `runtime`."""

    vgg19: Batcher
    vggish: Batcher
    model: Batcher

    @classmethod
    def start(cls, rt: Runtime) -> Workers:
        return cls(Batcher(rt.frame_features, "vgg19"),
                   Batcher(batched_audio(rt.audio_features), "vggish"),
                   Batcher(rt.backend, "model"))

    def audio_features(self, samples: np.ndarray) -> np.ndarray:
        """One segment (16000,) -> (128,), through the shared VGGish worker."""
        return self.vggish(np.asarray(samples, np.float32)[None])[0]

    def runtime(self, rt: Runtime) -> Runtime:
        """`rt` with its three networks served by these workers."""
        return replace(rt, frame_features=self.vgg19, audio_features=self.audio_features,
                       backend=self.model)

    def all(self) -> dict[str, Batcher]:
        return {"vgg19": self.vgg19, "vggish": self.vggish, "model": self.model}

    def close(self) -> None:
        for w in self.all().values():
            w.close()
