"""One measured run of the real streaming pipeline: per-record stage latencies, the compute
thread's busy time (real-time factor), drops and counts. Used by benchmarks.latency.

    parts = Parts.from_app(app_options)            # what main.py builds, built once
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

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamer import app
from streamer.app import AppOptions
from streamer.detector import Backend, Detector, make_backend
from streamer.pipeline import Pipeline, PipelineOptions
from streamer.segmenter import segment_count
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
    """What main.py builds from its flags, shared by every run of a benchmark: the feature
    extractors, the JCA model and its backends (built once each, on demand)."""

    opts: AppOptions
    frame_features: Callable[[np.ndarray], np.ndarray]  # (n, H, W, 3) uint8 -> (n, 7, 7, 512)
    audio_features: Callable[[np.ndarray], np.ndarray]  # (16000,) -> (128,)
    net: Any  # JCANet
    class_names: tuple[str, ...]
    temperature: float
    device: str
    k: int  # frames per segment main.py would use
    av_offset: float
    untrained: bool
    precision: str  # of the extractors
    backends: dict[str, Backend]
    setup_s: dict[str, float]  # build time of each piece, s
    random_features: bool = False  # random extractor weights
    _warm: set[str] = field(default_factory=set)  # backends called once already
    _warm_extractors: bool = False

    @classmethod
    def from_app(cls, opts: AppOptions) -> Parts:
        """streamer.app.build with these flags (no sinks), taken apart."""
        t0 = time.perf_counter()
        pipe = app.build(replace(opts, log=None, events=None, headless=True))
        built = time.perf_counter() - t0
        for s in pipe.sinks:
            s.close()
        pipe.source.close()
        model = app.load_model(opts)  # the same weights, for the other backends
        visual = getattr(pipe.segmenter.frame_features, "__self__", None)
        precision = getattr(getattr(visual, "options", None), "precision", "fp32")
        det = pipe.detector
        return cls(opts=opts, frame_features=pipe.segmenter.frame_features,
                   audio_features=pipe.audio_features, net=model.net,
                   class_names=tuple(det.class_names), temperature=det.temperature,
                   device=det.device, k=pipe.options.frames_per_segment,
                   av_offset=pipe.options.av_offset, untrained=pipe.options.untrained,
                   precision=precision, backends={opts.backend: det.backend},
                   setup_s={"app_build": round(built, 2)},
                   random_features=pipe.options.random_features)

    def backend(self, name: str) -> Backend:
        """The window model on backend `name` (built and warmed up on first use)."""
        if name not in self.backends:
            t0 = time.perf_counter()
            self.backends[name] = make_backend(name, self.net, self.device)
            self.setup_s[f"backend_{name}"] = round(time.perf_counter() - t0, 2)
        if name not in self._warm:
            cfg = self.net.cfg
            hw = cfg.visual_hw
            a = torch.zeros(1, cfg.segments, cfg.audio_dim, device=self.device)  # (1, 10, 128)
            v = torch.zeros(1, cfg.segments, hw, hw, cfg.visual_dim,
                            device=self.device)  # (1, 10, 7, 7, 512)
            for _ in range(WARMUP_CALLS):
                self.backends[name](a, v)
            self._warm.add(name)
        return self.backends[name]

    def warm_up(self, backend: str) -> None:
        """First calls allocate and pick kernels: make them before anything is timed (a live
        stream pays them once, at start)."""
        if not self._warm_extractors:
            for _ in range(WARMUP_CALLS):
                self.frame_features(np.zeros((1, 224, 224, 3), np.uint8))
                self.audio_features(np.zeros(16000, np.float32))
            self._warm_extractors = True
        self.backend(backend)

    def backend_precision(self, name: str) -> str:
        return str(getattr(self.backends.get(name), "precision", "fp32"))

    def source(self, spec: RunSpec) -> Source:
        return app.open_source(replace(self.opts, fast=spec.fast,
                                       duration=self.seconds(spec)))

    def seconds(self, spec: RunSpec) -> float | None:
        if spec.seconds is None and self.opts.source == "synthetic":
            return SYNTHETIC_SECONDS
        return spec.seconds

    def pipeline(self, spec: RunSpec, source: Source, sinks: Sequence[Any],
                 frame_features: Callable | None = None, audio_features: Callable | None = None,
                 backend: Backend | None = None) -> Pipeline:
        """The real Pipeline for one run (the extractors and backend may be swapped, e.g. for
        clients of extractors shared across streams)."""
        det = Detector(backend or self.backend(spec.backend), self.class_names,
                       lookahead=spec.lookahead, temperature=self.temperature, device=self.device)
        options = PipelineOptions(frames_per_segment=spec.k, av_offset=self.av_offset,
                                  duration=self.seconds(spec), untrained=self.untrained,
                                  random_features=self.random_features,
                                  incremental=spec.incremental)
        info = {"device": self.device, "backend": spec.backend, "frames_per_segment": spec.k}
        return Pipeline(source, frame_features or self.frame_features,
                        audio_features or self.audio_features, det, sinks=sinks,
                        options=options, info=info)


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
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


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
