"""One measured run of the real streaming pipeline: per-record stage latencies, the compute
thread's busy time (real-time factor), drops and counts. Used by benchmarks.latency.

    parts = Parts.load(app_options)                # main.py's runtime, loaded once
    result = measure(parts, RunSpec("main", k=1, fast=False, seconds=10), log="runs/l.jsonl")
    result["stages"]["close_to_label"]["p95"], result["rtf"]

Stages of a record, in ms (the pipeline's `latency_ms`, docs/STREAMING.md "Outputs"):
  capture_to_close  newest item of the segment captured -> segment closed (`segment`)
  visual            VGG19 work left at close (`visual`); `frame` is VGG19 per frame while open
  audio             VGGish on the closed segment (`audio`)
  extraction        visual + audio
  model             the window model call (`model`)
  output            record assembly (`output`)
  wait              close_to_label minus the four above: earlier segments closed by the same item,
                    the window copy, softmax, earlier records' sinks (never negative: every stage
                    runs inside the close -> label interval)
  close_to_label    segment close -> record handed to the sinks (`total`) = extraction + model +
                    output + wait
  capture_to_label  capture_to_close + close_to_label
Real-time factor: the compute thread's busy time (everything but waiting for the next item) per
second of stream; below 1 keeps up.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from model.segments import segment_count
from streamer.app import open_source, resolve_av_offset
from streamer.options import AppOptions
from streamer.pipeline import Pipeline
from streamer.records import REQUIRED, read_jsonl
from streamer.runtime import Runtime, assemble, load_runtime
from streamer.sinks import JsonlLog
from streamer.sources import Source

STAGES = ("capture_to_close", "frame", "visual", "audio", "extraction", "model", "output", "wait",
          "close_to_label", "capture_to_label")
PIPELINE_KEYS = ("segment", "visual", "audio", "model", "output", "total")  # record latency_ms
QUANTILES = (("p50", 50), ("p95", 95), ("p99", 99))
SYNTHETIC_SECONDS = 20.0  # main run of --synthetic without --duration
WARMUP_CALLS = 2


@dataclass(frozen=True)
class RunSpec:
    name: str  # what the run is in its comparison ("K=4", "at close", "compile", ...)
    k: int  # frames per segment
    fast: bool  # else real time
    seconds: float | None  # stream length (None: the whole file)
    incremental: bool = True
    backend: str = "eager"
    lookahead: int = 0


@dataclass
class Parts:
    """main.py's runtime for these options, loaded once and shared by every run of a
    benchmark, with the other window-model backends a comparison asks for (built on demand)."""

    opts: AppOptions
    runtime: Runtime
    setup_s: dict[str, float] = field(default_factory=dict)  # load time of each piece, s
    backends: dict[str, Any] = field(default_factory=dict)  # name -> WindowBackend
    av_offset: float = 0.0  # --av-offset, or the one calibrate.sync saved for the file
    _warm: set[str] = field(default_factory=set)  # backends called once already
    _warm_extractors: bool = False

    def __post_init__(self) -> None:
        self.backends.setdefault(self.opts.backend, self.runtime.backend)

    @classmethod
    def load(cls, opts: AppOptions) -> Parts:
        source = open_source(opts)  # a missing file fails first, before the slow part
        try:
            av_offset = resolve_av_offset(opts, source)
        finally:
            source.close()
        t0 = time.perf_counter()
        rt = load_runtime(opts)
        return cls(opts, rt, {"load_runtime": round(time.perf_counter() - t0, 2)},
                   av_offset=av_offset)

    @property
    def k(self) -> int:
        """Frames per segment main.py would use."""
        return self.runtime.frames_per_segment

    @property
    def device(self) -> str:
        return self.runtime.device

    def backend(self, name: str) -> Any:
        """The window model on backend `name` (built and warmed up on first use)."""
        from model.backends.build import live_backend

        if name not in self.backends:
            t0 = time.perf_counter()
            self.backends[name] = live_backend(name, self.runtime.model.net, self.device)
            self.setup_s[f"backend_{name}"] = round(time.perf_counter() - t0, 2)
        if name not in self._warm:
            cfg = self.runtime.model.net.cfg
            hw = cfg.visual_hw
            a = np.zeros((1, cfg.segments, cfg.audio_dim), np.float32)  # (1, 10, 128)
            v = np.zeros((1, cfg.segments, hw, hw, cfg.visual_dim),
                         np.float32)  # (1, 10, 7, 7, 512)
            for _ in range(WARMUP_CALLS):
                self.backends[name](a, v)
            self._warm.add(name)
        return self.backends[name]

    def warm_up(self, backend: str) -> None:
        """First calls allocate and pick kernels: make them before anything is timed (a live
        stream pays them once, at start)."""
        if not self._warm_extractors:
            for _ in range(WARMUP_CALLS):
                self.runtime.frame_features(np.zeros((1, 224, 224, 3), np.uint8))
                self.runtime.audio_features(np.zeros(16000, np.float32))
            self._warm_extractors = True
        self.backend(backend)

    def source(self, spec: RunSpec) -> Source:
        return open_source(replace(self.opts, fast=spec.fast, duration=self.seconds(spec)))

    def seconds(self, spec: RunSpec) -> float | None:
        if spec.seconds is None and self.opts.source == "synthetic":
            return SYNTHETIC_SECONDS
        return spec.seconds

    def pipeline(self, spec: RunSpec, source: Source, sinks: Sequence[Any],
                 frame_features: Callable | None = None, audio_features: Callable | None = None,
                 backend: Callable | None = None) -> Pipeline:
        """The real Pipeline for one run (the extractors and backend may be swapped, e.g. for
        clients of extractors shared across streams)."""
        rt = replace(self.runtime, backend=backend or self.backend(spec.backend),
                     backend_label=spec.backend,
                     frame_features=frame_features or self.runtime.frame_features,
                     audio_features=audio_features or self.runtime.audio_features)
        return assemble(rt, source, sinks, lookahead=spec.lookahead,
                        av_offset=self.av_offset, duration=self.seconds(spec),
                        frames_per_segment=spec.k, incremental=spec.incremental)


class BusyClock:
    """Wraps a source's `get`: the compute thread's time inside it (waiting for the next item)
    is idle, the rest from its first call to the end of the run is busy."""

    def __init__(self, source: Source) -> None:
        self.idle_s = 0.0
        self.first: float | None = None
        self._get = source.get
        source.get = self.get  # type: ignore[method-assign]

    def get(self, timeout: float | None = None) -> Any:
        t0 = time.perf_counter()
        if self.first is None:
            self.first = t0
        try:
            return self._get(timeout)
        finally:
            self.idle_s += time.perf_counter() - t0

    def busy_s(self, end: float) -> float:
        return 0.0 if self.first is None else max(0.0, end - self.first - self.idle_s)


class Recorder:
    """A sink that keeps every record's segment and latencies."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def on_segment(self, record: dict) -> None:
        self.records.append({"segment": record["segment"], "end": record["end"],
                             "latency_ms": dict(record["latency_ms"])})

    def close(self) -> None:
        pass


