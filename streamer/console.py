"""Console sinks: the live dashboard on a terminal, plain lines on a pipe, log JSON headless.

    sink = make_console_sink("auto", header, status)    # dashboard on a TTY, plain lines otherwise
    sink.on_segment(record); ...; sink.close()

`header` holds the static status fields and `class_names` (background last); `status()` is the
pipeline's live status, polled by the dashboard. rich is imported only for the dashboard.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from model.provenance import Provenance
from streamer.records import log_line

if TYPE_CHECKING:
    from streamer.dashboard import Dashboard

MODES = ("auto", "dashboard", "plain", "json")


def _top(record: Mapping[str, Any], class_names: Sequence[str], k: int) -> list[tuple[str, float]]:
    probs = np.asarray(record.get("probs", ()), dtype=np.float64)
    out = []
    for i in np.argsort(-probs, kind="stable")[:k]:
        out.append((class_names[i] if i < len(class_names) else str(i), float(probs[i])))
    return out


def header_line(info: Mapping[str, Any]) -> str:
    parts = [f"{k}={info[k]}" for k in ("source", "device", "backend", "checkpoint",
                                         "frames_per_segment", "frames_note", "lookahead")
             if info.get(k) is not None]
    provenance = Provenance.from_record(info)
    if provenance.tag:
        parts.append(f"{provenance.tag} ({provenance.reason})")
    return "jca-live " + " ".join(parts)


def plain_line(record: Mapping[str, Any], class_names: Sequence[str] = ()) -> str:
    """One readable line per segment, for logs and pipes."""
    conf = float(record.get("confidence", 0.0))
    line = (f"[{float(record.get('start', 0)):7.1f}-{float(record.get('end', 0)):7.1f} s] "
            f"#{record.get('segment', '?'):<5} {record.get('label', '?')!s:<24} {conf:5.2f}")
    runner = _top(record, class_names, 2)[1:]
    if runner:
        line += f"  (next: {runner[0][0]} {runner[0][1]:.2f})"
    total = (record.get("latency_ms") or {}).get("total")
    if total is not None:
        line += f"  {float(total):.0f} ms"
    flags = []
    if record.get("warmup"):
        flags.append("warm-up")
    flags += [f"no {m}" for m in record.get("missing") or ()]
    if record.get("nonfinite"):
        flags.append("non-finite")
    provenance = Provenance.from_record(record)
    if provenance.tag:
        flags.append(provenance.tag)
    if flags:
        line += "  [" + ", ".join(flags) + "]"
    return line


class PlainSink:
    """One readable line per segment on `stream` (for when stdout is not a terminal)."""

    def __init__(self, header: Mapping[str, Any] | None = None, stream: TextIO | None = None,
                 class_names: Sequence[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        header = dict(header or {})
        names = class_names if class_names is not None else header.get("class_names", ())
        self.class_names = tuple(names or ())
        self._write(header_line(header))

    def _write(self, line: str) -> None:
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError):  # reader went away; the pipeline carries on
            pass

    def on_segment(self, record: Mapping[str, Any]) -> None:
        self._write(plain_line(record, self.class_names))

    def close(self) -> None:
        pass


class JsonSink:
    """One prediction-log JSON object per line (`--headless`); flushed every line."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self._broken = False

    def on_segment(self, record: Mapping[str, Any]) -> None:
        if self._broken:
            return
        try:
            self.stream.write(log_line(record) + "\n")
            self.stream.flush()
        except BrokenPipeError:
            # `... | head`: stop writing, and point fd 1 at /dev/null so exit stays quiet
            self._broken = True
            if self.stream is sys.stdout:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())

    def close(self) -> None:
        if not self._broken:
            with contextlib.suppress(BrokenPipeError, ValueError):
                self.stream.flush()


def make_console_sink(mode: str, header: Mapping[str, Any],
                      status: Callable[[], Mapping] | None = None,
                      class_names: Sequence[str] | None = None,
                      stream: TextIO | None = None) -> Dashboard | PlainSink | JsonSink:
    """'auto': the dashboard when `stream` is a terminal, plain lines otherwise;
    'json': one log object per line (--headless)."""
    if mode not in MODES:
        raise ValueError(f"console mode must be one of {MODES}, got {mode!r}")
    stream = stream if stream is not None else sys.stdout
    if mode == "auto":
        tty = hasattr(stream, "isatty") and stream.isatty() and os.environ.get("TERM") != "dumb"
        mode = "dashboard" if tty else "plain"
    if mode == "json":
        return JsonSink(stream)
    if mode == "plain":
        return PlainSink(header, stream, class_names)
    from rich.console import Console

    from streamer.dashboard import Dashboard

    return Dashboard(header, status, class_names=class_names, console=Console(file=stream))
