"""The dashboard of several streams: a compact row per stream above the full dashboard
(streamer.dashboard_render) of the selected one, drawn by rich's Live at 4 Hz; the sinks only
append to one DashboardModel per stream.

    dash = MultiDashboard(["stream:rtsp://a", "replay:b.mp4"], class_names)
    dash.attach(0, pipe0.status); dash.on_segment(record)    # record["stream"] says whose
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from streamer.dashboard_render import render
from streamer.dashboard_state import DashboardModel, DashboardState
from streamer.palette import class_color

ROW_TIMELINE = 30  # seconds shown per stream row, one cell each, newest right
ROWS_MAX_SHARE = 0.5  # the rows take at most this share of the screen's height
Status = Callable[[], Mapping[str, Any]]


def stream_row(i: int, name: str, state: DashboardState, selected: bool) -> list[Text]:
    """Stream i's cells: number, source, label, confidence, timeline, drops, latency p95."""
    last = state.records[-1] if state.records else {}
    n = state.n_classes
    cells = Text()
    for r in state.records[-ROW_TIMELINE:]:
        cells.append("█", style=class_color(int(r.get("class_id", -1)), n))
    drops = state.status.get("drops") or {}
    total = state.latency.get("total", (0.0, 0.0))
    mark = ">" if selected else " "
    return [Text(f"{mark}{i}"), Text(name, overflow="ellipsis", no_wrap=True),
            Text(str(last.get("label", "-")), style=class_color(int(last.get("class_id", -1)), n)
                 if last else ""),
            Text(f"{float(last.get('confidence', 0.0)):.2f}" if last else "-"),
            cells, Text(str(sum(int(v) for v in drops.values()))),
            Text(f"{total[1]:.0f} ms" if state.latency else "-")]


def render_streams(names: Sequence[str], states: Sequence[DashboardState], selected: int,
                   width: int, height: int) -> RenderableType:
    """The rows, then the selected stream's full dashboard in the height left."""
    table = Table(expand=True, box=None, padding=(0, 1), show_edge=False)
    for col, kw in (("#", {"width": 3}), ("source", {"ratio": 2}), ("label", {"ratio": 2}),
                    ("conf", {"width": 5}), ("last 30 s", {"width": ROW_TIMELINE}),
                    ("drops", {"width": 6}), ("p95", {"width": 8})):
        table.add_column(col, no_wrap=True, **kw)
    shown = max(1, min(len(names), int(height * ROWS_MAX_SHARE) - 1))
    for i in range(shown):
        table.add_row(*stream_row(i, names[i], states[i], i == selected))
    left = height - shown - 1
    if left < 3:
        return table
    return Group(table, render(states[selected], width, left))


class MultiDashboard:
    def __init__(self, names: Sequence[str], class_names: Sequence[str],
                 stream: TextIO | None = None, refresh_per_second: float = 4.0) -> None:
        self.names = list(names)
        self.models = [DashboardModel({"source": n}, class_names) for n in names]
        self._status: dict[int, Status] = {}
        self.selected = 0
        self.console = Console(file=stream) if stream is not None else Console()
        self._closed = False
        self._live = Live(console=self.console, refresh_per_second=refresh_per_second,
                          get_renderable=self._renderable, redirect_stdout=True,
                          redirect_stderr=True)
        self._live.start()

    def attach(self, i: int, status: Status) -> None:
        self._status[i] = status

    def select(self, i: int) -> None:
        if 0 <= i < len(self.names):
            self.selected = i

    def _state(self, i: int) -> DashboardState:
        try:
            status = self._status[i]() if i in self._status else {}
        except Exception:  # a failing status must not take the screen down
            status = {}
        return self.models[i].snapshot(status)

    def _renderable(self) -> RenderableType:
        try:
            width, height = self.console.size
            states = [self._state(i) for i in range(len(self.names))]
            return render_streams(self.names, states, self.selected, width, height - 1)
        except Exception as e:
            return Text(f"dashboard error: {e!r}", style="red")

    def on_segment(self, record: Mapping[str, Any]) -> None:
        self.models[int(record.get("stream", 0))].add(record)

    def on_event(self, interval: Mapping[str, Any]) -> None:
        self.models[int(interval.get("stream", 0))].add_event(interval)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._live.stop()
