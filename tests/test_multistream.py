"""Several sources in one process (streamer.multi): N streams, each with its own clock,
segmenter, window and detector, on one runtime whose networks batch across streams. One log
and one event file; every record and interval says its `stream` and `source`; a stream that
fails does not stop the others; with one source the records are as they always were."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from stream_fakes import CLASSES, Records, fake_runtime, wait_for_first_record

from benchmarks.mpegts_sender import Sender
from model.errors import UserError
from streamer.app import run
from streamer.multi import run_many
from streamer.options import AppOptions, parse_args
from streamer.replay import replay_source
from streamer.runtime import Runtime, assemble
from streamer.synthetic import Script, write_media

BOTH = {"video", "audio"}
ROOT = Path(__file__).resolve().parents[1]


def ts_clip(path: Path, script: Script) -> Path:
    return write_media(path, script, fps=10, audio_rate=44100, video_codec="mpeg2video",
                       audio_codec="mp2")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("multi")
    return {"a": ts_clip(d / "a.ts", Script.demo(4.0)),
            "b": ts_clip(d / "b.ts", Script.demo(3.0, size=(72, 96)))}  # another frame size


@pytest.fixture(scope="module")
def rt():
    return fake_runtime()


def alone(rt: Runtime, path: Path) -> list[dict]:
    rec = Records()
    assemble(rt, replay_source(path, fast=True), [rec]).run()
    return rec.records


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def by_stream(records: list[dict], i: int) -> list[dict]:
    return [r for r in records if r["stream"] == i]


def assert_labels_as(records: list[dict], reference: list[dict]) -> None:
    assert [r["segment"] for r in records] == [r["segment"] for r in reference]
    assert [r["label"] for r in records] == [r["label"] for r in reference]
    for r, ref in zip(records, reference, strict=True):
        assert r["probs"] == pytest.approx(ref["probs"], abs=1e-5)


def test_flags_keep_command_line_order_and_one_source_is_unchanged():
    opts = parse_args(["--stream", "tcp://h:1", "--camera", "0", "--replay", "a.mp4",
                       "--stream", "udp://h:2"])
    assert opts.sources == (("stream", "tcp://h:1"), ("camera", "0"), ("replay", "a.mp4"),
                            ("stream", "udp://h:2"))
    one = parse_args(["--stream", "tcp://h:1"])
    assert (one.source, one.stream, one.sources) == ("stream", "tcp://h:1", ())
    with pytest.raises(UserError, match="--synthetic is a source of its own"):
        parse_args(["--synthetic", "--replay", "a.mp4"])
    with pytest.raises(UserError, match="--fast only applies"):
        parse_args(["--replay", "a.mp4", "--stream", "tcp://h:1", "--fast"])


def test_two_replays_share_one_runtime_one_log_tagged_by_stream(tmp_path, clips, rt, capsys):
    log, events = tmp_path / "log.jsonl", tmp_path / "events.jsonl"
    opts = AppOptions(source="replay", sources=(("replay", str(clips["a"])),
                                                ("replay", str(clips["b"]))),
                      fast=True, log=str(log), events=str(events), headless=True, min_event=0,
                      min_gap=0)
    summaries = run_many(opts, runtime=rt)
    records = read(log)
    assert [s.segments for s in summaries] == [4, 3] and len(records) == 7
    for i, name in ((0, "replay:a.ts"), (1, "replay:b.ts")):
        mine = by_stream(records, i)
        assert {r["source"] for r in mine} == {name}
        assert_labels_as(mine, alone(rt, clips["ab"[i]]))
    intervals = read(events)
    assert intervals and {iv["stream"] for iv in intervals} <= {0, 1}
    assert all(iv["source"] in ("replay:a.ts", "replay:b.ts") for iv in intervals)
    out, err = capsys.readouterr()
    printed = [json.loads(line) for line in out.splitlines()]  # headless: records as they come
    assert sorted((r["stream"], r["segment"]) for r in printed) == \
        sorted((r["stream"], r["segment"]) for r in records)
    assert "stream 0 (replay:a.ts): done: 4 segments" in err
    assert "stream 1 (replay:b.ts): done: 3 segments" in err


@pytest.fixture
def short_backoff(monkeypatch):
    """One reconnect try after 0.1 s (the product's schedule is the camera's, 15.5 s)."""
    from streamer import network

    monkeypatch.setattr(network, "backoff_delays", lambda: [0.1])


def test_a_failed_stream_does_not_stop_the_others(tmp_path, clips, rt, capsys, short_backoff):
    log = tmp_path / "log.jsonl"
    with Sender([clips["a"]], freeze_after=1.5) as sender:
        opts = AppOptions(source="stream", sources=(("stream", sender.url),
                                                    ("replay", str(clips["a"]))),
                          log=str(log), events=None, headless=True)
        with pytest.raises(UserError, match=r"^stream 0 \(stream:tcp.*did not come back"):
            run_many(opts, runtime=rt)  # the frozen sender times out, nothing answers after
    records = read(log)
    assert len(by_stream(records, 1)) == 4  # the replay ran to its end
    assert 1 <= len(by_stream(records, 0)) <= 2  # the frozen stream's seconds, kept
    err = capsys.readouterr().err
    assert "stream 1 (replay:a.ts): done: 4 segments" in err


def test_two_network_streams_at_once_label_as_their_replays(tmp_path, clips, rt, short_backoff):
    log = tmp_path / "log.jsonl"
    with Sender([clips["a"]]) as sa, Sender([clips["b"]]) as sb:
        opts = AppOptions(source="stream", sources=(("stream", sa.url), ("stream", sb.url)),
                          log=str(log), events=None, headless=True)
        with pytest.raises(UserError, match="did not come back"):
            run_many(opts, runtime=rt)  # both senders end and do not come back
    records = read(log)
    for i, clip in ((0, clips["a"]), (1, clips["b"])):
        mine = by_stream(records, i)
        assert all(not r["missing"] for r in mine)
        assert_labels_as(mine, alone(rt, clip))


def test_one_source_records_have_no_stream_fields(tmp_path):
    clip = write_media(tmp_path / "c.mkv", Script.demo(2.0), fps=10)
    log = tmp_path / "log.jsonl"
    run(AppOptions(source="replay", replay=str(clip), random_weights=True, device="cpu",
                   frames_per_segment=1, fast=True, log=str(log), events=None, headless=True))
    records = read(log)
    assert len(records) == 2
    assert all("stream" not in r and "source" not in r for r in records)


def test_dashboard_rows_one_per_stream_above_the_selected_panel():
    from rich.console import Console

    from streamer.dashboard_state import DashboardModel
    from streamer.multi_dashboard import render_streams

    names = ["stream:tcp://a:1", "replay:b.mp4"]
    models = [DashboardModel({"source": n}, CLASSES) for n in names]
    for seg in range(3):
        for i, label in enumerate(("beep", "hum")):
            c = CLASSES.index(label)
            probs = [0.1] * len(CLASSES)
            probs[c] = 0.7
            models[i].add({"segment": seg, "start": seg, "end": seg + 1, "label": label,
                           "class_id": c, "confidence": 0.7, "probs": probs,
                           "latency_ms": {"total": 20.0 + i}, "stream": i})
    states = [m.snapshot({"drops": {"video": i, "audio": 0}}) for i, m in enumerate(models)]
    console = Console(width=120, record=True, color_system=None)
    console.print(render_streams(names, states, 1, 120, 40))
    text = console.export_text()
    rows = [line for line in text.splitlines() if "stream:tcp://a:1" in line or
            "replay:b.mp4" in line]
    assert len(rows) >= 2
    assert "beep" in rows[0] and "0.70" in rows[0] and rows[1].lstrip().startswith(">1")
    small = Console(width=120, record=True, color_system=None)
    small.print(render_streams(names, states, 0, 120, 4))  # too small for the panel: rows only
    assert len(small.export_text().splitlines()) <= 4


def test_sigterm_stops_every_stream_each_flushed(tmp_path):
    """A real SIGTERM to a real main.py with two real-time replays (never to the test process
    itself): each stream stops, each is flushed and says so, the status is 143."""
    import os
    import signal
    import subprocess
    import sys

    clip = ts_clip(tmp_path / "long.ts", Script.demo(12.0, size=(72, 96)))
    log = tmp_path / "log.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "main.py", "--replay", str(clip), "--replay", str(clip),
         "--random-weights", "--backend", "eager", "--frames-per-segment", "1",
         "--extractor-path", "fp32", "--headless", "--events", "", "--log", str(log)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "JCA_LIVE_CACHE": str(tmp_path / "cache")})
    try:
        wait_for_first_record(proc, log)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    records = read(log)
    assert {r["stream"] for r in records} == {0, 1}
    for i in (0, 1):
        mine = by_stream(records, i)
        assert [r["segment"] for r in mine] == list(range(len(mine))) and len(mine) < 12
    assert err.count("stopped (SIGTERM)") == 2, err
    assert "Traceback" not in err


def test_headless_reader_gone_is_said_once():
    import io

    from streamer.multi_console import make_multi_console

    calls: list[int] = []
    out = io.StringIO()
    console = make_multi_console(True, ["a", "b"], CLASSES, stream=out,
                                 on_reader_gone=lambda: calls.append(1))
    console.on_segment({"segment": 0, "label": "hum", "stream": 1})
    assert json.loads(out.getvalue())["stream"] == 1
    out.close()  # the reader went away
    console.on_segment({"segment": 1, "label": "hum", "stream": 0})
    console.on_segment({"segment": 2, "label": "hum", "stream": 0})
    assert calls == [1]
