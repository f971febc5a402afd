"""Live terminal dashboard: a prediction sink drawn by rich's Live at 4 Hz.

The pipeline hands every prediction record to a sink (`on_segment(record)`, `close()`); the
dashboard only appends it to a `DashboardModel` under a lock, and rich's refresh thread draws
`render(model.snapshot(status), width, height)`, so drawing never blocks or slows the pipeline.
State: streamer.dashboard_state; the pure screen: streamer.dashboard_render; choosing between
the dashboard, plain lines and JSON: streamer.console.

    python -m streamer.dashboard --demo --duration 15   # fake records, to see what it looks like
"""

from __future__ import annotations

import argparse
import contextlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from rich.console import Console, RenderableType
from rich.live import Live
from rich.text import Text

from model.classes import BACKGROUND
from streamer.console import MODES, make_console_sink
from streamer.dashboard_render import render
from streamer.dashboard_state import DashboardModel

DEMO_CLASSES = ("Church bell", "Male speech, man speaking", "Bark", "Helicopter",
                "Acoustic guitar", "Train horn", BACKGROUND)


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
        """Stop drawing and show the cursor again; a terminal already gone (SIGHUP) is no
        error: there is nothing left to draw on."""
        if not self._closed:
            self._closed = True
            with contextlib.suppress(OSError):
                self._live.stop()


# Demo: fake records at a chosen pace, to look at the dashboard without a model.

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
