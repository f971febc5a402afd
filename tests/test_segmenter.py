"""Segmenter, window and interval rules against independent references."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from stream_fakes import FakeAudio, FakeVisual

from model.data import window_for_segment
from model.extractors.sampling import select_frames
from model.items import Audio, Frame
from model.segments import FrameSelector, Segmenter, segment_count, visual_features
from streamer.intervals import intervals
from streamer.segmenter import LiveSegmenter
from streamer.synthetic import Script, synthetic_source
from streamer.window import Window

RATE = 16000


def index_features(rgb: np.ndarray) -> np.ndarray:
    """A frame's feature is its first pixel value everywhere: frames are told apart exactly."""
    return np.broadcast_to(rgb[:, :1, :1, :1].astype(np.float32), (len(rgb), 7, 7, 512)).copy()


def frame(t: float, value: int) -> Frame:
    return Frame(t, np.full((2, 2, 3), value, np.uint8))


def run_all(seg: Segmenter, items, live: bool = False) -> list:
    """Every item pushed; live: VGG19 on the waiting frames after each item, as the pipeline
    does when no item waits (else at close)."""
    out = []
    for it in items:
        out += seg.push(it)
        while live and seg.compute_next():
            pass
    return out + seg.finish()


@pytest.mark.parametrize("k", [1, 2, 3, 5, 16])
def test_frame_selector_equals_select_frames(k):
    rng = np.random.default_rng(k)
    for _ in range(200):
        times = np.sort(rng.random(rng.integers(1, 20)))
        sel = FrameSelector(k)
        taken = [sel.offer(float(t)) for t in times]
        taken[-1] += sel.left  # targets no frame reached take the last frame
        expected = np.bincount(select_frames(list(times), k), minlength=len(times))
        assert taken == expected.tolist()


@pytest.mark.parametrize("fps,k", [(30, 1), (25, 4), (7, 16), (2.5, 3)])
def test_visual_feature_is_mean_of_selected_frames(fps, k):
    n = math.ceil(4.5 * fps)
    times = [i / fps for i in range(n)]
    items = [frame(t, i % 251) for i, t in enumerate(times)]
    audio = Audio(0.0, np.zeros(int(4.5 * RATE), np.float32), RATE)
    segs = run_all(Segmenter(index_features, k), [*items, audio])
    assert [s.index for s in segs] == list(range(segment_count(4.5)))
    for s in segs:
        idx = [i for i, t in enumerate(times) if s.index <= t < s.index + 1]
        sel = select_frames([times[i] - s.index for i in idx], k)
        expected = np.mean([items[idx[j]].rgb[0, 0, 0] for j in sel])
        np.testing.assert_allclose(s.visual, expected, rtol=1e-6)
        assert s.frames == len(idx)


@pytest.mark.parametrize("fps,k", [(30, 1), (25, 4), (7, 16), (2.5, 3)])
def test_when_vgg19_runs_does_not_change_the_features(fps, k):
    """On arrival, at close, or later in one batch (offline): the same segments and features,
    here with a two-second hole in the picture and a stream that starts at 0.4 s."""
    times = [0.4 + i / fps for i in range(math.ceil(6 * fps)) if not 2 <= 0.4 + i / fps < 4]
    items = [frame(t, i % 251) for i, t in enumerate(times)]
    items.append(Audio(0.0, np.random.default_rng(k).uniform(-1, 1, 7 * RATE).astype(np.float32),
                       RATE))
    live = run_all(Segmenter(index_features, k), items, live=True)
    at_close = run_all(Segmenter(index_features, k), items)
    offline = run_all(Segmenter(None, k), items)
    assert [s.index for s in offline] == [s.index for s in live] == list(range(len(live)))
    assert len(live) >= 6
    assert all(s.visual is None for s in offline)
    batched = visual_features(offline, index_features)
    for a, b, c, v in zip(live, at_close, offline, batched, strict=True):
        np.testing.assert_array_equal(a.visual, b.visual)
        np.testing.assert_allclose(v, a.visual, rtol=1e-6)
        np.testing.assert_array_equal(c.audio, a.audio)
        assert a.missing == c.missing


