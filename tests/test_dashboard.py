"""Dashboard: the pure render through a recording console, the live sink, plain and JSON sinks."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from rich.cells import cell_len
from rich.console import Console

from model.provenance import Provenance
from streamer.bigtext import FONT, big_text_lines
from streamer.console import JsonSink, PlainSink, header_line, make_console_sink, plain_line
from streamer.dashboard import Dashboard
from streamer.dashboard_render import render
from streamer.dashboard_state import DashboardModel
from streamer.intervals import intervals
from streamer.palette import class_color

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["Church bell", "Bark", "Helicopter", "Acoustic guitar", "Train horn", "Cat", "Goat",
         "background"]
BG = len(NAMES) - 1
# class per second: background, Bark x3, background, Helicopter x2 (then the current one)
PLAN = [BG, BG, 1, 1, 1, BG, BG, 2, 2]
HEADER = {"source": "synthetic", "device": "cpu", "backend": "eager", "checkpoint": "ck.pt",
          "untrained": True, "frames_per_segment": 4, "lookahead": 1, "class_names": NAMES}
STATUS = {"audio_level_db": -23.5, "video_fps": 24.8, "drops": {"video": 3, "audio": 7},
          "segments": 42, "elapsed": 43.0}
# the current segment's probabilities, ranked: Helicopter, Bark, Train horn, Cat, Church bell,
# then Goat (6th, must not be shown) and background
CURRENT = [0.08, 0.21, 0.40, 0.01, 0.15, 0.10, 0.03, 0.02]


def record(seg: int, cid: int, probs: list[float] | None = None, **extra) -> dict:
    if probs is None:
        probs = [0.02] * len(NAMES)
        probs[cid] = 1.0 - 0.02 * (len(NAMES) - 1)
    return {"segment": seg, "start": float(seg), "end": float(seg + 1), "label": NAMES[cid],
            "class_id": cid, "confidence": float(probs[cid]), "probs": probs, "lookahead": 1,
            "warmup": seg == 0,
            "latency_ms": {"visual": 40.0 + seg, "audio": 10.0 + 2 * seg, "total": 60.0 + 3 * seg},
            **extra}


def make_state(untrained: bool = True, random_features: bool = False):
    model = DashboardModel({**HEADER, "untrained": untrained, "random_features": random_features})
    records = [record(s, c) for s, c in enumerate(PLAN)]
    records.append(record(len(PLAN), 2, CURRENT, attention=np.eye(7).tolist()))
    for r in records:
        model.add(r)
    return model.snapshot(STATUS), records


def draw(state, width: int, height: int) -> tuple[list[str], Console]:
    console = Console(record=True, file=io.StringIO(), width=width, height=height,
                      color_system="truecolor")
    console.print(render(state, width, height))
    return console.export_text().splitlines(), console


def percentile(values: list[float], q: float) -> float:
    v = sorted(values)
    pos = (len(v) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_render_shows_label_probs_timeline_counters(size):
    width, height = size
    state, records = make_state()
    lines, _ = draw(state, width, height)
    text = "\n".join(lines)
    assert len(lines) <= height
    assert all(cell_len(line) <= width for line in lines)

    assert "UNTRAINED" in lines[0]
    assert "synthetic" in text and "ck.pt" in text
    # the current label, big and plain, with its confidence
    assert any("Helicopter" in line and "40%" not in line for line in lines)
    assert "40%" in text
    big = big_text_lines("Helicopter")
    assert any(big[0] in line for line in lines)

    # top 5 in order, each with its probability; the 6th (Goat) nowhere
    ranked = np.argsort(-np.asarray(CURRENT), kind="stable")
    rows = []
    for cid in ranked[:5]:
        hits = [i for i, line in enumerate(lines)
                if NAMES[cid][:10] in line and f"{CURRENT[cid]:.2f}" in line]
        assert hits, f"{NAMES[cid]} {CURRENT[cid]:.2f} not shown"
        rows.append(hits[0])
    assert rows == sorted(rows)
    assert "Goat" not in text

    # timeline: one cell per second, in the class colour, events bracketed
    title = next(i for i, line in enumerate(lines) if "last 60 s" in line)
    cells = lines[title + 1]
    cell_w = 2 if width - 4 >= 120 else 1
    assert cells.count("█") == len(records) * cell_w
    marks = lines[title + 2]
    start = cells.index("█")
    bark = marks[start + 2 * cell_w: start + 5 * cell_w]
    assert bark.startswith("[") and bark.endswith("]") and "━" in bark
    heli = marks[start + 7 * cell_w: start + 10 * cell_w]
    assert heli.startswith("[") and "]" not in heli  # still open
    assert marks[start: start + 2 * cell_w].strip() == ""  # background: no mark

    # counters, meters and latency percentiles
    assert "-23.5 dB" in text and "24.8 fps" in text
    assert "video 3" in text and "audio 7" in text and "segments 42" in text
    totals = [r["latency_ms"]["total"] for r in records]
    total_line = next(line for line in lines if "total" in line and "│" in line)
    assert f"{percentile(totals, 0.5):.0f}" in total_line
    assert f"{percentile(totals, 0.95):.0f}" in total_line
    assert "Bark 2–5 s" in text  # the closed event in the events list


@pytest.mark.parametrize("shed", [0, 1])
def test_meters_say_how_many_frames_vgg19_averaged(shed):
    model = DashboardModel(HEADER)
    model.add(record(0, 1, frames_per_segment=4, frames_shed=shed))
    lines, _ = draw(model.snapshot(STATUS), 160, 48)
    text = "\n".join(lines)
    assert f"VGG19 {4 - shed}/4 frames" in text
    assert ("(behind)" in text) == bool(shed)


def test_timeline_cells_coloured_by_class():
    state, records = make_state()
    console = Console(file=io.StringIO(), width=80, height=24, color_system="truecolor")
    lines = console.render_lines(render(state, 80, 24), console.options, pad=False)
    texts = ["".join(seg.text for seg in line) for line in lines]
    row = next(i for i, t in enumerate(texts) if "last 60 s" in t) + 1
    colours = [seg.style.color.triplet.hex for seg in lines[row]
               for ch in seg.text if ch == "█"]
    expected = [class_color(r["class_id"], len(NAMES)) for r in records]
    assert colours == expected
    assert class_color(BG, len(NAMES)) == "#808080"
    assert len(set(expected)) == 3


def test_random_features_is_a_yellow_badge_not_untrained():
    state, _ = make_state(untrained=False, random_features=True)
    lines, _ = draw(state, 120, 30)
    assert "RANDOM FEATURES" in lines[0] and "UNTRAINED" not in "\n".join(lines)
    assert "meaningless" not in "\n".join(lines)
    console = Console(file=io.StringIO(), width=120, height=30, color_system="truecolor")
    top = console.render_lines(render(state, 120, 30), console.options, pad=False)[0]
    badge = next(seg for seg in top if seg.text == " RANDOM FEATURES ")
    assert badge.style.bgcolor.name == "yellow"
    info = {**HEADER, "untrained": False, "random_features": True}
    assert "RANDOM FEATURES" in header_line(info) and "UNTRAINED" not in header_line(info)
    assert "meaningless" not in header_line(info)
    assert plain_line(record(3, 1, untrained=False, random_features=True)).endswith(
        "[RANDOM FEATURES]")
    # both set: untrained wins
    both = {**info, "untrained": True}
    assert "UNTRAINED" in header_line(both) and "RANDOM FEATURES" not in header_line(both)
    assert plain_line(record(3, 1, untrained=True, random_features=True)).endswith("[UNTRAINED]")
    state, _ = make_state(untrained=True, random_features=True)
    lines, _ = draw(state, 120, 30)
    assert "UNTRAINED" in lines[0] and "RANDOM FEATURES" not in "\n".join(lines)


def test_render_small_and_empty_terminals():
    state, _ = make_state(untrained=False)
    for width, height in [(40, 10), (30, 5), (20, 3), (200, 60)]:
        lines, _ = draw(state, width, height)
        assert len(lines) <= max(height, 3)
        assert "UNTRAINED" not in "\n".join(lines)
        text = "\n".join(lines)
        assert "Helicopter" in text  # the current label and the drops stay on any screen
        assert re.search(r"drops (video|v)\s?3\s+(audio|a)\s?7", text), text
    empty = DashboardModel(HEADER).snapshot({})
    lines, _ = draw(empty, 80, 24)
    assert any("waiting for the first segment" in line for line in lines)


LONG_NAMES = ["Male speech, man speaking", "Race car, auto racing",
              "Fixed-wing aircraft, airplane", "Acoustic guitar", "background"]
LONG_PLAN = [4] * 3 + [0] * 6 + [4] * 3 + [1] * 8 + [4] * 2 + [2] * 8  # seconds 600..629
LONG_EVENTS = ["603–609 s", "612–620 s", "622–now"]  # as the events list writes them
LATENCY = {"segment": 5.0, "visual": 400.0, "audio": 100.0, "model": 30.0, "output": 0.1,
           "total": 700.0}


def long_names_state():
    """Half a minute at stream time 600 s with long AVE class names, three events (the last
    one open) and drops; the UNTRAINED reason as the now panel's subtitle."""
    model = DashboardModel({**HEADER, "class_names": LONG_NAMES})
    for s, cid in enumerate(LONG_PLAN):
        probs = [0.02] * len(LONG_NAMES)
        probs[cid] = 0.92
        model.add({"segment": s, "start": 600.0 + s, "end": 601.0 + s,
                   "label": LONG_NAMES[cid], "class_id": cid, "confidence": 0.92,
                   "probs": probs, "lookahead": 1, "warmup": False, "latency_ms": LATENCY,
                   "attention": np.eye(7).tolist()})
    return model.snapshot(STATUS)


