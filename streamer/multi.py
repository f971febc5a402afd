"""Many streams in one process: every --camera, --replay and --stream is its own stream (its
clock, segmenter, window and detector), all labelled by ONE runtime whose networks are shared
workers batching the requests of every stream (streamer.batching).

    summaries = run_many(parse_args(["--stream", URL, "--replay", "a.mp4", "--random-weights"]))

Outputs (the log contract for N > 1, docs/STREAMING.md): one prediction log and one event file
for all streams; every record and interval gains `stream` (0-based, command-line order) and
`source` (what was opened); each stream's records are in segment order. A stream that ends or
fails does not stop the others: the run ends when every stream has ended (or on Ctrl+C,
SIGTERM / SIGHUP, --duration), with one summary line per stream; then a failed stream's fault
is raised (one line, naming the stream), else the fault of an output that could not be written
(a full disk: streamer.sinks).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from model.errors import UserError
from model.provenance import Provenance
from streamer.app import STDOUT_CLOSED, ending, open_source, resolve_av_offset
from streamer.batching import Workers
from streamer.intervals import IntervalTracker
from streamer.options import AppOptions
from streamer.pipeline import Pipeline, Summary
from streamer.records import log_line
from streamer.runtime import Runtime, assemble, load_runtime, say
from streamer.signals import StopSignals
from streamer.sinks import LineFile, OutputFault, Sink, fault_line, output_faults
from streamer.sources import Source

WAIT_S = 0.1  # how often the main thread looks for Ctrl+C while the streams run


def stream_options(opts: AppOptions, kind: str, target: str) -> AppOptions:
    """The options of one of several sources: the run's options with that one source."""
    return replace(opts, source=kind, sources=(), camera=target if kind == "camera" else None,
                   replay=target if kind == "replay" else None,
                   stream=target if kind == "stream" else None)


def open_sources(opts: AppOptions) -> list[tuple[AppOptions, Source]]:
    """Every source, opened in order (a missing one fails before anything loads)."""
    opened: list[tuple[AppOptions, Source]] = []
    try:
        for kind, target in opts.sources:
            one = stream_options(opts, kind, target)
            opened.append((one, open_source(one)))
    except BaseException:
        for _, source in opened:
            source.close()
        raise
    return opened


class Tagged:
    """A stream's view of a shared sink: its records gain `stream` and `source`; closing it
    leaves the shared sink open (the runner closes that once every stream has ended)."""

    def __init__(self, inner: Sink, tags: Mapping[str, Any]) -> None:
        self.inner, self.tags = inner, dict(tags)

    def on_segment(self, record: dict) -> None:
        self.inner.on_segment({**record, **self.tags})

    def close(self) -> None:
        pass


class LogWriter:
    """The one prediction log (streamer.records.log_line per record)."""

    def __init__(self, path: str) -> None:
        self.file = LineFile(path, "pass another --log")

    @property
    def fault(self) -> OutputFault | None:
        return self.file.fault

    def on_segment(self, record: dict) -> None:
        self.file.write(log_line(record))

    def close(self) -> None:
        self.file.close()


class StreamEvents:
    """One stream's event intervals, written to the shared event file with its `stream`."""

    def __init__(self, file: LineFile, tags: Mapping[str, Any], opts: AppOptions,
                 background: str, threshold: float, provenance: Provenance,
                 listeners: Sequence[Any] = ()) -> None:
        self.file, self.listeners = file, list(listeners)
        self.tags = {**tags, **{k: True for k, v in provenance.fields().items() if v}}
        self.tracker = IntervalTracker(opts.min_event, opts.min_gap, background, threshold)

    def _write(self, intervals: list) -> None:
        for iv in intervals:
            d = {**iv.to_dict(), **self.tags}
            self.file.write(log_line(d))
            for listen in self.listeners:
                listen(d)

    def on_segment(self, record: dict) -> None:
        self._write(self.tracker.push(record["label"], record["start"], record["end"],
                                      record["confidence"]))

    def close(self) -> None:
        self._write(self.tracker.flush())


