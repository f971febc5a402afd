"""The dashboard's screen, drawn from a `DashboardState`: pure, no I/O, no threads.

    render(state, width, height)   # a rich renderable, never taller than `height`

Layout, top to bottom: a two-line header; the current label (big text, confidence bar, the
attention map) beside the top 5 classes; the last 60 s as one cell per second with the events
marked; the signal meters, latency percentiles and the event list.

What gives way on a small terminal (`LAYOUTS`): the big text, then timeline rows, then the
bottom panels, which shrink to one footer line; the current label and the drop counters never
leave the screen. Names are shortened at word boundaries (`fit`), times and numbers never cut.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from rich.cells import cell_len, set_cell_size
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


def fit(text: str, width: int) -> str:
    """`text` in `width` cells: whole, else its first words and "…" (a word is cut only when
    not even the first one fits)."""
    if cell_len(text) <= width:
        return text
    if width < 1:
        return ""
    words = text.split(" ")
    for n in range(len(words) - 1, 0, -1):
        head = " ".join(words[:n]).rstrip(",;:-")
        if cell_len(head) + 1 <= width:
            return head + "…"
    return set_cell_size(text, width - 1) + "…"


def _fields(parts: list[tuple[str, str, str]], width: int) -> Text:
    """One header line of `(label, value, value style)` fields, each shown whole or not at all
    (the first ones first)."""
    t = Text(no_wrap=True)
    for label, value, style in parts:
        if cell_len(t.plain) + cell_len(label) + cell_len(value) > width:
            break
        t.append(label, style="dim")
        t.append(value, style=style)
    return t


def _header(state: DashboardState, width: int, lines: int = 2) -> Text:
    info, st = state.info, state.status
    t = Text(no_wrap=True)
    provenance = Provenance.from_record(info)
    if not provenance.tag or width >= len(" jca-live ") + len(f"  {provenance.tag} "):
        t.append(" jca-live ", style="bold black on #5fafff")
    if provenance.tag:  # the one badge that stays on the narrowest terminal
        t.append(" " if t.plain else "")
        t.append_text(_badge(provenance.tag, BADGE_STYLES[provenance]))
    first = [(f"  {name} ", str(info[key]), "bold") for key, name in
             (("source", "source"), ("device", "device"), ("backend", "backend"))
             if info.get(key) not in (None, "")]
    t.append_text(_fields(first, width - cell_len(t.plain)))
    if lines < 2:
        return t
    second: list[tuple[str, str, str]] = []
    if info.get("checkpoint") not in (None, ""):
        second.append((" ckpt ", str(info["checkpoint"]), "bold"))
    if info.get("frames_per_segment") is not None:
        note = f" ({info['frames_note']})" if info.get("frames_note") else ""
        second.append(("  frames/segment ", f"{info['frames_per_segment']}{note}", "bold"))
    if info.get("lookahead") is not None:
        second.append(("  lookahead ", f"{info['lookahead']} s", "bold"))
    if st.get("segments") is not None:
        second.append(("  segments ", str(st["segments"]), "bold"))
    if st.get("elapsed") is not None:
        second.append(("  elapsed ", _fmt_time(st["elapsed"]), "bold"))
    t.append("\n")
    t.append_text(_fields(second, width))
    return t


def _label_line(r: Mapping[str, Any], color: str, width: int) -> Text:
    """The current label and its confidence on one line: the label gives way, the % never."""
    conf = f" {float(r.get('confidence', 0.0)):4.0%}"
    t = Text(fit(str(r.get("label", "?")), width - len(conf)), style=f"bold {color}",
             no_wrap=True)
    t.append(conf, style="bold")
    return t


def _now_line(state: DashboardState, width: int) -> Text:
    """The now panel in one line, for the smallest terminals."""
    if not state.records:
        return Text("waiting for the first segment…", style="dim italic", no_wrap=True)
    r = state.records[-1]
    return _label_line(r, class_color(int(r.get("class_id", -1)), state.n_classes), width)


def _now_panel(state: DashboardState, width: int, height: int) -> Panel:
    """The current label; as rows allow, then its confidence bar, the segment's times and
    flags, the label in big text (6 rows inside) and the attention map beside it."""
    if not state.records:
        body = Text("waiting for the first segment…", style="dim italic")
        return Panel(body, title="now", height=height, border_style="grey50")
    r = state.records[-1]
    cid = int(r.get("class_id", -1))
    color = class_color(cid, state.n_classes)
    label = str(r.get("label", "?"))
    conf = float(r.get("confidence", 0.0))
    inner, rows = width - 4, height - 2
    big = short_name(label)
    attn = r.get("attention")
    # the attention map only where it leaves room for the big label
    show_attn = (attn is not None and rows >= 4
                 and inner - 16 >= max(24, big_text_width(big) if rows >= 6 else 0))
    text_width = inner - (16 if show_attn else 0)
    lines: list[Text] = []
    while big_text_width(big) > text_width and " " in big:  # the first words that fit
        big = big.rsplit(" ", 1)[0]
    if rows >= 6 and 0 < big_text_width(big) <= text_width:
        lines += [Text(line, style=f"bold {color}", no_wrap=True) for line in big_text_lines(big)]
    if rows < 2:
        lines.append(_label_line(r, color, text_width))
    else:
        lines.append(Text(fit(label, text_width), style=f"bold {color}", no_wrap=True))
        bar = _bar(conf, max(4, text_width - 5), color)
        bar.append(f" {conf:4.0%}", style="bold")
        lines.append(bar)
    if rows >= 3:
        meta = Text(f"segment {r.get('segment', '?')}  {float(r.get('start', 0)):.1f}–"
                    f"{float(r.get('end', 0)):.1f} s", style="dim", no_wrap=True,
                    overflow="ellipsis")
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
    body: RenderableType = Group(*lines)
    if show_attn:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(width=text_width)
        grid.add_column(width=14)
        grid.add_row(body, _attention_map(attn))
        body = grid
    reason = Provenance.from_record(state.info).reason
    subtitle = fit(reason, width - 6) if reason else None
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
            if cell_len(name) > name_w:
                name = short_name(name)
            table.add_row(Text(fit(name, name_w), style=color),
                          _bar(float(probs[i]), bar_w, color),
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
    title = f"last {n_cells} s  ({'█' * cell} = 1 s, [━] = event)"
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
    t = Text(no_wrap=True)
    for cid, label in sorted(seen.items()):
        item = short_name(label)
        if cell_len(t.plain) + 2 + cell_len(item) > width:
            break  # whole names only
        t.append("█ ", style=class_color(cid, state.n_classes))
        t.append(item + "  ")
    return t


def _drops(state: DashboardState, width: int) -> Text:
    """"drops video 3  audio 7", or "drops v3 a7" where that does not fit."""
    last = state.records[-1] if state.records else {}
    drops = state.status.get("drops", last.get("drops")) or {}
    counts = {key: int(drops.get(key, 0) or 0) for key in ("video", "audio")}
    long = cell_len("drops " + "  ".join(f"{k} {n}" for k, n in counts.items())) <= width
    t = Text("drops", no_wrap=True)
    for i, (key, count) in enumerate(counts.items()):
        t.append(("  " if i else " ") + f"{key} " if long else f" {key[0]}")
        t.append(str(count), style="bold red" if count else "green")
    return t


def _total_latency(state: DashboardState, width: int) -> Text:
    """"latency 700/900 ms (p50/p95)", the parenthesis where it fits."""
    p50, p95 = state.latency.get("total", (math.nan, math.nan))
    t = Text("latency ", no_wrap=True)
    t.append("–" if math.isnan(p50) else f"{p50:.0f}/{p95:.0f} ms", style="bold")
    if cell_len(t.plain) + 10 <= width:
        t.append(" (p50/p95)", style="dim")
    return t


def _meters_panel(state: DashboardState, width: int, height: int,
                  with_latency: bool = False) -> Panel:
    """Drops first (never cut), the total latency when no latency panel shows it, then the
    audio level, the frame rate, the VGG19 frames of the last segment and the segment count,
    as rows allow."""
    st = state.status
    last = state.records[-1] if state.records else {}
    inner = width - 4
    rows = [_drops(state, inner)]
    if with_latency:
        rows.append(_total_latency(state, inner))
    audio = Text("audio ", no_wrap=True, overflow="ellipsis")
    db = st.get("audio_level_db", last.get("audio_rms_db"))
    if db is None or not math.isfinite(float(db)):
        audio.append_text(_badge("no audio", "bold white on red"))
    else:
        db = float(db)
        color = "green" if db < -20 else "yellow" if db < -6 else "red"
        audio.append_text(_bar((db + 60) / 60, max(4, inner - 15), color))
        audio.append(f" {db:5.1f} dB")
    video = Text("video ", no_wrap=True)
    fps = st.get("video_fps", last.get("video_fps"))
    if fps is None or float(fps) <= 0:
        video.append_text(_badge("no video", "bold white on red"))
    else:
        video.append(f"{float(fps):.1f} fps", style="bold")
    rows += [audio, video]
    k = last.get("frames_per_segment")
    if k:  # the frames VGG19 averaged in the last segment: fewer when it fell behind (shed)
        shed = int(last.get("frames_shed", 0) or 0)
        frames = Text("VGG19 ", no_wrap=True)
        frames.append(f"{k - shed}/{k} frames", style="bold yellow" if shed else "bold")
        if shed:
            frames.append(" (behind)", style="yellow")
        rows.append(frames)
    if st.get("segments") is not None:
        rows.append(Text(f"segments {st['segments']}", no_wrap=True))
    return Panel(Group(*rows[:max(1, height - 2)]), title="signal", title_align="left",
                 height=height, border_style="grey50")


def _footer(state: DashboardState, width: int) -> Text:
    """The bottom panels in one line, where they do not fit: drops, then the total latency."""
    t = _drops(state, width)
    latency = _total_latency(state, width - cell_len(t.plain) - 3)
    if cell_len(t.plain) + 3 + cell_len(latency.plain) <= width:
        t.append(" · ")
        t.append_text(latency)
    return t


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
    """The latest events first; a long name gives way to the times and the confidence."""
    t = Text(no_wrap=True)
    rows = max(0, height - 2)
    events = list(state.events)[-rows:][::-1] if rows else []
    if not events:
        t.append("no events yet", style="dim italic")
    for i, ev in enumerate(events):
        if i:
            t.append("\n")
        iv = ev.interval
        times = f"{iv.start:.0f}–{'now' if ev.open else f'{iv.end:.0f} s'}"
        conf = f"{iv.confidence:.2f}"
        room = width - 4 - 2 - len(times) - 1 - len(conf) - 1  # "■ " name " " times " " conf
        t.append("■ ", style=class_color(ev.class_id, state.n_classes))
        if room >= 3:
            t.append(f"{fit(short_name(iv.label), room)} ", style="bold")
        t.append(f"{times} ")
        t.append(conf, style="dim")
    return Panel(t, title="events", title_align="left", height=height, border_style="grey50")


# (now, timeline, bottom) panel heights, best first: the first that fits is drawn. A bottom of
# 0 is the one-line footer (drops, latency) instead of the bottom panels; a now of 1 is the
# label on one line without its panel.
LAYOUTS = ((8, 6, 6), (7, 5, 6), (5, 4, 6), (8, 6, 0), (5, 4, 0), (5, 0, 0), (3, 0, 0),
           (1, 0, 0))
BOTTOM_MAX = 12  # rows of the bottom panels on a tall terminal
HEADER_LINES_FROM = 8  # terminals this tall or taller get the second header line


def layout(rows: int) -> tuple[int, int, int, int]:
    """(now, timeline, bottom, footer) heights for `rows` below the header."""
    for now, timeline, bottom in LAYOUTS:
        footer = 0 if bottom else 1
        if now + timeline + bottom + footer <= rows:
            if bottom:
                bottom = min(BOTTOM_MAX, rows - now - timeline)
            return now, timeline, bottom, footer
    return 0, 0, 0, min(rows, 1)


def _bottom(state: DashboardState, width: int, height: int) -> Table:
    """Signal, latency and events side by side; on narrow terminals signal (with the total
    latency) and events."""
    grid = Table.grid()
    if width >= 70:
        widths = [width * 3 // 8, width // 4]
        widths.append(width - sum(widths))
        panels = [_meters_panel(state, widths[0], height),
                  _latency_panel(state, widths[1], height),
                  _events_panel(state, widths[2], height)]
    else:
        widths = [width // 2, width - width // 2]
        panels = [_meters_panel(state, widths[0], height, with_latency=True),
                  _events_panel(state, widths[1], height)]
    for w in widths:
        grid.add_column(width=w)
    grid.add_row(*panels)
    return grid


def render(state: DashboardState, width: int, height: int) -> RenderableType:
    """The whole screen for a terminal of `width` x `height`; never taller than `height`."""
    width, height = max(width, 20), max(height, 3)
    header_lines = 2 if height >= HEADER_LINES_FROM else 1
    parts: list[RenderableType] = [_header(state, width, header_lines)]
    now, timeline, bottom, footer = layout(height - header_lines)
    if now == 1:
        parts.append(_now_line(state, width))
    elif now and width >= 60:
        grid = Table.grid()
        right_w = min(48, max(30, width // 3 + 4))
        grid.add_column(width=width - right_w)
        grid.add_column(width=right_w)
        grid.add_row(_now_panel(state, width - right_w, now), _top5_panel(state, right_w, now))
        parts.append(grid)
    elif now:
        parts.append(_now_panel(state, width, now))
    if timeline:
        parts.append(_timeline_panel(state, width, timeline))
    if bottom:
        parts.append(_bottom(state, width, bottom))
    if footer:
        parts.append(_footer(state, width))
    return Group(*parts)
