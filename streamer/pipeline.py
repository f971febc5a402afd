"""The streaming pipeline: capture -> segmenter -> extractors -> window -> detector -> sinks.

    visual, audio, recipe = build_extractors(random_weights=True, frames_per_segment=2)
    pipe = Pipeline(source, visual.frame_features, audio, detector,
                    sinks=[JsonlLog("runs/predictions.jsonl")],
                    options=PipelineOptions(frames_per_segment=2))
    summary = pipe.run()          # blocks until end of stream, --duration, stop() or Ctrl+C
    print(summary.line())

(streamer.runtime.assemble builds one from a loaded runtime and a source.)

Threads: the source's capture threads (or PortAudio's callback) only capture; one compute thread
segments, extracts, runs the model and calls the sinks, in segment order. It takes every waiting
item first (so a segment closes, and is labelled, as soon as its data is complete) and runs
VGG19 on the selected frames when no item waits; on a live source a selected frame more than
SHED_LAG_S behind the newest data is shed (model.segments: the segment averages fewer distinct
frames, counted in `frames_shed`) rather than letting the queues overflow. The calling thread
waits (so Ctrl+C lands there; once a minute it hands the C allocator's free pages back,
streamer.allocator), then joins everything and closes the sinks. However the stream
ends (end of file, --duration, Ctrl+C, a source fault), the closed segments are flushed through
the detector and every sink before `run` returns; a fault comes back as `summary.error`.

Non-finite numbers never reach a record: a segment whose features are not finite enters the
window with those values as 0 (so the next nine windows are not poisoned), a label whose
probabilities are not finite is background (streamer.detector); either way the record says
`nonfinite: true` and the summary counts it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from model.provenance import Provenance
from model.segments import ClosedSegment, rms_db
from streamer.allocator import RELEASE
from streamer.clock import Clock
from streamer.detector import Detector, Prediction
from streamer.segmenter import LiveSegmenter
from streamer.sinks import Sink
from streamer.sources import AUDIO, KINDS, VIDEO, Audio, EndOfStream, Frame, Source

STAGES = ("segment", "visual", "audio", "model", "output", "total")
POLL_S = 0.05  # how often the compute thread checks for stop / live deadlines when idle
SHED_LAG_S = 0.5  # live: VGG19 skips a selected frame this many seconds behind the newest data


@dataclass(frozen=True)
class PipelineOptions:
    frames_per_segment: int = 2
    av_offset: float = 0.0  # seconds the audio lags the picture
    duration: float | None = None  # stream seconds, then stop
    grace: float = 0.5  # live: close a segment this long after its end whatever has arrived
    provenance: Provenance = Provenance.TRAINED  # every record says so (its two fields)
    incremental: bool = True  # VGG19 on selected frames while idle (False: all at close)


def finite(x: np.ndarray) -> np.ndarray:
    """x with its NaN and infinite values as 0."""
    return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else 0.0


@dataclass
class Summary:
    segments: int = 0
    drops: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    late: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    stage_ms: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    frame_ms: list[float] = field(default_factory=list)  # VGG19 per computed frame
    sink_ms: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    stream_s: float = 0.0  # end of the last segment
    interrupted: bool = False  # by Ctrl+C
    stopped_by: str | None = None  # what asked the stream to stop: "SIGTERM", "stdout closed"
    nonfinite: int = 0  # segments flagged `nonfinite` (features or probabilities)
    shed: int = 0  # frame targets given to an earlier frame because VGG19 was behind
    provenance: Provenance = Provenance.TRAINED
    error: BaseException | None = None

    def p(self, stage: str, q: float) -> float:
        return percentile(self.stage_ms[stage], q)

    def line(self) -> str:
        drops = ", ".join(f"{k} {v}" for k, v in self.drops.items())
        text = (f"{self.segments} segments ({self.stream_s:.1f} s of stream in {self.wall_s:.1f} s)"
                f", drops: {drops}, latency p50 {self.p('total', 50):.0f} ms"
                f" / p95 {self.p('total', 95):.0f} ms")
        if self.shed:
            text += f", {self.shed} frames shed (VGG19 behind)"
        if self.nonfinite:
            text += f", {self.nonfinite} non-finite segments"
        if self.provenance.tag:
            text += f"  [{self.provenance.tag}: {self.provenance.reason}]"
        return text

    def to_dict(self) -> dict[str, object]:
        return {
            "segments": self.segments, "drops": self.drops, "late": self.late,
            "wall_s": round(self.wall_s, 3), "stream_s": self.stream_s,
            "latency_ms": {s: {"p50": round(self.p(s, 50), 2), "p95": round(self.p(s, 95), 2)}
                           for s in STAGES},
            "frame_ms_p50": round(percentile(self.frame_ms, 50), 2),
            "sink_ms_p50": round(percentile(self.sink_ms, 50), 3),
            "interrupted": self.interrupted, "stopped_by": self.stopped_by,
            "nonfinite": self.nonfinite, "frames_shed": self.shed,
            **self.provenance.fields(),
            "error": None if self.error is None else str(self.error),
        }


class Tap(Protocol):
    def add(self, item: Frame | Audio) -> None: ...


class Pipeline:
    def __init__(self, source: Source, frame_features: Callable[[np.ndarray], np.ndarray],
                 audio_features: Callable[[np.ndarray], np.ndarray], detector: Detector,
                 sinks: Sequence[Sink] = (), options: PipelineOptions | None = None,
                 info: dict[str, object] | None = None, taps: Sequence[Tap] = ()) -> None:
        """frame_features: (n, H, W, 3) uint8 -> (n, 7, 7, 512); audio_features: one segment
        (16000,) float32 at 16 kHz -> (128,); info: static status fields (device, backend...);
        taps: see every captured item, on the compute thread, in arrival order (the overlay
        writer; a tap that is also a sink is closed as one)."""
        self.source, self.detector = source, detector
        self.audio_features = audio_features
        self.sinks = list(sinks)
        self.taps = list(taps)
        self.options = options or PipelineOptions()
        self.segmenter = LiveSegmenter(frame_features, self.options.frames_per_segment,
                                       kinds=source.kinds, av_offset=self.options.av_offset,
                                       grace=self.options.grace,
                                       max_lag=SHED_LAG_S if source.realtime else None)
        self.clock = Clock()
        self.summary = Summary(provenance=self.options.provenance)
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._segments: dict[int, ClosedSegment] = {}  # closed, waiting for their label
        self._nonfinite: set[int] = set()  # of those, the ones with non-finite features
        self._trigger: tuple[ClosedSegment, float] | None = None  # newest closed + its audio ms
        self._frame_times: deque[float] = deque(maxlen=64)
        self._status: dict[str, object] = {
            "source": source.name, "device": "cpu", "backend": "eager", "checkpoint": None,
            **(info or {}),
            **self.options.provenance.fields(),
            "frames_per_segment": self.options.frames_per_segment,
            "lookahead": detector.lookahead, "audio_level_db": -120.0, "video_fps": 0.0,
            "segments": 0,
        }

    # ------------------------------------------------------------------ control
    def run(self) -> Summary:
        """Run to the end of the stream; Ctrl+C ends it cleanly (summary.interrupted)."""
        t0 = time.monotonic()
        self.clock = Clock()
        try:
            self.source.start(self.clock)  # a device that fails to open raises here
        except BaseException:
            self._close_sinks()
            raise
        self._thread = threading.Thread(target=self._compute, name="jca-compute", daemon=True)
        self._thread.start()
        try:
            self._wait()
        finally:
            self.summary.wall_s = time.monotonic() - t0
            self.summary.drops = self.source.drops
            self.summary.late = dict(self.segmenter.late)
            self.summary.frame_ms = list(self.segmenter.visual_frame_ms)
            self._close_sinks()
        return self.summary

    def _wait(self) -> None:
        # waits on an Event, not Thread.join: a join interrupted by Ctrl+C can leave the
        # thread looking finished while it still runs
        assert self._thread is not None
        while not self._done.is_set():
            try:
                self._done.wait(0.1)
                RELEASE.maybe()  # a stream that runs for days stays flat (streamer.allocator)
            except KeyboardInterrupt:  # Ctrl+C: end the stream, flush, then return
                self.summary.interrupted = True
                self._stop.set()
        self._thread.join()

    def stop(self, reason: str | None = None) -> None:
        """End the stream from another thread or a signal handler (flushes like an end of
        file); `reason` (the first one given) goes to `summary.stopped_by`."""
        if reason is not None and self.summary.stopped_by is None:
            self.summary.stopped_by = reason
        self._stop.set()

    def status(self) -> dict[str, object]:
        """A snapshot for the dashboard (thread-safe)."""
        with self._lock:
            snap = dict(self._status)
        snap["drops"] = self.source.drops
        snap["elapsed"] = round(self.clock.now(), 3)
        return snap

    def _close_sinks(self) -> None:
        errors = []
        for s in self.sinks:
            try:
                s.close()
            except Exception as e:  # close them all, report the first failure
                errors.append(e)
        if errors and self.summary.error is None:
            self.summary.error = errors[0]

    # ------------------------------------------------------------------ compute thread
    def _compute(self) -> None:
        opts, src = self.options, self.source
        past_end: set[str] = set()
        try:
            while not self._stop.is_set():
                idle_work = opts.incremental and self.segmenter.pending
                item = src.get(0.0 if idle_work else POLL_S)
                if isinstance(item, EndOfStream):
                    break
                if item is not None and opts.duration is not None and item.t >= opts.duration:
                    past_end.add(item.kind)
                    if past_end >= set(src.kinds):
                        break
                elif item is not None:
                    self._observe(item)
                    self._handle(self.segmenter.push(item))
                elif idle_work:
                    self.segmenter.compute_next()
                if src.realtime:  # live deadlines: a stalled kind does not hold segments back
                    now = self.clock.now()
                    self._handle(self.segmenter.tick(time.monotonic(), now, src.queue.drained()))
                    if opts.duration is not None and now >= opts.duration + opts.grace:
                        break
        except BaseException as e:
            self.summary.error = e
        finally:
            try:
                src.close()
                self._handle(self.segmenter.finish(opts.duration))
                for p in self.detector.flush():
                    self._emit(p)
            except BaseException as e:
                if self.summary.error is None:
                    self.summary.error = e
            finally:
                self._done.set()

    def _observe(self, item: Frame | Audio) -> None:
        for tap in self.taps:
            tap.add(item)
        with self._lock:
            if item.kind == VIDEO:
                self._frame_times.append(item.t)
                ts = self._frame_times
                if len(ts) > 1 and ts[-1] > ts[0]:
                    self._status["video_fps"] = round((len(ts) - 1) / (ts[-1] - ts[0]), 2)
            elif item.kind == AUDIO:
                self._status["audio_level_db"] = round(rms_db(item.samples), 1)

    def _handle(self, closed: list[ClosedSegment]) -> None:
        for seg in closed:
            t0 = time.perf_counter()
            audio = np.asarray(self.audio_features(seg.audio), np.float32)  # (128,)
            audio_ms = (time.perf_counter() - t0) * 1000
            visual = seg.visual  # (7, 7, 512)
            if not (np.isfinite(audio).all() and np.isfinite(visual).all()):
                self._nonfinite.add(seg.index)
                audio, visual = finite(audio), finite(visual)
            self._segments[seg.index] = seg
            self._trigger = (seg, audio_ms)
            for p in self.detector.push(audio, visual):
                self._emit(p)

    def _emit(self, p: Prediction) -> None:
        assert self._trigger is not None
        t_out = time.perf_counter()
        seg = self._segments.pop(p.segment)
        nonfinite = p.nonfinite or seg.index in self._nonfinite
        self._nonfinite.discard(seg.index)
        trigger, audio_ms = self._trigger
        record: dict[str, object] = {
            "segment": seg.index, "start": seg.start, "end": seg.end,
            "label": p.label, "class_id": p.class_id, "confidence": p.confidence,
            "probs": [float(x) for x in p.probs], "lookahead": p.lookahead,
            "warmup": p.warmup, "latency_ms": {},
            "missing": list(seg.missing), "partial": seg.partial, "nonfinite": nonfinite,
            **self.options.provenance.fields(),
            "audio_rms_db": round(seg.audio_rms_db, 1),
            "video_fps": self._status["video_fps"], "drops": self.source.drops,
            "frames": seg.frames, "frames_per_segment": self.options.frames_per_segment,
            "frames_shed": seg.shed,
        }
        if p.attention is not None:
            record["attention"] = p.attention.tolist()
        output_ms = (time.perf_counter() - t_out) * 1000
        latency = {
            "segment": max(0.0, trigger.closed_at - trigger.last_capture) * 1000,
            "visual": trigger.visual_ms, "audio": audio_ms, "model": p.model_ms,
            "output": output_ms, "total": (time.monotonic() - trigger.closed_at) * 1000,
        }
        record["latency_ms"] = {k: round(v, 3) for k, v in latency.items()}
        for k, v in latency.items():
            self.summary.stage_ms[k].append(v)
        t_sink = time.perf_counter()
        for s in self.sinks:
            s.on_segment(record)
        self.summary.sink_ms.append((time.perf_counter() - t_sink) * 1000)
        self.summary.segments += 1
        self.summary.nonfinite += nonfinite
        self.summary.shed += seg.shed
        self.summary.stream_s = seg.end
        with self._lock:
            self._status["segments"] = self.summary.segments
