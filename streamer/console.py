"""Console sinks: the live dashboard on a terminal, plain lines on a pipe, log JSON headless.

    sink = make_console_sink("auto", header, status)    # dashboard on a TTY, plain lines otherwise
    sink.on_segment(record); ...; sink.close()

`header` holds the static status fields and `class_names` (background last); `status()` is the
pipeline's live status, polled by the dashboard. rich is imported only for the dashboard.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from model.provenance import Provenance
from streamer.records import log_line
from streamer.sinks import OutputFault

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


class LineWriter:
    """Lines on `stream`, each flushed. When its reader goes away (`main.py ... | head`) it
    writes nothing more, points fd 1 at /dev/null if `stream` is stdout (so the exit's flush of
    what is still buffered stays quiet) and calls `on_reader_gone` once (main.py: end the
    stream; the prediction log is written as ever). A stream that fails otherwise (stdout on a
    full disk or /dev/full) is left the same way, but the run goes on for the other outputs and
    `fault` says why (streamer.sinks.OutputFault)."""

    def __init__(self, stream: TextIO | None = None,
                 on_reader_gone: Callable[[], None] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.on_reader_gone = on_reader_gone
        self.gone = False
        self.fault: OutputFault | None = None

    def write(self, line: str) -> None:
        if self.gone:
            return
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError):  # ValueError: the stream was closed
            self._leave()
            if self.on_reader_gone is not None:
                self.on_reader_gone()
        except OSError as e:
            self._leave()
            name = "stdout" if self.stream is sys.stdout else getattr(self.stream, "name", "output")
            self.fault = OutputFault(
                f"cannot write {name} ({e.strerror or e}): the console lines stopped there, the "
                f"other outputs went on; send {name} where there is room")

    def _leave(self) -> None:
        self.gone = True
        if self.stream is sys.stdout:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


class PlainSink:
    """One readable line per segment on `stream` (for when stdout is not a terminal)."""

    def __init__(self, header: Mapping[str, Any] | None = None, stream: TextIO | None = None,
                 class_names: Sequence[str] | None = None,
                 on_reader_gone: Callable[[], None] | None = None) -> None:
        self.out = LineWriter(stream, on_reader_gone)
        header = dict(header or {})
        names = class_names if class_names is not None else header.get("class_names", ())
        self.class_names = tuple(names or ())
        self.out.write(header_line(header))

    @property
    def fault(self) -> OutputFault | None:
        return self.out.fault

    def on_segment(self, record: Mapping[str, Any]) -> None:
        self.out.write(plain_line(record, self.class_names))

    def close(self) -> None:
        pass


class JsonSink:
    """One prediction-log JSON object per line (`--headless`); flushed every line."""

    def __init__(self, stream: TextIO | None = None,
                 on_reader_gone: Callable[[], None] | None = None) -> None:
        self.out = LineWriter(stream, on_reader_gone)

    @property
    def fault(self) -> OutputFault | None:
        return self.out.fault

    def on_segment(self, record: Mapping[str, Any]) -> None:
        self.out.write(log_line(record))

    def close(self) -> None:
        pass


def make_console_sink(mode: str, header: Mapping[str, Any],
                      status: Callable[[], Mapping] | None = None,
                      class_names: Sequence[str] | None = None,
                      stream: TextIO | None = None,
                      on_reader_gone: Callable[[], None] | None = None,
                      ) -> Dashboard | PlainSink | JsonSink:
    """'auto': the dashboard when `stream` is a terminal, plain lines otherwise;
    'json': one log object per line (--headless). `on_reader_gone`: called once when the
    reader of the plain or JSON lines closes its end (LineWriter)."""
    if mode not in MODES:
        raise ValueError(f"console mode must be one of {MODES}, got {mode!r}")
    stream = stream if stream is not None else sys.stdout
    if mode == "auto":
        tty = hasattr(stream, "isatty") and stream.isatty() and os.environ.get("TERM") != "dumb"
        mode = "dashboard" if tty else "plain"
    if mode == "json":
        return JsonSink(stream, on_reader_gone)
    if mode == "plain":
        return PlainSink(header, stream, class_names, on_reader_gone)
    from rich.console import Console

    from streamer.dashboard import Dashboard

    return Dashboard(header, status, class_names=class_names, console=Console(file=stream))
