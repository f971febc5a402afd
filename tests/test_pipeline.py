"""The streaming pipeline end to end with small fake extractors and a narrow real JCANet."""

from __future__ import annotations

import _thread
import json
import math
import random
import signal
import threading

import numpy as np
import pytest
import torch
from stream_fakes import CLASSES, FakeAudio, FakeVisual, fake_extractors, tiny_model

from model.backends import live_backend
from model.calibration import calibrated_temperature, softmax
from model.data import window_for_segment
from model.errors import UserError
from model.file_features import ClipPolicy, extract_file
from model.inference import InferenceModel
from model.provenance import Provenance
from model.segments import segment_count
from streamer.detector import Detector
from streamer.intervals import intervals
from streamer.pipeline import Pipeline, PipelineOptions
from streamer.replay import DecodeError, replay_source
from streamer.runtime import Runtime, assemble
from streamer.sinks import EventLog, JsonlLog
from streamer.sources import Audio, Frame, Source, ThreadProducer
from streamer.synthetic import Script, synthetic_source, write_media

RATE = 16000


class ListSink:
    def __init__(self) -> None:
        self.records: list[dict] = []
        self.closed = False

    def on_segment(self, record: dict) -> None:
        self.records.append(record)

    def close(self) -> None:
        self.closed = True


