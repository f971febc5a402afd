"""Live terminal dashboard, plain-line and JSON console sinks.

The pipeline hands every prediction record to a sink (`on_segment(record)`, `close()`); the
dashboard only appends it to a small buffer under a lock, and rich's refresh thread builds the
screen from a snapshot at 4 Hz, so drawing never blocks or slows the pipeline.

    python -m streamer.dashboard --demo --duration 15   # fake records, to see what it looks like

    sink = make_console_sink("auto", header, status)    # dashboard on a TTY, plain lines otherwise
    sink.on_segment(record); ...; sink.close()

`render(state, width, height)` is a pure function of a `DashboardState` snapshot, tested through
a recording console.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

TIMELINE_SECONDS = 60
BACKGROUND_COLOR = "#808080"
UNKNOWN_COLOR = "#444444"
# Distinct colours readable on dark and light terminals; grey is left out (background owns it).
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22",
    "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2",
    "#dbdb8d", "#9edae5", "#6b6ecf", "#9c9ede", "#8ca252", "#b5cf6b", "#bd9e39", "#e7ba52",
    "#d6616b", "#e7969c", "#a55194", "#ce6dbd", "#393b79", "#5254a3", "#637939", "#cedb9c",
    "#8c6d31", "#e7cb94", "#843c39", "#ad494a", "#7b4173", "#de9ed6",
)
STATUS_KEYS = ("source", "device", "backend", "checkpoint", "untrained", "random_features",
               "frames_per_segment", "lookahead")


def class_color(class_id: int | None, n_classes: int) -> str:
    """Stable hex colour of a class; the last class (background) is grey."""
    if class_id is None or class_id < 0 or (n_classes and class_id >= n_classes):
        return UNKNOWN_COLOR
    if n_classes and class_id == n_classes - 1:
        return BACKGROUND_COLOR
    return PALETTE[class_id % len(PALETTE)]


# ---------------------------------------------------------------------------------------------
# Big text: a 3x5 pixel font drawn with half blocks, 3 terminal rows high.

_FONT = {  # 5 rows of 3 pixels each, top to bottom
    "A": ".#. #.# ### #.# #.#", "B": "##. #.# ##. #.# ##.", "C": ".## #.. #.. #.. .##",
    "D": "##. #.# #.# #.# ##.", "E": "### #.. ##. #.. ###", "F": "### #.. ##. #.. #..",
    "G": ".## #.. #.# #.# .##", "H": "#.# #.# ### #.# #.#", "I": "### .#. .#. .#. ###",
    "J": "..# ..# ..# #.# .#.", "K": "#.# #.# ##. #.# #.#", "L": "#.. #.. #.. #.. ###",
    "M": "#.# ### ### #.# #.#", "N": "##. #.# #.# #.# #.#", "O": "### #.# #.# #.# ###",
    "P": "##. #.# ##. #.. #..", "Q": ".#. #.# #.# ##. .##", "R": "##. #.# ##. #.# #.#",
    "S": ".## #.. .#. ..# ##.", "T": "### .#. .#. .#. .#.", "U": "#.# #.# #.# #.# ###",
    "V": "#.# #.# #.# #.# .#.", "W": "#.# #.# ### ### #.#", "X": "#.# #.# .#. #.# #.#",
    "Y": "#.# #.# .#. .#. .#.", "Z": "### ..# .#. #.. ###", "0": "### #.# #.# #.# ###",
    "1": ".#. ##. .#. .#. ###", "2": "##. ..# .#. #.. ###", "3": "##. ..# .#. ..# ##.",
    "4": "#.# #.# ### ..# ..#", "5": "### #.. ##. ..# ##.", "6": ".## #.. ### #.# ###",
    "7": "### ..# .#. .#. .#.", "8": "### #.# ### #.# ###", "9": "### #.# ### ..# ##.",
    "-": "... ... ### ... ...", " ": "... ... ... ... ...", "(": ".#. #.. #.. #.. .#.",
    ")": ".#. ..# ..# ..# .#.", ",": "... ... ... .#. #..", ".": "... ... ... ... .#.",
    "?": "##. ..# .#. ... .#.", "/": "..# ..# .#. #.. #..", "'": ".#. .#. ... ... ...",
    "&": ".#. #.# .#. #.# .##",
}
_HALF = {(False, False): " ", (True, False): "▀", (False, True): "▄", (True, True): "█"}


def big_text_width(text: str) -> int:
    return max(0, 4 * len(text) - 1)


def big_text_lines(text: str) -> list[str]:
    """`text` in the 3x5 font as 3 lines of half blocks (unknown characters become '?')."""
    glyphs = [[*_FONT.get(ch, _FONT["?"]).split(), "..."] for ch in text.upper()]
    lines = []
    for row in range(3):
        cells = []
        for g in glyphs:
            top, bottom = g[2 * row], g[2 * row + 1]
            cells.append("".join(_HALF[(t == "#", b == "#")]
                                 for t, b in zip(top, bottom, strict=True)))
        lines.append(" ".join(cells))
    return lines


def short_name(label: str) -> str:
    """'Male speech, man speaking' -> 'Male speech'."""
    return label.split(",")[0].strip()


# ---------------------------------------------------------------------------------------------
# State: the pipeline's records reduced to what the screen needs.

@dataclass(frozen=True)
class Interval:
    label: str
    class_id: int
    start: float
    end: float
    confidence: float
    open: bool = False  # still growing (the latest segment belongs to it)


@dataclass(frozen=True)
class DashboardState:
    """Everything `render` needs; a snapshot, never shared with the pipeline thread."""
    info: Mapping[str, Any]  # header merged with the latest status (status wins)
    class_names: tuple[str, ...]
    records: tuple[Mapping[str, Any], ...]  # last TIMELINE_SECONDS records, oldest first
    events: tuple[Interval, ...]  # most recent last
    latency: Mapping[str, tuple[float, float]]  # stage -> (p50, p95) in ms, "total" last
    status: Mapping[str, Any] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        if self.class_names:
            return len(self.class_names)
        return len(self.records[-1].get("probs", ())) if self.records else 0

    @property
    def background_id(self) -> int:
        return self.n_classes - 1


class DashboardModel:
    """Accumulates records (O(1) per record, under a lock) and hands out snapshots."""

    def __init__(self, header: Mapping[str, Any], class_names: Sequence[str] | None = None,
                 latency_window: int = 120, max_events: int = 20) -> None:
        self.header = dict(header)
        names = class_names if class_names is not None else header.get("class_names", ())
        self.class_names = tuple(str(n) for n in names or ())
        self._lock = threading.Lock()
        self._records: deque[Mapping[str, Any]] = deque(maxlen=TIMELINE_SECONDS)
        self._latency: deque[Mapping[str, float]] = deque(maxlen=latency_window)
        self._events: deque[Interval] = deque(maxlen=max_events)  # derived from records
        self._external: deque[Interval] = deque(maxlen=max_events)  # given by the pipeline

    def add(self, record: Mapping[str, Any]) -> None:
        with self._lock:
            self._records.append(record)
            lat = record.get("latency_ms")
            if isinstance(lat, Mapping):
                self._latency.append(lat)
            self._extend_events(record)

    def add_event(self, interval: Mapping[str, Any]) -> None:
        """A final event interval from the pipeline (e.g. `EventLog` listeners). Once any came,
        these replace the derived intervals, but for the derived one still growing."""
        with self._lock:
            label = str(interval.get("label", "?"))
            cid = self.class_names.index(label) if label in self.class_names else -1
            self._external.append(Interval(label, cid, float(interval.get("start", 0.0)),
                                         float(interval.get("end", 0.0)),
                                         float(interval.get("confidence", 0.0))))

    def _extend_events(self, r: Mapping[str, Any]) -> None:
        # Rule: consecutive segments with the same non-background label form one event.
        n = len(self.class_names) or len(r.get("probs", ()))
        cid = int(r.get("class_id", -1))
        last = self._events[-1] if self._events else None
        if last is not None and last.open:
            self._events[-1] = last = Interval(last.label, last.class_id, last.start, last.end,
                                               last.confidence, open=False)
        if cid < 0 or cid == n - 1:
            return
        start, end, conf = float(r.get("start", 0.0)), float(r.get("end", 0.0)), \
            float(r.get("confidence", 0.0))
        if last is not None and last.class_id == cid and abs(last.end - start) < 1e-6:
            dur_old, dur_new = last.end - last.start, end - start
            mean = (last.confidence * dur_old + conf * dur_new) / max(dur_old + dur_new, 1e-9)
            self._events[-1] = Interval(last.label, cid, last.start, end, mean, open=True)
        else:
            self._events.append(Interval(str(r.get("label", "?")), cid, start, end, conf,
                                         open=True))

    def snapshot(self, status: Mapping[str, Any] | None = None) -> DashboardState:
        with self._lock:
            records = tuple(self._records)
            latency = tuple(self._latency)
            events = tuple(self._events)
            if self._external:
                end = self._external[-1].end
                events = tuple(self._external) + tuple(
                    e for e in events if e.open and e.start >= end - 1e-6)
        status = dict(status or {})
        info = dict(self.header)
        info.update({k: status[k] for k in STATUS_KEYS if status.get(k) is not None})
        return DashboardState(info=info, class_names=self.class_names, records=records,
                              events=events, latency=latency_percentiles(latency),
                              status=status)


def latency_percentiles(samples: Sequence[Mapping[str, float]]) -> dict[str, tuple[float, float]]:
    stages: list[str] = []
    for s in samples:
        stages.extend(k for k in s if k not in stages)
    if "total" in stages:
        stages.remove("total")
        stages.append("total")
    out = {}
    for stage in stages:
        v = np.array([float(s[stage]) for s in samples if s.get(stage) is not None])
        if v.size:
            out[stage] = (float(np.percentile(v, 50)), float(np.percentile(v, 95)))
    return out


# ---------------------------------------------------------------------------------------------
# Render: state -> renderable, pure.

def _bar(fraction: float, width: int, color: str, empty: str = "grey23") -> Text:
    fraction = min(max(fraction, 0.0), 1.0) if math.isfinite(fraction) else 0.0
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    text = Text("█" * full, style=color)
    if part and full < width:
        text.append(" ▏▎▍▌▋▊▉"[part], style=color)
        full += 1
    text.append("░" * (width - full), style=empty)
    return text


def _badge(text: str, style: str) -> Text:
    return Text(f" {text} ", style=style)


def _fmt_time(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    m, s = divmod(int(seconds), 60)
    return f"{m}:{s:02d}"


def _header(state: DashboardState, width: int) -> Text:
    info, st = state.info, state.status
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append(" jca-live ", style="bold black on #5fafff")
    if info.get("untrained"):
        t.append(" ")
        t.append_text(_badge("UNTRAINED", "bold white on red"))
    elif info.get("random_features"):
        t.append(" ")
        t.append_text(_badge("RANDOM FEATURES", "bold black on yellow"))
    for key, name in (("source", "source"), ("device", "device"), ("backend", "backend")):
        if info.get(key) not in (None, ""):
            t.append(f"  {name} ", style="dim")
            t.append(str(info[key]), style="bold")
    t.append("\n")
    if info.get("checkpoint") not in (None, ""):
        t.append(" ckpt ", style="dim")
        t.append(str(info["checkpoint"]), style="bold")
    if info.get("frames_per_segment") is not None:
        t.append("  frames/segment ", style="dim")
        t.append(str(info["frames_per_segment"]), style="bold")
    if info.get("lookahead") is not None:
        t.append("  lookahead ", style="dim")
        t.append(f"{info['lookahead']} s", style="bold")
    if st.get("segments") is not None:
        t.append("  segments ", style="dim")
        t.append(str(st["segments"]), style="bold")
    if st.get("elapsed") is not None:
        t.append("  elapsed ", style="dim")
        t.append(_fmt_time(st["elapsed"]), style="bold")
    return t


def _now_panel(state: DashboardState, width: int, height: int) -> Panel:
    if not state.records:
        body = Text("waiting for the first segment…", style="dim italic")
        return Panel(body, title="now", height=height, border_style="grey50")
    r = state.records[-1]
    cid = int(r.get("class_id", -1))
    color = class_color(cid, state.n_classes)
    label = str(r.get("label", "?"))
    conf = float(r.get("confidence", 0.0))
    inner = width - 4
    big = short_name(label)
    attn = r.get("attention")
    # the attention map only where it leaves room for the big label
    show_attn = (attn is not None and height >= 6
                 and inner - 16 >= max(24, big_text_width(big) if height >= 7 else 0))
    text_width = inner - (16 if show_attn else 0)
    lines: list[Text] = []
    while big_text_width(big) > text_width and " " in big:  # the first words that fit
        big = big.rsplit(" ", 1)[0]
    if height >= 7 and 0 < big_text_width(big) <= text_width:
        lines += [Text(line, style=f"bold {color}", no_wrap=True) for line in big_text_lines(big)]
    lines.append(Text(label, style=f"bold {color}", no_wrap=True, overflow="ellipsis"))
    bar = _bar(conf, max(4, text_width - 5), color)
    bar.append(f" {conf:4.0%}", style="bold")
    lines.append(bar)
    meta = Text(f"segment {r.get('segment', '?')}  {float(r.get('start', 0)):.1f}–"
                f"{float(r.get('end', 0)):.1f} s", style="dim", no_wrap=True, overflow="ellipsis")
    if r.get("warmup"):
        meta.append("  ")
        meta.append_text(_badge("warm-up", "black on yellow"))
    for m in r.get("missing") or ():
        meta.append("  ")
        meta.append_text(_badge(f"no {m}", "bold white on red"))
    lines.append(meta)
    body: RenderableType = Group(*lines[-(height - 2):])
    if show_attn:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(width=text_width)
        grid.add_column(width=14)
        grid.add_row(body, _attention_map(attn))
        body = grid
    subtitle = ("random weights: labels are meaningless" if state.info.get("untrained") else
                "random extractor weights: labels hold only for a model trained on them"
                if state.info.get("random_features") else None)
    return Panel(body, title="now", title_align="left", subtitle=subtitle,
                 subtitle_align="right", height=height, border_style=color)


def _attention_map(attn: Any) -> Text:
    """A 7x7 map as 4 text rows of half blocks (fg = upper row, bg = lower row)."""
    a = np.asarray(attn, dtype=np.float64)
    if a.ndim != 2 or a.size == 0:
        return Text()
    lo, hi = float(a.min()), float(a.max())
    a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    if a.shape[0] % 2:
        a = np.vstack([a, np.full((1, a.shape[1]), np.nan)])

    def color(v: float) -> str:
        if not math.isfinite(v):
            return "default"
        # dark blue -> red -> yellow, like a heat map
        r = int(255 * min(1.0, 2 * v))
        g = int(255 * max(0.0, 2 * v - 1))
        b = int(120 * (1 - v))
        return f"#{r:02x}{g:02x}{b:02x}"

    t = Text(no_wrap=True)
    for row in range(0, a.shape[0], 2):
        for col in range(a.shape[1]):
            up, down = a[row, col], a[row + 1, col]
            bg = color(down)
            t.append("▀▀", style=f"{color(up)} on {bg}" if bg != "default" else color(up))
        t.append("\n")
    t.append("attention", style="dim")
    return t


def _top5_panel(state: DashboardState, width: int, height: int) -> Panel:
    rows = max(1, min(5, height - 2))
    table = Table.grid(padding=(0, 1))
    inner = width - 4
    name_w = max(6, min(22, inner // 2 - 2))
    bar_w = max(3, inner - name_w - 7)
    table.add_column(width=name_w, no_wrap=True, overflow="ellipsis")
    table.add_column(width=bar_w, no_wrap=True)
    table.add_column(width=4, justify="right", no_wrap=True)
    if state.records:
        probs = np.asarray(state.records[-1].get("probs", ()), dtype=np.float64)
        for i in np.argsort(-probs, kind="stable")[:rows]:
            color = class_color(int(i), len(probs))
            name = state.class_names[i] if i < len(state.class_names) else f"class {i}"
            table.add_row(Text(name, style=color), _bar(float(probs[i]), bar_w, color),
                          Text(f"{probs[i]:.2f}"))
    return Panel(table, title="top 5", title_align="left", height=height, border_style="grey50")


def _timeline_panel(state: DashboardState, width: int, height: int) -> Panel:
    inner = width - 4
    cell = 2 if inner >= 2 * TIMELINE_SECONDS else 1
    n_cells = min(TIMELINE_SECONDS, inner // cell)
    records = {int(r.get("segment", -1)): r for r in state.records}
    last = max(records) if records else n_cells - 1
    first = last - n_cells + 1
    n = state.n_classes
    blocks, marks, axis = Text(no_wrap=True), Text(no_wrap=True), Text(no_wrap=True)
    seg_time = {s: float(r.get("start", s)) for s, r in records.items()}
    for s in range(first, last + 1):
        r = records.get(s)
        if s < 0:  # before the stream started
            blocks.append(" " * cell)
        elif r is None:
            blocks.append("·" * cell, style="grey35")
        else:
            style = class_color(int(r.get("class_id", -1)), n)
            if r.get("warmup") or r.get("missing"):
                style += " dim"
            blocks.append("█" * cell, style=style)
        marks.append_text(_event_mark(state.events, s, seg_time.get(s), cell, n))
    # axis: a tick and the stream time every 10 seconds
    axis_chars = [" "] * (n_cells * cell)
    for s in range(first, last + 1):
        if s % 10 == 0 and s >= 0:
            pos = (s - first) * cell
            stamp = f"╵{_fmt_time(seg_time.get(s, s))}"
            for k, ch in enumerate(stamp):
                if pos + k < len(axis_chars):
                    axis_chars[pos + k] = ch
    axis.append("".join(axis_chars), style="dim")
    lines: list[RenderableType] = [blocks, marks]
    if height >= 5:
        lines.append(axis)
    if height >= 6:
        lines.append(_legend(state, first, last, inner))
    title = f"last {n_cells} s  (1 cell = 1 s, [━] = event)"
    return Panel(Group(*lines[: max(1, height - 2)]), title=title, title_align="left",
                 height=height, border_style="grey50")


def _event_mark(events: Sequence[Interval], seg: int, start: float | None, cell: int,
                n: int) -> Text:
    t = float(seg) if start is None else start
    mid = t + 0.5
    for ev in events:
        if ev.start <= mid < ev.end:
            color = class_color(ev.class_id, n)
            first, last = ev.start > mid - 1.0, ev.end <= mid + 1.0 and not ev.open
            if cell == 1:
                ch = "■" if first and last else "[" if first else "]" if last else "━"
            else:
                ch = ("[" if first else "━") + ("]" if last else "━")
            return Text(ch, style=f"bold {color}")
    return Text(" " * cell)


def _legend(state: DashboardState, first: int, last: int, width: int) -> Text:
    seen: dict[int, str] = {}
    for r in state.records:
        s = int(r.get("segment", -1))
        if first <= s <= last:
            seen.setdefault(int(r.get("class_id", -1)), str(r.get("label", "?")))
    t = Text(no_wrap=True, overflow="ellipsis")
    for cid, label in sorted(seen.items()):
        t.append("█ ", style=class_color(cid, state.n_classes))
        t.append(short_name(label) + "  ")
    t.truncate(width, overflow="ellipsis")
    return t


def _meters_panel(state: DashboardState, width: int, height: int) -> Panel:
    st = state.status
    last = state.records[-1] if state.records else {}
    inner = width - 4
    t = Text(no_wrap=True, overflow="ellipsis")
    db = st.get("audio_level_db", last.get("audio_rms_db"))
    t.append("audio ")
    if db is None or not math.isfinite(float(db)):
        t.append_text(_badge("no audio", "bold white on red"))
    else:
        db = float(db)
        color = "green" if db < -20 else "yellow" if db < -6 else "red"
        t.append_text(_bar((db + 60) / 60, max(4, inner - 15), color))
        t.append(f" {db:5.1f} dB")
    t.append("\nvideo ")
    fps = st.get("video_fps", last.get("video_fps"))
    if fps is None or float(fps) <= 0:
        t.append_text(_badge("no video", "bold white on red"))
    else:
        t.append(f"{float(fps):.1f} fps", style="bold")
    drops = st.get("drops", last.get("drops")) or {}
    t.append("\ndrops ")
    for key in ("video", "audio"):
        count = int(drops.get(key, 0) or 0)
        t.append(f"{key} ")
        t.append(str(count), style="bold red" if count else "green")
        t.append("  ")
    segs = st.get("segments")
    if segs is not None:
        t.append(f"\nsegments {segs}")
    return Panel(t, title="signal", title_align="left", height=height, border_style="grey50")


def _latency_panel(state: DashboardState, width: int, height: int) -> Panel:
    table = Table.grid(padding=(0, 1))
    table.add_column(no_wrap=True, overflow="ellipsis")
    table.add_column(justify="right", no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    table.add_row(Text("ms", style="dim"), Text("p50", style="dim"), Text("p95", style="dim"))
    stages = list(state.latency.items())
    room = max(0, height - 3)
    if len(stages) > room:  # keep the total, drop middle stages
        stages = stages[: max(0, room - 1)] + stages[-1:] if room else []
    for stage, (p50, p95) in stages:
        style = "bold" if stage == "total" else ""
        table.add_row(Text(stage, style=style), Text(f"{p50:.0f}", style=style),
                      Text(f"{p95:.0f}", style=style))
    return Panel(table, title="latency", title_align="left", height=height,
                 border_style="grey50")


def _events_panel(state: DashboardState, width: int, height: int) -> Panel:
    t = Text(no_wrap=True, overflow="ellipsis")
    rows = max(0, height - 2)
    events = list(state.events)[-rows:][::-1] if rows else []
    if not events:
        t.append("no events yet", style="dim italic")
    for i, ev in enumerate(events):
        if i:
            t.append("\n")
        t.append("■ ", style=class_color(ev.class_id, state.n_classes))
        t.append(f"{short_name(ev.label)} ", style="bold")
        t.append(f"{ev.start:.0f}–{'now' if ev.open else f'{ev.end:.0f} s'} ")
        t.append(f"{ev.confidence:.2f}", style="dim")
    return Panel(t, title="events", title_align="left", height=height, border_style="grey50")


def render(state: DashboardState, width: int, height: int) -> RenderableType:
    """The whole screen for a terminal of `width` x `height`; never taller than `height`."""
    width, height = max(width, 20), max(height, 3)
    parts: list[RenderableType] = [_header(state, width)]
    left = height - 2
    if left >= 5:
        # the big label needs 7 rows; give them up first when the timeline would not fit
        h = 8 if left >= 14 else 7 if left >= 11 else 5
        if width >= 60:
            grid = Table.grid(expand=True)
            right_w = min(48, max(30, width // 3 + 4))
            grid.add_column(ratio=1)
            grid.add_column(width=right_w)
            grid.add_row(_now_panel(state, width - right_w, h), _top5_panel(state, right_w, h))
            parts.append(grid)
        else:
            parts.append(_now_panel(state, width, h))
        left -= h
    if left >= 4:
        h = min(6, left)
        parts.append(_timeline_panel(state, width, h))
        left -= h
    if left >= 5:
        h = min(left, 12)
        grid = Table.grid(expand=True)
        if width >= 70:
            grid.add_column(ratio=3)
            grid.add_column(ratio=2)
            grid.add_column(ratio=3)
            third = width // 3
            grid.add_row(_meters_panel(state, third, h), _latency_panel(state, third, h),
                         _events_panel(state, third, h))
        else:
            grid.add_column(ratio=1)
            grid.add_column(ratio=1)
            grid.add_row(_meters_panel(state, width // 2, h), _events_panel(state, width // 2, h))
        parts.append(grid)
    return Group(*parts)


# ---------------------------------------------------------------------------------------------
# Sinks

class Dashboard:
    """rich Live dashboard sink. `on_segment` only appends; rich's thread draws at >= 4 Hz."""

    def __init__(self, header: Mapping[str, Any], status: Callable[[], Mapping] | None = None,
                 *, class_names: Sequence[str] | None = None, console: Console | None = None,
                 refresh_per_second: float = 4.0) -> None:
        self.model = DashboardModel(header, class_names)
        self._status = status
        self._last_status: Mapping[str, Any] = {}
        self.console = console or Console()
        self._closed = False
        self._size: tuple[int, int] | None = None
        self._live = Live(console=self.console, refresh_per_second=refresh_per_second,
                          get_renderable=self._renderable, redirect_stdout=True,
                          redirect_stderr=True)
        self._live.start()

    def _renderable(self) -> RenderableType:
        try:
            if self._status is not None:
                self._last_status = self._status()
        except Exception:  # a failing status must not take the screen down; keep the last one
            pass
        try:
            width, height = self.console.size
            if self._size not in (None, (width, height)) and self.console.is_terminal:
                # the terminal reflowed the old picture; start from a clean screen
                self.console.clear()
            self._size = (width, height)
            # one line less than the terminal so the live region never scrolls the screen
            return render(self.model.snapshot(self._last_status), width, height - 1)
        except Exception as e:
            return Text(f"dashboard error: {e!r}", style="red")

    def on_segment(self, record: Mapping[str, Any]) -> None:
        self.model.add(record)

    def on_event(self, interval: Mapping[str, Any]) -> None:
        self.model.add_event(interval)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._live.stop()