class Outputs:
    """The shared log, event file and console of a run of several streams."""

    def __init__(self, opts: AppOptions, rt: Runtime, names: Sequence[str],
                 on_reader_gone: Callable[[], None] | None = None) -> None:
        """on_reader_gone: called once if stdout's reader goes away (`... | head`)."""
        from streamer.multi_console import make_multi_console

        self.opts, self.rt = opts, rt
        self.log = LogWriter(opts.log) if opts.log else None
        self.events = LineFile(opts.events, "pass another --events") if opts.events else None
        self.console = make_multi_console(opts.headless, names, rt.model.class_names,
                                          on_reader_gone=on_reader_gone)

    def sinks(self, i: int, name: str) -> list[Sink]:
        """Stream i's sinks, in the order a segment reaches them: log, events, console."""
        tags = {"stream": i, "source": name}
        out: list[Sink] = []
        if self.log is not None:
            out.append(Tagged(self.log, tags))
        if self.events is not None:
            names = self.rt.model.class_names
            listeners = [self.console.on_event] if hasattr(self.console, "on_event") else []
            out.append(StreamEvents(self.events, tags, self.opts, names[-1],
                                    self.rt.model.threshold, self.rt.provenance, listeners))
        out.append(Tagged(self.console, tags))
        return out

    def close(self) -> None:
        for f in (self.log, self.events, self.console):
            if f is not None:
                f.close()

    def faults(self) -> list[OutputFault]:
        """The outputs that could not be written (streamer.sinks.output_faults)."""
        return output_faults((self.log, self.events, self.console))


def run_all(pipes: Sequence[Pipeline]) -> list[Summary]:
    """Run every pipeline on its own thread until all have ended; Ctrl+C ends them all (each
    flushes its segments)."""
    errors: dict[int, BaseException] = {}
    done = [threading.Event() for _ in pipes]

    def go(i: int) -> None:
        try:
            pipes[i].run()
        except BaseException as e:  # a source that failed to start
            errors[i] = e
        finally:
            done[i].set()

    threads = [threading.Thread(target=go, args=(i,), name=f"jca-stream{i}", daemon=True)
               for i in range(len(pipes))]
    for t in threads:
        t.start()
    interrupted = False
    while not all(d.is_set() for d in done):
        try:
            done[[d.is_set() for d in done].index(False)].wait(WAIT_S)
        except KeyboardInterrupt:
            interrupted = True
            for p in pipes:
                p.stop()
    for t in threads:
        t.join()
    for i, p in enumerate(pipes):
        p.summary.interrupted = p.summary.interrupted or interrupted
        if i in errors and p.summary.error is None:
            p.summary.error = errors[i]
    return [p.summary for p in pipes]


def stream_fault(i: int, name: str, error: BaseException) -> BaseException:
    """A stream's fault, naming the stream (a UserError stays one line)."""
    if isinstance(error, UserError):
        return UserError(f"stream {i} ({name}): {error}")
    return error


def run_many(opts: AppOptions, runtime: Runtime | None = None,
             signals: StopSignals | None = None) -> list[Summary]:
    """Open every source, load the runtime once (or use `runtime`), run all streams; print one
    summary per stream on stderr; raise the first failed stream's fault after every stream has
    ended. `signals`: SIGTERM / SIGHUP stop every stream (streamer.signals)."""
    opened = open_sources(opts)
    names = [source.name for _, source in opened]
    workers: Workers | None = None
    outputs: Outputs | None = None
    pipes: list[Pipeline] = []

    def reader_gone() -> None:  # stdout closed: end every stream, the log is written as ever
        for p in pipes:
            p.stop(STDOUT_CLOSED)

    try:
        rt = runtime if runtime is not None else load_runtime(opts)
        workers = Workers.start(rt)
        shared = workers.runtime(rt)
        outputs = Outputs(opts, rt, names, reader_gone)
        for i, (one, source) in enumerate(opened):
            offset = resolve_av_offset(one, source)
            pipes.append(assemble(shared, source, outputs.sinks(i, source.name),
                                  lookahead=opts.lookahead, av_offset=offset,
                                  duration=opts.duration))
        for i, p in enumerate(pipes):
            outputs.console.attach(i, p.status)
            if signals is not None:
                signals.attach(p.stop)
        summaries = run_all(pipes)
    except BaseException:
        for _, source in opened:
            source.close()
        raise
    finally:
        if outputs is not None:
            outputs.close()
        if workers is not None:
            workers.close()
    for i, (name, s) in enumerate(zip(names, summaries, strict=True)):
        say(f"stream {i} ({name}): " + ending(s) + s.line())
    if opts.log:
        say(f"predictions: {opts.log}" + (f", events: {opts.events}" if opts.events else ""))
    failed = [(i, names[i], s.error) for i, s in enumerate(summaries) if s.error is not None]
    for i, name, error in failed[1:]:
        say(f"stream {i} ({name}) failed: {error}")
    faults = outputs.faults()
    if failed:
        for fault in faults:
            say(f"error: {fault}")
        raise stream_fault(*failed[0])
    if faults:
        raise fault_line(faults)
    return summaries
