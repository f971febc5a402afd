"""What the pictures cost: dashboard refresh, sink append, overlay drawing and encoding, plot.

    python -m benchmarks.display            # prints a markdown table
"""

from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from streamer.dashboard import DEMO_CLASSES, demo_records
from streamer.dashboard_render import render
from streamer.dashboard_state import DashboardModel
from streamer.overlay import OverlayOptions, OverlayWriter, draw_overlay
from streamer.plot import plot_timeline
from streamer.records import log_line, read_log


def per_call_ms(fn, repeat: int) -> float:
    fn()  # warm
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) * 1000 / repeat


def main() -> None:
    rows = []
    records = demo_records(120)
    status = {"audio_level_db": -20.0, "video_fps": 25.0, "drops": {"video": 0, "audio": 0},
              "segments": 120, "elapsed": 120.0}
    model = DashboardModel({"source": "bench", "untrained": True,
                            "class_names": list(DEMO_CLASSES)})
    for r in records:
        model.add(r)

    for w, h in [(80, 24), (160, 48)]:
        console = Console(file=io.StringIO(), width=w, height=h, force_terminal=True,
                          color_system="truecolor")

        def refresh(console=console, w=w, h=h) -> None:
            # what one Live refresh does: snapshot, build, render to terminal text
            console.file = io.StringIO()
            console.print(render(model.snapshot(status), w, h))

        ms = per_call_ms(refresh, 40)
        rows.append((f"dashboard refresh {w}x{h} (snapshot+render+print)", f"{ms:.1f} ms",
                     f"{ms * 4 / 10:.1f}% of one core's time at 4 Hz"))

    r = records[-1]
    n = 20000
    t0 = time.perf_counter()
    for _ in range(n):
        model.add(r)
    us = (time.perf_counter() - t0) * 1e6 / n
    rows.append(("Dashboard.on_segment (append under lock)", f"{us:.2f} us", ""))

    rgb = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    ms = per_call_ms(lambda: draw_overlay(rgb, r), 50)
    rows.append(("draw_overlay 640x480 (heat map + banner)", f"{ms:.1f} ms/frame", ""))

    with tempfile.TemporaryDirectory() as d:
        frames = 250
        yy, xx = np.mgrid[0:480, 0:640]
        base = np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8)
        recs = demo_records(frames // 25 + 1)
        writer = OverlayWriter(Path(d) / "o.mp4", 25, (640, 480), 16000,
                               options=OverlayOptions(threaded=False))
        t0 = time.perf_counter()
        for i in range(frames):
            writer.add_frame(i / 25, np.roll(base, i, axis=1))
            if i % 25 == 0:
                writer.add_audio(i / 25, np.zeros(16000, np.float32))
            if i % 25 == 24:
                writer.on_segment(recs[i // 25])
        writer.close()
        s = time.perf_counter() - t0
        rows.append(("OverlayWriter 640x480 25 fps, libx264 veryfast, 10 s",
                     f"{frames / s:.0f} fps", f"{s:.1f} s wall for 10 s of stream"))

        log = Path(d) / "log.jsonl"
        log.write_text("\n".join(log_line(x) for x in demo_records(600)) + "\n")
        t0 = time.perf_counter()
        fig = plot_timeline(read_log(log), None, "bench")
        fig.savefig(Path(d) / "t.png")
        rows.append(("plot 600-segment log to PNG", f"{(time.perf_counter() - t0):.2f} s", ""))

    print("| what | measured | note |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