def _top(record: Mapping[str, Any], class_names: Sequence[str], k: int) -> list[tuple[str, float]]:
    probs = np.asarray(record.get("probs", ()), dtype=np.float64)
    out = []
    for i in np.argsort(-probs, kind="stable")[:k]:
        out.append((class_names[i] if i < len(class_names) else str(i), float(probs[i])))
    return out


def header_line(info: Mapping[str, Any]) -> str:
    parts = [f"{k}={info[k]}" for k in ("source", "device", "backend", "checkpoint",
                                         "frames_per_segment", "lookahead")
             if info.get(k) is not None]
    if info.get("untrained"):
        parts.append("UNTRAINED (random weights: labels are meaningless)")
    elif info.get("random_features"):
        parts.append("RANDOM FEATURES (random extractor weights: labels hold only for a model "
                     "trained on these same random features)")
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
    if record.get("untrained"):
        flags.append("UNTRAINED")
    elif record.get("random_features"):
        flags.append("RANDOM FEATURES")
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


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def log_line(record: Mapping[str, Any]) -> str:
    """The prediction-log JSON of a record: everything but the in-process `attention`."""
    return json.dumps({k: v for k, v in record.items() if k != "attention"}, default=_jsonable)


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


MODES = ("auto", "dashboard", "plain", "json")


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
    return Dashboard(header, status, class_names=class_names, console=Console(file=stream))