class RecordingDetector(Detector):
    """Keeps the features pushed into the window, in order."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.inputs: list[tuple[np.ndarray, np.ndarray]] = []

    def push(self, audio, visual):
        self.inputs.append((np.array(audio), np.array(visual)))
        return super().push(audio, visual)


def make_pipeline(source, k=2, lookahead=0, sinks=(), model=None, info=None, **opts):
    model = model if model is not None else tiny_model()
    det = RecordingDetector(live_backend("eager", model), CLASSES, lookahead=lookahead)
    sink = ListSink()
    pipe = Pipeline(source, FakeVisual().frame_features, FakeAudio(), det,
                    sinks=[*sinks, sink], options=PipelineOptions(frames_per_segment=k, **opts),
                    info=info)
    return pipe, sink


_BEFORE: set[threading.Thread] = set()


def jca_threads() -> list[str]:
    """Threads alive now that were not before the test started: the ones the test's pipeline
    made. (Threads from earlier modules, e.g. a compiler's worker pool, are not its own.)"""
    return [t.name for t in threading.enumerate() if t not in _BEFORE]


@pytest.fixture(autouse=True)
def no_thread_left():
    _BEFORE.clear()
    _BEFORE.update(threading.enumerate())
    yield
    assert jca_threads() == []


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("duration,fps,rate,channels,name,codec", [
    (23.5, 30, 44100, 2, "a.mkv", "pcm_s16le"),
    (23.5, 25, 48000, 1, "b.mp4", "aac"),
    (4.4, 25, 48000, 1, "c.mkv", "pcm_s16le"),
    (5.0, 30, 44100, 2, "d.mkv", "pcm_s16le"),
])
def test_fast_replay_gives_the_documented_segments(tmp_path, duration, fps, rate, channels,
                                                   name, codec):
    path = write_media(tmp_path / name, Script.demo(duration), fps=fps, audio_rate=rate,
                       channels=channels, audio_codec=codec,
                       video_codec="libx264" if name.endswith("mp4") else "mpeg4")
    pipe, sink = make_pipeline(replay_source(path, fast=True))
    summary = pipe.run()
    assert summary.error is None
    recs = sink.records
    n = segment_count(duration)
    assert len(recs) == n == summary.segments
    assert [r["segment"] for r in recs] == list(range(n))
    for r in recs[:-1]:
        assert (r["start"], r["end"], r["partial"]) == (r["segment"], r["segment"] + 1, False)
    last = recs[-1]
    assert last["start"] == n - 1
    if duration % 1 >= 0.5:  # a trailing half second or more is a partial segment
        assert last["partial"] and last["end"] == pytest.approx(duration, abs=1 / fps + 1e-3)
    else:
        assert not last["partial"] and last["end"] == n
    for r in recs:
        assert sum(r["probs"]) == pytest.approx(1.0, abs=1e-9)
        assert r["label"] == CLASSES[r["class_id"]] and r["confidence"] == max(r["probs"])
        assert r["warmup"] == (r["segment"] < 9) and r["lookahead"] == 0
        assert r["frames"] == len([i for i in range(math.ceil(duration * fps))
                                   if r["start"] <= i / fps < r["start"] + 1])
        assert r["missing"] == []
    assert summary.drops == {"video": 0, "audio": 0}


def test_streaming_equals_offline_extraction_and_one_model_call_per_window(tmp_path):
    k, lookahead = 3, 2
    path = write_media(tmp_path / "clip.mkv", Script.demo(19.6), fps=25, audio_rate=44100,
                       channels=2)
    model = tiny_model(seed=3)
    pipe, sink = make_pipeline(replay_source(path, fast=True), k=k, lookahead=lookahead,
                               model=model)
    assert pipe.run().error is None
    streamed_a = np.stack([a for a, _ in pipe.detector.inputs])  # (20, 128)
    streamed_v = np.stack([v for _, v in pipe.detector.inputs])  # (20, 7, 7, 512)

    offline = extract_file(path, fake_extractors(k), ClipPolicy())  # two 10-s windows
    audio = offline.audio.reshape(-1, 128)  # (20, 128)
    visual = offline.visual.reshape(-1, 7, 7, 512)  # (20, 7, 7, 512)
    assert len(sink.records) == len(audio) == len(streamed_a) == 20
    np.testing.assert_allclose(streamed_a, audio, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(streamed_v, visual, rtol=1e-5, atol=1e-5)

    for rec in sink.records:
        t = rec["segment"]
        a, pos = window_for_segment(audio, t, lookahead, n_available=len(audio))
        v, _ = window_for_segment(visual, t, lookahead, n_available=len(audio))
        with torch.no_grad():
            logits = model(torch.from_numpy(a)[None], torch.from_numpy(v)[None])  # (1, 10, C)
        expected = softmax(logits[0, pos].double().numpy())
        np.testing.assert_allclose(rec["probs"], expected, atol=1e-5)
        assert rec["lookahead"] == min(lookahead, 19 - t)


def test_log_events_and_untrained_flags(tmp_path):
    log, events = tmp_path / "log.jsonl", tmp_path / "events.jsonl"
    seen_on_disk = []

    class Reader(ListSink):  # runs after the log sink: the line must already be on disk
        def on_segment(self, record):
            seen_on_disk.append(len(log.read_text().splitlines()))
            super().on_segment(record)

    reader = Reader()
    src = synthetic_source(Script.demo(12.0), fast=True)
    sinks = [JsonlLog(log), EventLog(events, min_event=1, min_gap=2, background="background",
                                     untrained=True), reader]
    pipe, sink = make_pipeline(src, sinks=sinks, provenance=Provenance.UNTRAINED)
    assert pipe.run().error is None
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert seen_on_disk == list(range(1, 13))
    assert len(lines) == 12 and all(x["untrained"] is True for x in lines)
    assert all("attention" not in x for x in lines)
    assert all(np.asarray(r["attention"]).shape == (7, 7) for r in sink.records)
    assert lines == [{k: v for k, v in r.items() if k != "attention"} for r in sink.records]
    for x in lines:
        assert set(x["latency_ms"]) == {"segment", "visual", "audio", "model", "output", "total"}
        assert x["drops"] == {"video": 0, "audio": 0}
    expected = intervals([(x["label"], x["start"], x["end"], x["confidence"]) for x in lines],
                         min_event=1, min_gap=2)
    got = [json.loads(x) for x in events.read_text().splitlines()]
    assert got == [{**iv.to_dict(), "untrained": True} for iv in expected]


def corrupt_mp4(tmp_path):
    path = write_media(tmp_path / "ok.mp4", Script.demo(6.0), fps=25, audio_rate=16000,
                       video_codec="libx264", audio_codec="aac")
    data = bytearray(path.read_bytes())
    r = random.Random(0)
    for i in range(len(data) // 2, len(data) * 3 // 4):
        data[i] = r.randrange(256)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    return bad


def test_decode_error_mid_file_stops_cleanly_with_everything_so_far_logged(tmp_path):
    log = tmp_path / "log.jsonl"
    pipe, sink = make_pipeline(replay_source(corrupt_mp4(tmp_path), fast=True),
                               sinks=[JsonlLog(log)])
    summary = pipe.run()
    assert isinstance(summary.error, DecodeError) and "decode error" in str(summary.error)
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert 2 <= len(lines) < 6
    assert [x["segment"] for x in lines] == list(range(len(lines)))
    assert len(sink.records) == len(lines) and sink.closed


@pytest.mark.parametrize("ending", ["stop", "sigint", "live-duration", "fast-duration"])
def test_every_ending_joins_threads_and_flushes(ending):
    fast = ending == "fast-duration"
    duration = 2.0 if ending.endswith("duration") else None
    src = synthetic_source(Script.demo(30.0), fast=fast)
    pipe, sink = make_pipeline(src, k=1, duration=duration)
    timer = None
    if ending == "stop":
        timer = threading.Timer(1.6, pipe.stop)
    elif ending == "sigint":
        # Ctrl+C as Python sees it (the SIGINT handler runs in the main thread), without
        # an OS signal to the test process, whose native libraries may hold handlers
        timer = threading.Timer(1.6, _thread.interrupt_main, (signal.SIGINT,))
    if timer:
        timer.start()
    summary = pipe.run()
    if timer:
        timer.join()
    assert summary.error is None and sink.closed
    assert summary.interrupted == (ending == "sigint")
    n = 2 if duration else len(sink.records)
    assert [r["segment"] for r in sink.records] == list(range(n)) and n >= 1
    assert jca_threads() == []


class StallingMic(ThreadProducer):
    """Live frames at 10 fps for 3 s; the microphone delivers its first second only."""

    kinds = ("video", "audio")

    def capture(self, queue, clock, stop):
        queue.put(Audio(0.0, np.full(RATE, 0.1, np.float32), RATE))
        for i in range(30):
            if not clock.sleep_until(i / 10, stop):
                return
            queue.put(Frame(i / 10, np.full((8, 8, 3), i, np.uint8)))


def test_live_segments_close_on_time_when_one_kind_stalls():
    src = Source("stall", [StallingMic()], live=True)
    pipe, sink = make_pipeline(src, k=1, duration=3.0)
    summary = pipe.run()
    assert summary.error is None
    assert [r["segment"] for r in sink.records] == [0, 1, 2]
    assert [r["missing"] for r in sink.records] == [[], ["audio"], ["audio"]]
    assert [r["frames"] for r in sink.records] == [10, 10, 10]


def test_real_time_replay_with_vgg19_behind_sheds_frames_and_keeps_the_segment_rule(tmp_path):
    path = write_media(tmp_path / "clip.mkv", Script.demo(3.0), fps=25, audio_rate=44100,
                       channels=2)
    fake = FakeVisual()

    def slow_features(rgb):  # 8 frames a segment at 0.2 s each: 1.6 s for each second
        threading.Event().wait(0.2 * len(rgb))
        return fake.frame_features(rgb)

    def run(fast, features):
        det = Detector(live_backend("eager", tiny_model()), CLASSES)
        sink = ListSink()
        summary = Pipeline(replay_source(path, fast=fast), features, FakeAudio(), det, [sink],
                           PipelineOptions(frames_per_segment=8)).run()
        assert summary.error is None
        assert [r["segment"] for r in sink.records] == [0, 1, 2]
        assert [r["frames_per_segment"] for r in sink.records] == [8, 8, 8]
        assert summary.shed == sum(r["frames_shed"] for r in sink.records)
        assert sink.records[-1]["drops"] == summary.drops
        return summary, sink.records

    live, records = run(False, slow_features)
    assert live.shed > 0  # frames behind the data were shed, not computed late
    assert all(0 <= r["frames_shed"] <= 8 for r in records)  # 8: a recent frame held
    fast, records = run(True, fake.frame_features)
    assert fast.shed == 0 and fast.drops == {"video": 0, "audio": 0}  # never shed off-line


class BrokenMic:
    kinds = ("audio",)

    def start(self, queue, clock):
        raise UserError("cannot open microphone 'x'")

    def stop(self):
        pass


def test_a_device_failing_to_start_closes_sinks_and_threads():
    src = Source("live", [StallingMic(), BrokenMic()], live=True)
    pipe, sink = make_pipeline(src)
    with pytest.raises(UserError, match="cannot open microphone"):
        pipe.run()
    assert sink.closed and jca_threads() == []


def test_lookahead_delays_labels_and_flushes_the_tail():
    pipe, sink = make_pipeline(synthetic_source(Script.demo(6.0), fast=True), lookahead=3)
    assert pipe.run().error is None
    assert [r["segment"] for r in sink.records] == list(range(6))
    assert [r["lookahead"] for r in sink.records] == [3, 3, 3, 2, 1, 0]


def test_status_snapshot_has_the_dashboard_fields():
    pipe, _ = make_pipeline(synthetic_source(Script.demo(3.0), fast=True),
                            info={"device": "cpu", "backend": "eager", "checkpoint": "x.pt"})
    pipe.run()
    st = pipe.status()
    for key in ("source", "device", "backend", "checkpoint", "untrained", "frames_per_segment",
                "lookahead", "audio_level_db", "video_fps", "drops", "segments", "elapsed"):
        assert key in st
    assert st["segments"] == 3 and st["video_fps"] == pytest.approx(25.0)
    assert st["audio_level_db"] < 0 and st["checkpoint"] == "x.pt"


def test_temperature_and_class_count_checks():
    logits = torch.tensor([[[2.0, 0.0, -1.0, 0.5]] * 10])  # (1, 10, 4)
    det = Detector(lambda a, v: logits, CLASSES, temperature=2.0)
    (p,) = det.push(np.zeros(128, np.float32), np.zeros((7, 7, 512), np.float32))
    z = np.array([2.0, 0.0, -1.0, 0.5]) / 2.0
    np.testing.assert_allclose(p.probs, np.exp(z) / np.exp(z).sum(), rtol=1e-12)
    assert p.label == "beep" and p.attention is None
    assert calibrated_temperature({"calibration": {"temperature": 1.5}}) == 1.5
    assert calibrated_temperature({}) == 1.0
    with pytest.raises(UserError, match="temperature"):
        calibrated_temperature({"calibration": {"temperature": 0}})
    det = Detector(lambda a, v: logits, CLASSES[:3])
    with pytest.raises(UserError, match="4 classes"):
        det.push(np.zeros(128, np.float32), np.zeros((7, 7, 512), np.float32))


def fake_runtime(k: int = 2, temperature: float = 1.0) -> Runtime:
    model = InferenceModel(tiny_model(), CLASSES, None, temperature, 0.0, Provenance.UNTRAINED,
                           "tiny")
    return Runtime(model, FakeVisual().frame_features, FakeAudio(),
                   live_backend("eager", model.net), "cpu", k, Provenance.UNTRAINED)


def test_one_runtime_assembles_many_streams():
    """Loaded once, assembled with any source and sinks: two streams of one runtime label
    exactly as a pipeline built by hand, and say so in their status and records."""
    rt = fake_runtime(temperature=1.3)
    runs = []
    for lookahead in (0, 2):
        sink = ListSink()
        pipe = assemble(rt, synthetic_source(Script.demo(4.0), fast=True), [sink],
                        lookahead=lookahead)
        assert pipe.run().error is None
        assert pipe.status()["backend"] == "eager" and pipe.status()["checkpoint"] == "tiny"
        runs.append(sink.records)
    by_hand, ref = make_pipeline(synthetic_source(Script.demo(4.0), fast=True), k=2)
    by_hand.detector.temperature = 1.3
    by_hand.run()
    assert [r["segment"] for r in runs[1]] == [0, 1, 2, 3]
    assert [r["lookahead"] for r in runs[1]] == [2, 2, 1, 0]
    assert all(r["untrained"] is True and r["random_features"] is True for r in runs[0])
    for mine, want in zip(runs[0], ref.records, strict=True):
        np.testing.assert_allclose(mine["probs"], want["probs"], rtol=0, atol=1e-12)


class NanAudio(FakeAudio):
    """NaN features for the segments numbered in `bad` (a broken extractor or input)."""

    def __init__(self, bad: set[int]) -> None:
        self.bad, self.calls = bad, 0

    def __call__(self, samples):
        out = super().__call__(samples)
        self.calls += 1
        return np.full_like(out, np.nan) if self.calls - 1 in self.bad else out


class OverflowOnce:
    """The backend, but its call number `at` gives an infinite logit (an fp16 overflow)."""

    def __init__(self, backend, at: int) -> None:
        self.backend, self.at, self.calls = backend, at, 0

    def __call__(self, audio, visual):
        out = self.backend(audio, visual)
        logits = torch.as_tensor(out[0] if isinstance(out, tuple) else out).clone()
        if self.calls == self.at:
            logits[..., 0] = math.inf
        self.calls += 1
        return logits


def strict_json(line: str) -> dict:
    def refuse(name: str) -> None:
        raise AssertionError(f"non-standard JSON constant {name} in {line[:80]}")

    return json.loads(line, parse_constant=refuse)


def test_non_finite_features_and_probabilities_are_flagged_segments(tmp_path):
    """A NaN feature (segment 2) and an overflowing model call (segment 4) are each a flagged,
    counted segment: strict JSON in the log, background for the lost probabilities, and the
    window not poisoned for the segments after them."""
    log, events = tmp_path / "log.jsonl", tmp_path / "events.jsonl"
    det = RecordingDetector(OverflowOnce(live_backend("eager", tiny_model()), at=4), CLASSES)
    sink = ListSink()
    summary = Pipeline(synthetic_source(Script.demo(6.0), fast=True), FakeVisual().frame_features,
                       NanAudio({2}), det,
                       [JsonlLog(log), EventLog(events, min_event=0.0), sink],
                       PipelineOptions(frames_per_segment=1)).run()
    assert summary.error is None
    recs = [strict_json(x) for x in log.read_text().splitlines()]
    [strict_json(x) for x in events.read_text().splitlines()]
    assert [r["nonfinite"] for r in recs] == [False, False, True, False, True, False]
    for r in recs:
        assert all(math.isfinite(p) for p in r["probs"]) and math.isclose(sum(r["probs"]), 1)
    assert (recs[4]["label"], recs[4]["class_id"]) == ("background", 3)
    assert recs[4]["probs"] == [0.25] * 4 and recs[4]["confidence"] == 0.25
    audio_2, visual_2 = det.inputs[2]
    assert not audio_2.any() and np.isfinite(visual_2).all()  # NaN entered the window as 0
    assert summary.nonfinite == 2 and "2 non-finite segments" in summary.line()
    assert summary.to_dict()["nonfinite"] == 2


def test_log_lines_are_strict_json():
    from streamer.records import log_line

    assert strict_json(log_line({"segment": 0, "probs": np.array([0.5, 0.5])}))["probs"] == [
        0.5, 0.5]
    for bad in (math.nan, math.inf):
        with pytest.raises(ValueError, match="JSON compliant"):
            log_line({"segment": 0, "confidence": bad})
