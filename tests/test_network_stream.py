"""--stream: the network source against a real sender (PyAV writing MPEG-TS in real time over
loopback TCP, tests/net_sender.py): a normal stream labels as the replay of the same file, a
sender that stops and restarts is reconnected with the gap flagged missing, a frozen sender
times out and ends the stream with one line, every prediction kept; reconnects keep nothing of
the ended connections alive."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from stream_fakes import Records, fake_runtime

from benchmarks.mpegts_sender import Sender, listen
from model.errors import UserError
from streamer.network import NetworkProducer, StreamLost, open_options, stream_source
from streamer.replay import replay_source
from streamer.runtime import Runtime, assemble
from streamer.sources import Source
from streamer.synthetic import Script, write_media

ROOT = Path(__file__).resolve().parents[1]
BOTH = {"video", "audio"}


def ts_clip(path: Path, seconds: float, seed_script: Script | None = None) -> Path:
    """An MPEG-TS clip (MPEG-2 video, MP2 audio): what an encoder sends, and a file to replay."""
    return write_media(path, seed_script or Script.demo(seconds), fps=10, audio_rate=44100,
                       video_codec="mpeg2video", audio_codec="mp2")


def run(rt: Runtime, source: Source) -> tuple[list[dict], object]:
    rec = Records()
    summary = assemble(rt, source, [rec]).run()
    return rec.records, summary


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("net")
    return {"a": ts_clip(d / "a.ts", 4.0), "b": ts_clip(d / "b.ts", 3.0)}


@pytest.fixture(scope="module")
def rt():
    return fake_runtime()


def test_open_options_always_set_timeouts():
    assert open_options("tcp://h:1", 2.0)["rw_timeout"] == "2000000"
    assert open_options("rtsp://h/x", 2.0)["timeout"] == "2000000"
    assert "timeout" not in open_options("rtmp://h/x", 2.0)  # not a socket timeout there
    assert open_options("rtmp://h/x", 2.0)["rw_timeout"] == "2000000"


def test_stream_labels_as_the_replay_of_the_same_file(clips, rt):
    replayed, _ = run(rt, replay_source(clips["a"], fast=True))
    with Sender([clips["a"]]) as sender:
        streamed, summary = run(rt, stream_source(sender.url, delays=[]))
    assert isinstance(summary.error, StreamLost)  # the sender ended: no tries left
    assert "the sender ended the stream" in str(summary.error)
    assert len(streamed) == len(replayed) == 4
    assert summary.late == {"video": 0, "audio": 0}
    assert summary.drops == {"video": 0, "audio": 0}
    assert [r["label"] for r in streamed] == [r["label"] for r in replayed]
    assert [r["start"] for r in streamed] == [r["start"] for r in replayed]
    for s, r in zip(streamed, replayed, strict=True):
        assert s["probs"] == pytest.approx(r["probs"], abs=1e-5)
        assert s["missing"] == [] and r["missing"] == []


def test_sender_that_stops_and_restarts_is_reconnected_with_the_gap_flagged(clips, rt):
    with Sender([clips["a"], clips["b"]], gap_s=3.0) as sender:
        source = stream_source(sender.url, delays=[0.5] * 8)
        records, summary = run(rt, source)
    producer = source.producers[0]
    assert producer.reconnects == 1
    assert isinstance(summary.error, StreamLost)
    assert [r["segment"] for r in records] == list(range(len(records)))
    gap = [r["segment"] for r in records if "video" in r["missing"]]
    whole = [r["segment"] for r in records if not r["missing"]]
    # the first clip's 4 s, about 3 s without picture (the gap: flagged, nothing invented),
    # then the second clip, its time placed after the gap although its pts restarted at 0
    assert whole[:4] == [0, 1, 2, 3] and len(gap) >= 2
    assert gap == list(range(4, 4 + len(gap)))
    assert any(set(records[i]["missing"]) == BOTH for i in gap)
    assert len([s for s in whole if s > gap[-1]]) >= 2


def test_frozen_sender_times_out_and_ends_with_one_line(clips, rt):
    with Sender([clips["a"]], freeze_after=2.5) as sender:
        records, summary = run(rt, stream_source(sender.url, delays=[0.1, 0.1],
                                                 read_timeout=1.0))
    err = summary.error
    assert isinstance(err, StreamLost) and "\n" not in str(err)
    assert "after 2 tries" in str(err)
    assert len(records) >= 2  # the seconds sent before the freeze, all kept
    assert [r["segment"] for r in records] == list(range(len(records)))


def test_nothing_listening_is_a_user_error_at_open():
    srv = listen()
    port = srv.getsockname()[1]
    srv.close()  # a free port: nothing answers there
    with pytest.raises(UserError, match="cannot open stream"):
        NetworkProducer(f"tcp://127.0.0.1:{port}", open_timeout=2.0)


def test_audio_only_stream_says_so_once_and_flags_video_missing(tmp_path, rt):
    import av

    clip = tmp_path / "sound.ts"
    with av.open(str(ts_clip(tmp_path / "both.ts", 3.0))) as src, \
            av.open(str(clip), "w", format="mpegts") as out:
        track = out.add_stream_from_template(src.streams.audio[0])
        for pkt in src.demux(src.streams.audio[0]):
            if pkt.dts is not None:
                pkt.stream = track
                out.mux(pkt)
    said: list[str] = []
    with Sender([clip]) as sender:
        source = stream_source(sender.url, delays=[], say=said.append)
        records, _ = run(rt, source)
    assert len(said) == 1 and "carries no video" in said[0]
    assert source.kinds == ("audio",)
    assert len(records) == 3 and all(r["missing"] == ["video"] for r in records)


def test_cli_unreachable_stream_is_one_line_and_non_zero_exit(tmp_path):
    srv = listen()
    port = srv.getsockname()[1]
    srv.close()
    p = subprocess.run([sys.executable, "main.py", "--stream", f"tcp://127.0.0.1:{port}",
                        "--random-weights", "--headless", "--log", str(tmp_path / "l.jsonl")],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode != 0
    assert p.stderr.strip().count("\n") == 0 and "cannot open stream" in p.stderr
    assert "Traceback" not in p.stderr


def test_backlog_sent_while_loading_is_dropped_and_the_stream_starts_live(clips, rt):
    """Seconds the sender sent between the open and the start of capture (the model loading)
    are stale: dropped and counted, the stream starts at the next whole second of the sender,
    nothing missing."""
    replayed, _ = run(rt, replay_source(clips["a"], fast=True))
    with Sender([clips["a"]]) as sender:
        source = stream_source(sender.url, delays=[])
        time.sleep(2.2)  # stands for a slow model load (no thread is waited for)
        streamed, summary = run(rt, source)
    assert sum(summary.drops.values()) > 0
    assert len(streamed) == 2 and all(not r["missing"] for r in streamed)
    assert [r["label"] for r in streamed] == [r["label"] for r in replayed[2:]]


def test_reconnects_leave_nothing_of_ended_connections_alive(tmp_path, rt, monkeypatch):
    """A stream that reconnects for days keeps nothing its ended connections decoded with: after
    five connections no container and no 16 kHz resampler of them is alive (what grows in a
    long run is the C allocator's free pages, streamer.allocator)."""
    import gc
    import weakref

    import av

    from model import media

    made: list[weakref.ref] = []

    class Tracked(media.StreamResampler):
        def __init__(self, rate: int) -> None:
            super().__init__(rate)
            made.append(weakref.ref(self))

    def containers() -> int:
        return sum(type(o) is av.container.InputContainer for o in gc.get_objects())

    monkeypatch.setattr(media, "StreamResampler", Tracked)
    clip = ts_clip(tmp_path / "short.ts", 1.0)
    gc.collect()
    before = containers()
    with Sender([clip] * 5, gap_s=0.2) as sender:
        source = stream_source(sender.url, delays=[0.1] * 10)
        records, _ = run(rt, source)
    gc.collect()
    assert source.producers[0].reconnects == 4
    assert len(made) == 5  # one per connection (the clip's sound is 44.1 kHz)
    assert [r() for r in made] == [None] * 5
    assert containers() == before
    assert [r["segment"] for r in records] == list(range(len(records)))