def test_finish_pads_to_a_minimum_count_with_the_last_frame_and_silence():
    items = [frame(i / 4, i) for i in range(13)]  # 4 fps to 3.0 s: the video ends at 3.25 s
    items.append(Audio(0.0, np.ones(int(3.25 * RATE), np.float32), RATE))
    assert len(run_all(Segmenter(index_features, 1), items)) == segment_count(3.25) == 3
    seg = Segmenter(index_features, 1)
    out = [s for it in items for s in seg.push(it)] + seg.finish(min_count=10)
    assert [s.index for s in out] == list(range(10))
    assert out[3].partial and out[3].end == 3.25 and out[3].missing == ()
    assert out[3].audio[:RATE // 4].all() and not out[3].audio[RATE // 4:].any()
    np.testing.assert_allclose(out[3].visual, 12.0)  # its one frame, at 3.0 s
    for s in out[4:]:  # past the data: the last frame held, silence
        assert s.missing == ("video", "audio") and not s.partial and not s.audio.any()
        np.testing.assert_allclose(s.visual, 12.0)


def test_each_selected_frame_is_computed_once_between_items_and_push_computes_none():
    fake = FakeVisual()
    seg = Segmenter(fake.frame_features, k=4)
    for i in range(10):  # 10 fps: targets 0 .25 .5 .75 -> frames at 0 .3 .5 .8
        seg.push(frame(i / 10, i))
    assert fake.calls == 0 and seg.pending
    while seg.compute_next():
        pass
    assert fake.calls == 4 and not seg.pending  # each selected frame once, before the close
    seg.push(Audio(0.0, np.zeros(RATE + 10, np.float32), RATE))
    closed = seg.push(frame(1.0, 0))  # completes segment 0, opens segment 1
    assert [s.index for s in closed] == [0]
    assert fake.calls == 4  # closed without any VGG19: not even the new frame's (segment 1's)
    assert seg.pending and seg.compute_next() and fake.calls == 5


def video_only(fps: float, seconds: float) -> list[Frame]:
    return [frame(i / fps, i % 251) for i in range(round(fps * seconds))]


def weighted_mean(values: dict[float, int], counts: dict[float, int]) -> float:
    """(sum count x value) / k in float64: a segment's feature from its picks."""
    total = sum(counts.values())
    return sum(np.float64(values[t]) * n for t, n in counts.items()) / total


def test_a_live_segment_closes_with_the_frames_computed_and_a_late_first_holds_the_newest():
    # 25 fps, k = 4: targets 0 .25 .5 .75 -> frames at i + 0, .28, .52, .76; max_lag 0.5
    fps, k = 25.0, 4
    items = video_only(fps, 3.0)
    value = {round(f.t, 6): int(f.rgb[0, 0, 0]) for f in items}
    computed = []

    def features(rgb):
        computed.extend(rgb[:, 0, 0, 0].tolist())
        return index_features(rgb)

    seg = Segmenter(features, k, kinds=("video",), max_lag=0.5)
    closed = []

    def push(lo, hi, keep_up):
        for f in items[round(lo * fps):round(hi * fps)]:
            closed.extend(seg.push(f))
            while keep_up and seg.compute_next():
                pass

    push(0.0, 0.56, keep_up=True)  # 0, .28, .52 computed in time
    push(0.56, 1.04, keep_up=False)  # .76 not yet when 1.0 closes segment 0: shed to .52
    assert [c.index for c in closed] == [0] and closed[0].shed == 1
    np.testing.assert_allclose(closed[0].visual, weighted_mean(
        value, {0.0: 1, 0.28: 1, 0.52: 2}), rtol=1e-6)
    assert value[0.76] not in computed and value[1.0] not in computed
    push(1.04, 1.64, keep_up=False)  # 1.0 is now .6 s behind: it holds the newest computed
    while seg.compute_next():
        pass
    push(1.64, 2.04, keep_up=True)
    assert [c.index for c in closed] == [0, 1] and closed[1].shed == 1
    np.testing.assert_allclose(closed[1].visual, weighted_mean(
        value, {0.52: 1, 1.28: 1, 1.52: 1, 1.76: 1}), rtol=1e-6)
    assert value[1.0] not in computed


def test_with_nothing_computed_in_time_every_segment_holds_the_streams_first_frame():
    fps, k = 10.0, 4
    items = video_only(fps, 3.0)
    first = int(items[0].rgb[0, 0, 0])
    starved = Segmenter(index_features, k, kinds=("video",), max_lag=0.0)
    out = [c for it in items for c in starved.push(it)] + starved.finish()
    assert [c.shed for c in out] == [k - 1, k, k]
    for c in out:
        np.testing.assert_allclose(c.visual, first)
    unhurried = Segmenter(index_features, k, kinds=("video",))  # no max_lag: nothing shed
    value = {round(f.t, 6): int(f.rgb[0, 0, 0]) for f in items}
    for a in [c for it in items for c in unhurried.push(it)] + unhurried.finish():
        assert a.shed == 0
        idx = [round(a.index + j / 10, 6) for j in (0, 3, 5, 8)]  # select_frames at 10 fps
        np.testing.assert_allclose(a.visual, np.mean([value[t] for t in idx]), rtol=1e-6)


def test_a_frame_computed_in_time_is_never_shed():
    # the live pattern on a machine that keeps up: VGG19 between items, so no pick waits
    items = video_only(25.0, 3.0)
    live = run_all(Segmenter(index_features, 4, kinds=("video",), max_lag=0.0), items,
                   live=True)
    reference = run_all(Segmenter(index_features, 4, kinds=("video",)), items)
    assert [c.shed for c in live] == [0] * len(reference)
    for a, b in zip(live, reference, strict=True):
        np.testing.assert_array_equal(a.visual, b.visual)


@pytest.mark.parametrize("duration,expected", [(23.5, 24), (23.4, 23), (23.6, 24), (20.0, 20),
                                               (0.4, 0), (0.5, 1), (1.4995, 2), (3.0, 3)])
def test_segment_count_rule(duration, expected):
    assert segment_count(duration) == expected


def test_audio_is_placed_by_timestamp_with_offset_gaps_and_late_samples():
    total = 3 * RATE
    signal = np.random.default_rng(0).uniform(-1, 1, total).astype(np.float32)
    offset = 0.25
    seg = Segmenter(index_features, 1, kinds=("audio",), av_offset=offset)
    # blocks of odd sizes stamped in stream time (audio lags the picture by `offset`),
    # with a hole of 1,000 samples at 1.5 s
    bounds = [0, 700, 5000, 24000, 25000, 41000, 47999, total]
    out = []
    for a, b in itertools.pairwise(bounds):
        if a == 24000:
            continue
        out += seg.push(Audio(a / RATE + offset, signal[a:b], RATE))
    out += seg.finish()
    reference = signal.copy()
    reference[24000:25000] = 0.0
    assert len(out) == 3
    for s in out:
        np.testing.assert_array_equal(s.audio, reference[s.index * RATE:(s.index + 1) * RATE])
    # samples for a segment already closed are dropped and counted
    seg2 = Segmenter(index_features, 1, kinds=("audio",))
    seg2.push(Audio(0.0, signal[:RATE + 10], RATE))
    seg2.push(Audio(0.5, signal[:100], RATE))
    assert seg2.late["audio"] == 100


def test_chunk_size_invariance_of_synthetic_source():
    script = Script.demo(5.5, size=(24, 32), fps=12)
    results = []
    for block in (256, 1024, 4000):
        fake = FakeVisual()
        seg = Segmenter(fake.frame_features, k=3)
        with synthetic_source(script, fast=True, block=block) as src:
            segs = run_all(seg, src)
        audio = FakeAudio()
        results.append([(s.visual, audio(s.audio), s.audio) for s in segs])
    assert len(results[0]) == 6
    for other in results[1:]:
        assert len(other) == len(results[0])
        for (v0, a0, s0), (v1, a1, s1) in zip(results[0], other, strict=True):
            np.testing.assert_array_equal(v0, v1)
            np.testing.assert_array_equal(a0, a1)
            np.testing.assert_array_equal(s0, s1)


def test_synthetic_audio_matches_script_samples():
    script = Script.demo(2.5)
    with synthetic_source(script, fast=True, block=333) as src:
        segs = run_all(Segmenter(index_features, 1), src)
    full = script.samples(0, 2 * RATE)
    np.testing.assert_array_equal(np.concatenate([s.audio for s in segs[:2]]), full)
    # the partial last segment: the script's 0.5 s then silence
    np.testing.assert_array_equal(segs[2].audio[:RATE // 2], script.samples(2 * RATE, RATE // 2))
    assert not segs[2].audio[RATE // 2:].any() and segs[2].partial
    assert segs[2].end == pytest.approx(script.frame_count() / script.fps)  # the video's end


def test_missing_video_repeats_previous_visual_and_missing_audio_is_silence():
    seg = Segmenter(index_features, 2)
    items = [frame(0.3, 10), frame(0.8, 20), frame(2.2, 30), frame(2.8, 40), frame(3.5, 50),
             Audio(0.0, np.ones(RATE, np.float32), RATE),
             Audio(2.0, np.ones(int(1.9 * RATE), np.float32), RATE)]
    out = run_all(seg, items)
    by = {s.index: s for s in out}
    assert by[1].missing == ("video", "audio")
    np.testing.assert_allclose(by[0].visual, 15.0)  # frames 10 and 20, one target each
    np.testing.assert_allclose(by[1].visual, 20.0)  # holds the last frame before it
    assert not by[1].audio.any()
    assert by[2].missing == () and by[3].missing == ()


def test_segments_before_the_first_frame_take_the_first_frame():
    items = [Audio(0.0, np.ones(3 * RATE, np.float32), RATE), frame(1.2, 7), frame(2.5, 9)]
    out = run_all(Segmenter(index_features, 2), items)
    assert out[0].missing == ("video",)
    np.testing.assert_allclose(out[0].visual, 7.0)
    np.testing.assert_allclose(out[1].visual, 7.0)
    no_video = run_all(Segmenter(index_features, 2), items[:1])
    assert len(no_video) == 3 and not any(s.visual.any() for s in no_video)


def test_live_tick_closes_after_grace_and_drops_late_frames():
    seg = LiveSegmenter(index_features, 1, grace=0.5)
    seg.push(frame(0.2, 1))
    seg.push(Audio(0.0, np.zeros(8000, np.float32), RATE))  # audio stalls at 0.5 s
    assert seg.tick(0.0, 5.0) == []  # both kinds silent: maybe the end, nothing is closed
    seg.push(frame(1.1, 1))  # the picture goes on
    assert seg.tick(0.0, 1.4) == []
    assert seg.tick(0.0, 1.5, drained={"video"}) == []  # audio is queued: behind, not stalled
    closed = seg.tick(0.0, 1.5, drained={"video", "audio"})
    assert [s.index for s in closed] == [0]
    seg.push(frame(0.9, 2))  # out of order and its segment is closed: late
    assert seg.late["video"] == 1


@pytest.mark.parametrize("pad", ["repeat-first", "zeros"])
def test_window_equals_offline_window_for_segment(pad):
    rng = np.random.default_rng(1)
    n = 14
    audio = rng.standard_normal((n, 128)).astype(np.float32)
    visual = rng.standard_normal((n, 7, 7, 512)).astype(np.float32)
    w = Window(pad=pad)
    for i in range(n):
        w.push(audio[i], visual[i])
        a, v = w.arrays()
        ea, pos = window_for_segment(audio, i, 0, pad=pad, n_available=i + 1)
        ev, _ = window_for_segment(visual, i, 0, pad=pad, n_available=i + 1)
        assert pos == 9
        np.testing.assert_array_equal(a, ea)
        np.testing.assert_array_equal(v, ev)
        assert (w.padded > 0) == (i < 9)


def reference_intervals(labels, min_event, min_gap, bg="background"):
    """Offline scan over 1-s segments: an event of label L starting at i extends to every later
    L reached across fewer than `min_gap` other segments; runs shorter than `min_event` are
    dropped; what an interval does not cover is scanned again."""
    out, i, n = [], 0, len(labels)
    while i < n:
        if labels[i] == bg:
            i += 1
            continue
        end = i + 1
        while True:
            nxt = next((p for p in range(end, n) if labels[p] == labels[i]), None)
            if nxt is None or (nxt > end and nxt - end >= min_gap):
                break
            end = nxt + 1
        if end - i >= min_event:
            out.append((labels[i], float(i), float(end)))
        i = end
    return out


def test_intervals_match_offline_rule():
    rng = np.random.default_rng(0)
    names = ["a", "b", "background"]
    for trial in range(300):
        n = int(rng.integers(1, 25))
        labels = [names[int(x)] for x in rng.choice(3, n, p=[0.35, 0.15, 0.5])]
        min_event = float(rng.integers(1, 4))
        min_gap = float(rng.integers(0, 4))
        segs = [(lab, float(i), float(i + 1), 0.5) for i, lab in enumerate(labels)]
        got = [(iv.label, iv.start, iv.end) for iv in intervals(segs, min_event, min_gap)]
        assert got == reference_intervals(labels, min_event, min_gap), (trial, labels)


def test_interval_confidence_and_threshold():
    segs = [("a", 0.0, 1.0, 0.9), ("background", 1.0, 2.0, 0.8), ("a", 2.0, 3.0, 0.6),
            ("a", 3.0, 4.0, 0.3)]
    (iv,) = intervals(segs, min_event=1, min_gap=2)
    assert (iv.start, iv.end) == (0.0, 4.0)
    assert math.isclose(iv.confidence, (0.9 + 0.6 + 0.3) / 3)
    (iv,) = intervals(segs, min_event=1, min_gap=2, threshold=0.5)  # 0.3 counts as background
    assert (iv.start, iv.end) == (0.0, 3.0)