def record_stages(latency_ms: dict[str, float]) -> dict[str, float]:
    """A record's pipeline latencies -> the benchmark's stages (module docstring), ms."""
    lat = {k: float(latency_ms[k]) for k in PIPELINE_KEYS}
    extraction = lat["visual"] + lat["audio"]
    wait = lat["total"] - (extraction + lat["model"] + lat["output"])
    return {"capture_to_close": lat["segment"], "visual": lat["visual"], "audio": lat["audio"],
            "extraction": round(extraction, 3), "model": lat["model"], "output": lat["output"],
            "wait": round(wait, 3), "close_to_label": lat["total"],
            "capture_to_label": round(lat["segment"] + lat["total"], 3)}


def distribution(values: Sequence[float]) -> dict[str, float]:
    """n, p50, p95, p99, max, mean of `values` (ms); zeros when empty."""
    if not len(values):
        return {"n": 0, "p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0}
    x = np.asarray(values, np.float64)
    out: dict[str, float] = {"n": len(x)}
    for name, q in QUANTILES:
        out[name] = round(float(np.percentile(x, q)), 3)
    out["max"] = round(float(x.max()), 3)
    out["mean"] = round(float(x.mean()), 3)
    return out


def stage_table(records: Sequence[dict[str, float]], frame_ms: Sequence[float]) -> dict:
    """Distribution of every stage over `records` (record_stages dicts) + VGG19 per frame."""
    out = {s: distribution([r[s] for r in records]) for s in STAGES if s != "frame"}
    out["frame"] = distribution(frame_ms)
    return {s: out[s] for s in STAGES}


def read_log(path: str | Path) -> list[dict]:
    """The whole records of a run's log, in file order (streamer.records.read_jsonl)."""
    return read_jsonl(path, "prediction log", REQUIRED, "rerun the benchmark").records


def expected_segments(parts: Parts, spec: RunSpec, data_end: float) -> int:
    """Segments the stream should give: from the requested length for synthetic streams, from
    the data the segmenter saw (cut at the requested length) for a file."""
    seconds = parts.seconds(spec)
    if parts.opts.source == "synthetic":
        assert seconds is not None
        return segment_count(seconds)
    return segment_count(data_end if seconds is None else min(seconds, data_end))


def load() -> float:
    return round(os.getloadavg()[0], 2)


def summarize(spec: RunSpec, pipe: Pipeline, busy: BusyClock, end: float, records: list[dict],
              log_records: int, expected: int, load_before: float) -> dict[str, Any]:
    """The JSON object of one run (one stream)."""
    s = pipe.summary
    stages = [record_stages(r["latency_ms"]) for r in records]
    busy_s = busy.busy_s(end)
    return {
        "name": spec.name, "k": spec.k, "mode": "fast" if spec.fast else "realtime",
        "incremental": spec.incremental, "backend": spec.backend, "lookahead": spec.lookahead,
        "segments": s.segments, "log_records": log_records, "expected_segments": expected,
        "stream_s": round(s.stream_s, 3), "wall_s": round(s.wall_s, 3),
        "busy_s": round(busy_s, 3),
        "rtf": round(busy_s / s.stream_s, 4) if s.stream_s > 0 else None,
        "drops": dict(s.drops), "late": dict(s.late),
        "error": None if s.error is None else str(s.error),
        "load_avg_1m": [load_before, load()],
        "stages": stage_table(stages, s.frame_ms),
        "records": [{"segment": r["segment"], **st} for r, st in zip(records, stages,
                                                                     strict=True)],
        "frame_ms": [round(x, 3) for x in s.frame_ms],
    }


def measure(parts: Parts, spec: RunSpec, log: str | Path) -> dict[str, Any]:
    """Run one stream through the real pipeline; its JSON object (see `summarize`)."""
    load_before = load()
    source = parts.source(spec)
    rec = Recorder()
    pipe = parts.pipeline(spec, source, [JsonlLog(log), rec])
    busy = BusyClock(source)
    pipe.run()
    end = time.perf_counter()
    if pipe.summary.interrupted:  # Ctrl+C ends the benchmark, not just this run
        raise KeyboardInterrupt
    if pipe.summary.error is not None:
        raise pipe.summary.error
    expected = expected_segments(parts, spec, pipe.segmenter.data_end())
    return summarize(spec, pipe, busy, end, rec.records, len(read_log(log)), expected,
                     load_before)
