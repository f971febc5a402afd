"""Many streams on one device: N real pipelines whose extractors and window model are shared
workers batching the requests of all streams. Used by benchmarks.latency (--streams).

    result = run_streams(parts, RunSpec("N=4", k=1, fast=False, seconds=8), n=4, log_dir=tmp)
    result["rtf"], result["kept_up"], result["workers"]["vgg19"]["mean_batch"]

Each stream is a whole Pipeline (its own source, segmenter, window, detector and compute
thread); its VGG19, VGGish and model calls go to a `Batcher`, one thread per network that takes
every request queued when it gets free and runs them as one batch (no waiting for a fuller
batch: an idle worker serves a lone request at once). The streams are replays of the same
source, so their frames share one size.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.latency_run import (
    BusyClock,
    Parts,
    Recorder,
    RunSpec,
    distribution,
    expected_segments,
    load,
    read_log,
    record_stages,
    stage_table,
)
from streamer.sinks import JsonlLog

Array = np.ndarray | torch.Tensor


def _cat(xs: Sequence[Array]) -> Array:
    return torch.cat(list(xs)) if isinstance(xs[0], torch.Tensor) else np.concatenate(xs)


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
            try:
                args = [_cat([r.args[i] for r in batch]) for i in range(len(batch[0].args))]
                pieces = _split(self.fn(*args), [r.n for r in batch])
                for r, p in zip(batch, pieces, strict=True):
                    r.result = p
            except BaseException as e:
                for r in batch:
                    r.error = e
            self.busy_s += time.perf_counter() - t0
            self.batches.append(sum(r.n for r in batch))
            for r in batch:
                r.done.set()

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


def run_streams(parts: Parts, spec: RunSpec, n: int, log_dir: str | Path) -> dict[str, Any]:
    """N concurrent pipelines on shared batched workers; the JSON object of the run."""
    workers = {"vgg19": Batcher(parts.runtime.frame_features, "vgg19"),
               "vggish": Batcher(batched_audio(parts.runtime.audio_features), "vggish"),
               "model": Batcher(parts.backend(spec.backend), "model")}
    vgg19, vggish, model = workers["vgg19"], workers["vggish"], workers["model"]

    def audio_client(samples: np.ndarray) -> np.ndarray:
        return vggish(np.asarray(samples, np.float32)[None])[0]  # (128,)

    load_before = load()
    runs = []
    try:
        for i in range(n):
            source = parts.source(spec)
            rec = Recorder()
            log = Path(log_dir) / f"stream{i}.jsonl"
            pipe = parts.pipeline(spec, source, [JsonlLog(log), rec], frame_features=vgg19,
                                  audio_features=audio_client, backend=model)
            runs.append((pipe, BusyClock(source), rec, log))
        ends: dict[int, float] = {}
        errors: list[BaseException] = []

        def go(i: int) -> None:
            try:
                runs[i][0].run()
            except BaseException as e:
                errors.append(e)
            finally:
                ends[i] = time.perf_counter()

        t0 = time.perf_counter()
        threads = [threading.Thread(target=go, args=(i,), name=f"stream{i}") for i in range(n)]
        for t in threads:
            t.start()
        try:
            for t in threads:
                t.join()
        except KeyboardInterrupt:  # end every stream (each flushes), then stop
            for pipe, *_ in runs:
                pipe.stop()
            for t in threads:
                t.join()
            raise
        wall = time.perf_counter() - t0
        if errors:
            raise errors[0]
    finally:
        for w in workers.values():
            w.close()
    return summarize_streams(parts, spec, runs, ends, workers, wall, load_before)


def summarize_streams(parts: Parts, spec: RunSpec, runs: list, ends: dict[int, float],
                      workers: dict[str, Batcher], wall: float,
                      load_before: float) -> dict[str, Any]:
    per_stream, records, frame_ms = [], [], []
    for i, (pipe, busy, rec, log) in enumerate(runs):
        s = pipe.summary
        if s.error is not None:
            raise s.error
        busy_s = busy.busy_s(ends[i])
        per_stream.append({
            "segments": s.segments, "log_records": len(read_log(log)),
            "expected_segments": expected_segments(parts, spec, pipe.segmenter.data_end()),
            "stream_s": round(s.stream_s, 3), "busy_s": round(busy_s, 3),
            "rtf": round(busy_s / s.stream_s, 4) if s.stream_s > 0 else None,
            "drops": dict(s.drops), "late": dict(s.late)})
        records += [{"stream": i, "segment": r["segment"], **record_stages(r["latency_ms"])}
                    for r in rec.records]
        frame_ms += s.frame_ms
    rtfs = [p["rtf"] for p in per_stream if p["rtf"] is not None]
    drops = sum(sum(p["drops"].values()) for p in per_stream)
    rtf = max(rtfs) if rtfs else None
    return {
        "name": spec.name, "streams": len(runs), "k": spec.k,
        "mode": "fast" if spec.fast else "realtime", "backend": spec.backend,
        "wall_s": round(wall, 3), "rtf": rtf, "rtf_distribution": distribution(rtfs),
        "drops": drops,
        "kept_up": bool(rtf is not None and rtf < 1 and drops == 0),
        "segments": sum(p["segments"] for p in per_stream),
        "log_records": sum(p["log_records"] for p in per_stream),
        "expected_segments": sum(p["expected_segments"] for p in per_stream),
        "load_avg_1m": [load_before, load()],
        "stages": stage_table(records, frame_ms),
        "workers": {name: w.stats(wall) for name, w in workers.items()},
        "per_stream": per_stream,
        "records": records,
        "frame_ms": [round(x, 3) for x in frame_ms],
    }