def cut_words(text: str) -> list[str]:
    """Every word shortened with "…" on the screen, as it stands before the "…"."""
    return re.findall(r"([^\s│╭╮╰╯─]*)…", text)


@pytest.mark.parametrize("size", [(60, 20), (80, 24), (120, 40), (200, 50)])
def test_each_terminal_size_keeps_label_drops_latency_and_whole_words(size):
    """What matters most stays at every size: the current label, the drop counters, the total
    latency, the event times; a name that does not fit loses whole words, never half of one;
    the timeline says how many columns one second takes."""
    width, height = size
    lines, _ = draw(long_names_state(), width, height)
    text = "\n".join(lines)
    assert len(lines) <= height and all(cell_len(line) <= width for line in lines)
    assert "UNTRAINED" in lines[0]
    assert "Fixed-wing aircraft" in text and "92%" in text
    assert "drops video 3  audio 7" in text
    assert re.search(r"latency 700/700 ms|total\s+700\s+700", text), text
    for when in LONG_EVENTS:
        assert when in text, when
    words = {w.strip(",:") for name in LONG_NAMES for w in name.split()}
    words |= set(Provenance.UNTRAINED.reason.replace(":", "").split())
    for cut in cut_words(text):
        assert cut.strip(",:") in words, f"{cut!r}… is half a word"
    cell = 2 if width - 4 >= 120 else 1
    assert f"({'█' * cell} = 1 s, [━] = event)" in text
    if height >= 24:  # room for the big label and the full latency table
        assert big_text_lines("Fixed-wing")[0] in text  # its first words, big
        assert width < 70 or "total" in text