# ---------------------------------------------------------------------------------------------
# Demo: fake records at a chosen pace, to look at the dashboard without a model.

DEMO_CLASSES = ("Church bell", "Male speech, man speaking", "Bark", "Helicopter",
                "Acoustic guitar", "Train horn", "background")


def demo_records(n: int, class_names: Sequence[str] = DEMO_CLASSES, seed: int = 0,
                 event_len: int = 5) -> list[dict]:
    """n fake records: events of `event_len` s alternating with background, noisy probs."""
    rng = np.random.default_rng(seed)
    c = len(class_names)
    out = []
    for s in range(n):
        block = s // event_len
        cid = c - 1 if block % 2 == 0 else int(rng.integers(0, c - 1))
        if s % event_len and out:
            cid = out[-1]["class_id"]
        logits = rng.normal(0.0, 1.0, c)
        logits[cid] += 3.0
        p = np.exp(logits - logits.max())
        p /= p.sum()
        cid = int(np.argmax(p))
        attn = rng.random((7, 7)) ** 3
        out.append({
            "segment": s, "start": float(s), "end": float(s + 1), "label": class_names[cid],
            "class_id": cid, "confidence": float(p[cid]), "probs": p.tolist(), "lookahead": 0,
            "warmup": s < 2,
            "latency_ms": {"visual": float(rng.uniform(40, 60)), "audio": float(rng.uniform(8, 12)),
                           "model": float(rng.uniform(5, 9)), "total": float(rng.uniform(60, 80))},
            "audio_rms_db": float(rng.uniform(-40, -10)), "video_fps": 25.0,
            "drops": {"video": 0, "audio": 0}, "attention": (attn / attn.sum()).tolist(),
        })
    return out


