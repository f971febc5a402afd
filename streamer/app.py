"""main.py's body: open the source, load the runtime, assemble a pipeline with the sinks the
options ask for, run it.

    opts = AppOptions(source="replay", replay="clip.mp4", random_weights=True, fast=True)
    summary = run(opts)       # prints the summary and notes on stderr
    summary = run(opts, signals)   # SIGTERM / SIGHUP stop it cleanly (streamer.signals)

The options are checked when they are made (streamer.options); loading is streamer.runtime.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

from model.extractors.vggish_frontend import SAMPLE_RATE
from streamer.offsets import load_offset, source_key
from streamer.options import AppOptions
from streamer.pipeline import Pipeline, Summary
from streamer.runtime import Runtime, assemble, load_runtime, say
from streamer.signals import StopSignals
from streamer.sinks import EventLog, JsonlLog, fault_line, output_faults
from streamer.sources import Source

SYNTHETIC_SECONDS = 3600.0  # a synthetic stream without --duration
STDOUT_CLOSED = "stdout closed"  # why a run stopped when the reader of its output went away


def open_source(opts: AppOptions) -> Source:
    """The stream the options name; a missing file, camera or microphone is a UserError."""
    if opts.source == "replay":
        from streamer.replay import replay_source

        return replay_source(opts.replay or "", fast=opts.fast)
    if opts.source == "synthetic":
        from streamer.synthetic import Script, synthetic_source

        return synthetic_source(Script.demo(opts.duration or SYNTHETIC_SECONDS, size=(120, 160)),
                                fast=opts.fast)
    if opts.source == "stream":
        from streamer.network import stream_source

        return stream_source(opts.stream or "", say=say)
    from streamer.camera import CameraProducer
    from streamer.microphone import MicrophoneProducer

    mic = MicrophoneProducer(opts.mic)  # check the microphone before opening the camera
    cam = CameraProducer(opts.camera if opts.camera is not None else "0")
    return Source(f"camera:{cam.device} + mic:{mic.name}", [cam, mic], live=True)


def resolve_av_offset(opts: AppOptions, source: Source) -> float:
    """--av-offset, else the offset `python -m calibrate.sync --save` measured for this camera +
    microphone (or file), else 0."""
    if opts.av_offset is not None or opts.source == "synthetic":
        return opts.av_offset or 0.0
    saved = load_offset(source_key(source.name, opts.replay if opts.source == "replay" else None))
    if saved is None:
        return 0.0
    say(f"note: A/V offset {saved.offset_ms:+.1f} ms measured {saved.measured} ({saved.path}); "
        "--av-offset overrides it")
    return saved.offset_ms / 1000


def build(opts: AppOptions, signals: StopSignals | None = None) -> Pipeline:
    """Everything from the options; user mistakes surface here as UserError, before any thread.
    `signals`: SIGTERM / SIGHUP stop the pipeline from the moment it exists, before its sinks
    are opened (until then they abort the loading)."""
    source = open_source(opts)  # a missing file or camera fails first, and fast
    sinks: list = []
    try:
        opts = replace(opts, av_offset=resolve_av_offset(opts, source))
        rt = load_runtime(opts)
        pipe = assemble(rt, source, lookahead=opts.lookahead, av_offset=opts.av_offset or 0.0,
                        duration=opts.duration)
        if signals is not None:
            signals.attach(pipe.stop)
        sinks = make_sinks(opts, pipe, rt)
        if opts.overlay:
            from streamer.overlay import OverlayWriter

            overlay = OverlayWriter(opts.overlay, sample_rate=SAMPLE_RATE)
            pipe.taps.append(overlay)
            sinks.insert(-1, overlay)  # before the console: the file is complete first
    except BaseException:
        for s in sinks:  # e.g. an --overlay path that cannot be written: the log and the
            s.close()    # console opened before it are closed, the terminal restored
        source.close()
        raise
    pipe.sinks = sinks
    return pipe


def make_sinks(opts: AppOptions, pipe: Pipeline, rt: Runtime) -> list:
    """Log, events, console, in the order each segment reaches them (the log is on disk
    before anything is shown); the console also gets each final event interval."""
    from streamer.console import make_console_sink

    class_names = rt.model.class_names
    header = {**pipe.status(), "class_names": list(class_names)}
    console = make_console_sink("json" if opts.headless else "auto", header, pipe.status,
                                class_names=class_names,
                                on_reader_gone=partial(pipe.stop, STDOUT_CLOSED))
    sinks: list = []
    try:
        if opts.log:
            sinks.append(JsonlLog(opts.log))
        if opts.events:
            listeners = [console.on_event] if hasattr(console, "on_event") else []
            sinks.append(EventLog(opts.events, opts.min_event, opts.min_gap,
                                  background=class_names[-1], threshold=rt.model.threshold,
                                  untrained=rt.provenance.untrained,
                                  random_features=rt.provenance.random_features,
                                  listeners=listeners))
    except BaseException:
        for s in [*sinks, console]:
            s.close()
        raise
    return [*sinks, console]


def ending(summary: Summary) -> str:
    """How the summary line starts: how the stream ended."""
    if summary.stopped_by is not None:
        return f"stopped ({summary.stopped_by}): "
    return "interrupted: " if summary.interrupted else "done: "


def run(opts: AppOptions, signals: StopSignals | None = None) -> Summary | list[Summary]:
    """Build, run to the end, print the summary on stderr; a stream fault is raised after it,
    else the fault of an output that could not be written (a full disk: one line, exit 2).
    Several sources: streamer.multi, one summary per stream."""
    if opts.sources:
        from streamer.multi import run_many

        return run_many(opts, signals=signals)
    pipe = build(opts, signals)
    summary = pipe.run()
    say(ending(summary) + summary.line())
    if opts.log:
        say(f"predictions: {opts.log}" + (f", events: {opts.events}" if opts.events else ""))
    faults = output_faults(pipe.sinks)
    if summary.error is not None:
        for fault in faults:
            say(f"error: {fault}")
        raise summary.error
    if faults:
        raise fault_line(faults)
    return summary