def test_timeline_gap_and_window():
    model = DashboardModel(HEADER)
    for s in range(100):
        if s != 95:  # a missing segment shows as a gap
            model.add(record(s, 1 if s % 10 < 3 else BG))
    state = model.snapshot({})
    assert len(state.records) == 60 and state.records[-1]["segment"] == 99
    lines, _ = draw(state, 80, 24)
    title = next(i for i, line in enumerate(lines) if "last 60 s" in line)
    cells = lines[title + 1][2:62]
    assert cells[55] == "·" and cells.count("█") == 59


def shown(model: DashboardModel) -> list[tuple[str, float, float, bool]]:
    return [(e.interval.label, e.interval.start, e.interval.end, e.open)
            for e in model.snapshot().events]


def test_events_derived_from_records():
    model = DashboardModel(HEADER)
    for s, c in enumerate([BG, 1, 1, BG, 2, 3, 3]):
        model.add(record(s, c, confidence=None) | {"confidence": 0.5 + 0.1 * s})
    assert shown(model) == [("Bark", 1.0, 3.0, False), ("Helicopter", 4.0, 5.0, False),
                            ("Acoustic guitar", 5.0, 7.0, True)]
    ev = model.snapshot().events
    assert ev[0].interval.confidence == pytest.approx((0.6 + 0.7) / 2)
    assert [e.class_id for e in ev] == [1, 2, 3]
    # intervals from the pipeline replace the derived ones, but for the one still open
    model.add_event({"label": "Bark", "start": 1.0, "end": 4.0, "confidence": 0.9})
    assert [(label, end, is_open) for label, _, end, is_open in shown(model)] == [
        ("Bark", 4.0, False), ("Acoustic guitar", 7.0, True)]
    model.add(record(7, BG))
    assert [label for label, *_ in shown(model)] == ["Bark"]


