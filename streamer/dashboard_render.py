"""The dashboard's screen, drawn from a `DashboardState`: pure, no I/O, no threads.

    render(state, width, height)   # a rich renderable, never taller than `height`

Layout, top to bottom: a two-line header; the current label (big text, confidence bar, the
attention map) beside the top 5 classes; the last 60 s as one cell per second with the events
marked; the signal meters, latency percentiles and the event list.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from model.provenance import Provenance
from streamer.bigtext import big_text_lines, big_text_width
from streamer.dashboard_state import TIMELINE_SECONDS, DashboardState, ShownEvent
from streamer.palette import class_color, short_name

BADGE_STYLES = {Provenance.UNTRAINED: "bold white on red",
                Provenance.RANDOM_FEATURES: "bold black on yellow"}


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
    provenance = Provenance.from_record(info)
    if provenance.tag:
        t.append(" ")
        t.append_text(_badge(provenance.tag, BADGE_STYLES[provenance]))
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
        if info.get("frames_note"):
            t.append(f" ({info['frames_note']})", style="dim")
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
    if r.get("nonfinite"):
        meta.append("  ")
        meta.append_text(_badge("non-finite", "bold white on red"))
    lines.append(meta)
    body: RenderableType = Group(*lines[-(height - 2):])
    if show_attn:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(width=text_width)
        grid.add_column(width=14)
        grid.add_row(body, _attention_map(attn))
        body = grid
    subtitle = Provenance.from_record(state.info).reason or None
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


def _event_mark(events: Sequence[ShownEvent], seg: int, start: float | None, cell: int,
                n: int) -> Text:
    t = float(seg) if start is None else start
    mid = t + 0.5
    for ev in events:
        iv = ev.interval
        if iv.start <= mid < iv.end:
            color = class_color(ev.class_id, n)
            first, last = iv.start > mid - 1.0, iv.end <= mid + 1.0 and not ev.open
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
        iv = ev.interval
        t.append("■ ", style=class_color(ev.class_id, state.n_classes))
        t.append(f"{short_name(iv.label)} ", style="bold")
        t.append(f"{iv.start:.0f}–{'now' if ev.open else f'{iv.end:.0f} s'} ")
        t.append(f"{iv.confidence:.2f}", style="dim")
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