def _demo(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--demo", action="store_true", help="drive the dashboard with fake records")
    ap.add_argument("--duration", type=float, default=15.0, help="seconds of fake stream")
    ap.add_argument("--speed", type=float, default=1.0, help="segments per wall second")
    ap.add_argument("--mode", choices=MODES, default="auto")
    args = ap.parse_args(argv)
    if not args.demo:
        ap.print_help()
        return 0
    t0 = time.monotonic()
    records = demo_records(int(args.duration))
    state = {"segments": 0}

    def status() -> dict:
        return {"source": "demo", "device": "cpu", "backend": "none", "checkpoint": "-",
                "untrained": True, "frames_per_segment": 4, "lookahead": 0,
                "audio_level_db": float(-30 + 10 * math.sin(time.monotonic() * 3)),
                "video_fps": 25.0, "drops": {"video": 0, "audio": 0},
                "segments": state["segments"], "elapsed": time.monotonic() - t0}

    header = {**status(), "class_names": list(DEMO_CLASSES)}
    sink = make_console_sink(args.mode, header, status)
    try:
        for i, r in enumerate(records):
            time.sleep(max(0.0, t0 + (i + 1) / args.speed - time.monotonic()))
            state["segments"] = i + 1
            sink.on_segment(r)
        time.sleep(0.3)
    finally:
        sink.close()
    return 0


if __name__ == "__main__":
    from model.errors import run_cli

    run_cli(_demo)