def test_events_follow_the_event_log_rule():
    """At every point the dashboard lists what streamer.intervals would give for the stream so
    far, were it to end there (short gaps bridged, one-second blips kept)."""
    rng = np.random.default_rng(3)
    plan = [int(c) for c in rng.choice([BG, BG, BG, 1, 1, 2], size=40)]
    model = DashboardModel(HEADER)
    segments = []
    for s, c in enumerate(plan):
        model.add(record(s, c))
        segments.append((NAMES[c], float(s), float(s + 1), 0.86))
        want = [(iv.label, iv.start, iv.end) for iv in intervals(segments)]
        assert [(label, start, end) for label, start, end, _ in shown(model)] == want, s
        assert [e.open for e in model.snapshot().events] == [
            end == s + 1 for _, _, end in want], s


def test_big_text_decodes_back_to_the_font():
    half = {" ": (0, 0), "▀": (1, 0), "▄": (0, 1), "█": (1, 1)}
    for ch, glyph in FONT.items():
        rows = big_text_lines(ch)
        pixels = [[half[c][k] for c in line] for line in rows for k in (0, 1)]
        want = [[int(p == "#") for p in row] for row in glyph.split()] + [[0, 0, 0]]
        assert pixels == want, ch


def test_dashboard_sink_never_waits_for_the_screen():
    calls = {"n": 0}
    entered, release = threading.Event(), threading.Event()

    def status():
        calls["n"] += 1
        if calls["n"] > 1:  # the refresh thread stalls inside status()
            entered.set()
            release.wait(10)
        return STATUS

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100, height=30,
                      color_system="truecolor")
    dash = Dashboard(HEADER, status, console=console, refresh_per_second=20)
    assert entered.wait(10)
    done = threading.Event()

    def feed():
        for s in range(200):
            dash.on_segment(record(s, 1))
        done.set()

    threading.Thread(target=feed, daemon=True).start()
    assert done.wait(10), "on_segment waited for the screen"
    release.set()
    dash.close()
    dash.close()  # idempotent
    assert "Bark" in out.getvalue()
    assert dash.model.snapshot().records[-1]["segment"] == 199


