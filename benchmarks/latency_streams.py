"""Many streams on one device: N real pipelines whose extractors and window model are shared
workers batching the requests of all streams. Used by benchmarks.latency (--streams).

    result = run_streams(parts, RunSpec("N=4", k=1, fast=False, seconds=8), n=4, log_dir=tmp)
    result["rtf"], result["kept_up"], result["workers"]["vgg19"]["mean_batch"]

Each stream is a whole Pipeline (its own source, segmenter, window, detector and compute
thread); its VGG19, VGGish and model calls go to the product's shared workers
(`streamer.batching`: one thread per network that takes every request queued when it gets free
and runs them as one batch), as main.py does with several sources.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

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
from streamer.batching import Batcher, Workers
from streamer.sinks import JsonlLog


def run_streams(parts: Parts, spec: RunSpec, n: int, log_dir: str | Path) -> dict[str, Any]:
    """N concurrent pipelines on shared batched workers; the JSON object of the run."""
    shared = Workers.start(replace(parts.runtime, backend=parts.backend(spec.backend)))
    workers = shared.all()
    load_before = load()
    runs = []
    try:
        for i in range(n):
            source = parts.source(spec)
            rec = Recorder()
            log = Path(log_dir) / f"stream{i}.jsonl"
            pipe = parts.pipeline(spec, source, [JsonlLog(log), rec],
                                  frame_features=shared.vgg19,
                                  audio_features=shared.audio_features, backend=shared.model)
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
        shared.close()
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