def test_dashboard_survives_a_failing_status():
    def status():
        raise RuntimeError("pipeline gone")

    out = io.StringIO()
    dash = Dashboard(HEADER, status, console=Console(file=out, force_terminal=True, width=90,
                                                     height=26))
    dash.on_segment(record(0, 2))
    dash.close()
    assert "Helicopter" in out.getvalue() and "dashboard error" not in out.getvalue()


def test_plain_and_json_sinks():
    out = io.StringIO()
    sink = make_console_sink("auto", HEADER, None, stream=out)  # StringIO is not a terminal
    assert isinstance(sink, PlainSink)
    sink.on_segment(record(0, 1, missing=["audio"]))
    sink.close()
    head, line = out.getvalue().splitlines()
    assert "UNTRAINED" in head and "synthetic" in head
    assert "Bark" in line and "0.86" in line and "no audio" in line and "warm-up" in line

    out = io.StringIO()
    sink = make_console_sink("json", HEADER, None, stream=out)
    assert isinstance(sink, JsonSink)
    recs = [record(s, c, attention=np.ones((7, 7))) for s, c in enumerate([1, BG])]
    recs[0]["confidence"] = np.float32(0.5)
    recs[0]["drops"] = {"video": np.int64(2), "audio": 0}
    for r in recs:
        sink.on_segment(r)
    sink.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    for line, r in zip(lines, recs, strict=True):
        got = json.loads(line)
        assert "attention" not in got
        assert set(got) == set(r) - {"attention"}
        assert got["probs"] == r["probs"] and got["segment"] == r["segment"]
    assert json.loads(lines[0])["drops"] == {"video": 2, "audio": 0}
    with pytest.raises(ValueError):
        make_console_sink("fancy", HEADER)


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_demo_in_a_real_terminal_advances(tmp_path):
    session = f"jcadash{time.monotonic_ns()}"
    cmd = (f"cd {ROOT} && {sys.executable} -m streamer.dashboard --demo --duration 12 "
           f"--speed 3; sleep 5")
    _tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "32", cmd)
    try:
        seen = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            screen = _tmux("capture-pane", "-p", "-t", session)
            segs = [int(m) for m in re.findall(r"│ segment (\d+) ", screen)]
            if segs and (not seen or segs[0] != seen[-1]):
                seen.append(segs[0])
            if seen and seen[-1] >= 11:
                break
            time.sleep(0.25)
        assert len(seen) >= 3 and seen == sorted(seen), seen
        assert "UNTRAINED" in screen and "last 60 s" in screen
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None or not (ROOT / "main.py").is_file(),
                    reason="needs tmux and main.py")
def test_main_dashboard_in_tmux_advances_each_second(tmp_path):
    session = f"jcamain{time.monotonic_ns()}"
    # explicit K and extractor path: the dashboard is under test here, not this machine's probe
    cmd = (f"cd {ROOT} && {sys.executable} main.py --synthetic --random-weights --duration 6 "
           "--backend eager --frames-per-segment 1 --extractor-path fp32 "
           f"--log {tmp_path / 'p.jsonl'} --events {tmp_path / 'e.jsonl'}; echo RUN-ENDED; "
           "sleep 60")
    _tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "40", cmd)
    try:
        seen: list[int] = []
        deadline = time.monotonic() + 300  # a hang guard only: the run ends by itself
        screen = ""
        while (time.monotonic() < deadline and (not seen or seen[-1] < 5)
               and "RUN-ENDED" not in screen):
            screen = _tmux("capture-pane", "-p", "-t", session)
            segs = [int(m) for m in re.findall(r"│ segment (\d+) ", screen)]
            if segs and (not seen or segs[0] != seen[-1]):
                seen.append(segs[0])
            time.sleep(0.3)
        # every second's label appears, in order (a slow machine may skip a capture)
        assert seen and seen[-1] == 5 and seen == sorted(seen) and len(seen) >= 3, seen
        assert "UNTRAINED" in screen and "top 5" in screen
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
