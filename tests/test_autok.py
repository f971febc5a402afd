"""--frames-per-segment auto: the probe, its per-machine cache, the K it gives to every record,
and an explicit K winning over it."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from model.extractors.paths import ChoiceCache
from model.extractors.realtime import frames_for_realtime
from streamer import autok, runtime
from streamer.app import run
from streamer.options import AppOptions, frames_arg, parse_args

COSTS = autok.Costs(frame_ms=150.0, segment_ms=60.0, window_ms=5.0)  # K = 4 at RTF 0.665


class Probe:
    """A measure() that counts its calls."""

    def __init__(self, costs: autok.Costs = COSTS) -> None:
        self.costs, self.calls = costs, 0

    def __call__(self) -> autok.Costs:
        self.calls += 1
        return self.costs


def test_the_probe_times_each_stage_on_inputs_of_the_live_shapes():
    seen: dict[str, list] = {"frame": [], "audio": [], "window": []}
    costs = autok.measure_costs(lambda x: seen["frame"].append(x),
                                lambda s: seen["audio"].append(s),
                                lambda a, v: seen["window"].append((a, v)), rounds=2)
    assert [len(v) for v in seen.values()] == [3, 3, 3]  # one warm-up + 2 timed each
    frame = seen["frame"][0]
    assert frame.shape == (1, 480, 640, 3) and frame.dtype == np.uint8
    assert seen["audio"][0].shape == (16000,) and seen["audio"][0].dtype == np.float32
    a, v = seen["window"][0]
    assert a.shape == (1, 10, 128) and v.shape == (1, 10, 7, 7, 512)
    assert min(costs.to_dict().values()) >= 0


def test_auto_k_follows_the_realtime_rule_and_says_why(tmp_path):
    choice = autok.auto_frames(Probe(), ChoiceCache(tmp_path, "machine-a"), "slot")
    expected = frames_for_realtime(COSTS.frame_ms, COSTS.segment_ms, COSTS.window_ms)
    assert choice.frames == expected.frames == 4
    assert choice.reason == f"auto (probe): {expected.reason}"
    assert autok.header_note(choice) == "auto, RTF 0.67"


def test_the_second_start_reads_the_cache_and_a_changed_machine_key_probes_again(tmp_path):
    probe = Probe()
    first = autok.auto_frames(probe, ChoiceCache(tmp_path, "machine-a"), "slot")
    again = autok.auto_frames(probe, ChoiceCache(tmp_path, "machine-a"), "slot")
    assert probe.calls == 1
    assert again.frames == first.frames and again.reason.startswith("auto (cached probe): ")

    slower = Probe(autok.Costs(frame_ms=300.0, segment_ms=60.0, window_ms=5.0))
    other = autok.auto_frames(slower, ChoiceCache(tmp_path, "machine-b"), "slot")
    assert slower.calls == 1 and other.frames == 2  # measured again, not machine-a's K
    assert autok.auto_frames(Probe(), ChoiceCache(tmp_path, "machine-a"), "slot").frames == 4
    another_slot = Probe()
    autok.auto_frames(another_slot, ChoiceCache(tmp_path, "machine-a"), "other paths")
    assert another_slot.calls == 1


def test_forgetting_the_probe_measures_again_and_keeps_everything_else(tmp_path):
    probe = Probe()
    autok.auto_frames(probe, ChoiceCache(tmp_path, "machine-a"), autok.probe_slot(
        "openvino", "fp32", "eager", 2))
    ChoiceCache(tmp_path, "machine-a").store("vgg19|random:seed=0|threads=2", {"path": "x"})
    ChoiceCache(tmp_path, "machine-b").store(autok.probe_slot("fp32", "fp32", "eager", 2),
                                             COSTS.to_dict())
    assert ChoiceCache(tmp_path, "machine-a").forget(autok.SLOT_PREFIX) == 1
    quieter = Probe(autok.Costs(frame_ms=100.0, segment_ms=60.0, window_ms=5.0))
    again = autok.auto_frames(quieter, ChoiceCache(tmp_path, "machine-a"), autok.probe_slot(
        "openvino", "fp32", "eager", 2))
    assert quieter.calls == 1 and again.frames == 6 and again.reason.startswith("auto (probe)")
    assert ChoiceCache(tmp_path, "machine-a").load("vgg19|random:seed=0|threads=2") == {
        "path": "x"}  # the extractor-path choice stays
    assert ChoiceCache(tmp_path, "machine-b").load(autok.probe_slot(
        "fp32", "fp32", "eager", 2)) == COSTS.to_dict()  # another machine's stays
    assert ChoiceCache(tmp_path, "machine-a").forget(autok.SLOT_PREFIX) == 1


def test_a_cache_entry_of_another_shape_is_measured_again(tmp_path):
    cache = ChoiceCache(tmp_path, "machine-a")
    cache.store("slot", {"frame_ms": 1.0})
    probe = Probe()
    assert autok.auto_frames(probe, cache, "slot").frames == 4 and probe.calls == 1


def test_frames_flag_takes_a_number_or_auto():
    assert frames_arg("auto") is None and frames_arg("7") == 7
    with pytest.raises(argparse.ArgumentTypeError, match="whole number or auto"):
        frames_arg("many")
    assert parse_args(["--synthetic"]).frames_per_segment is None  # auto is the default
    assert parse_args(["--synthetic", "--frames-per-segment", "3"]).frames_per_segment == 3
    assert parse_args(["--synthetic"]).extractor_path == "auto"


def synthetic(tmp_path, **kw) -> AppOptions:
    return AppOptions(**{"source": "synthetic", "random_weights": True, "device": "cpu",
                         "fast": True, "duration": 2.0, "backend": "eager",
                         "log": str(tmp_path / "log.jsonl"), "events": None, "headless": True,
                         **kw})


def records(tmp_path) -> list[dict]:
    return [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]


def test_auto_k_reaches_every_record_and_the_stderr_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JCA_LIVE_CACHE", str(tmp_path / "cache"))
    probe = Probe(autok.Costs(frame_ms=200.0, segment_ms=60.0, window_ms=5.0))  # K = 3
    monkeypatch.setattr(autok, "measure_costs", lambda *a, **k: probe())
    run(synthetic(tmp_path))
    err = capsys.readouterr().err
    recs = records(tmp_path)
    assert len(recs) == 2 and all(r["frames_per_segment"] == 3 for r in recs)
    assert all(r["frames"] >= 1 for r in recs)  # frames received, a field of its own
    assert "auto (probe): 3 frames per segment: 3 x 200 ms VGG19" in err
    run(synthetic(tmp_path))  # the second start: no probe
    assert probe.calls == 1 and "auto (cached probe): 3 frames" in capsys.readouterr().err


def test_explicit_k_wins_without_a_probe(tmp_path, monkeypatch, capsys):
    def no_probe(*a, **k):
        raise AssertionError("an explicit K must not probe")

    warmed = []
    real_warm_up = autok.warm_up
    monkeypatch.setattr(autok, "measure_costs", no_probe)
    monkeypatch.setattr(autok, "warm_up", lambda *stages: (warmed.append(len(stages)),
                                                          real_warm_up(*stages)))
    run(synthetic(tmp_path, frames_per_segment=2))
    assert all(r["frames_per_segment"] == 2 for r in records(tmp_path))
    assert "2 frames per segment (--frames-per-segment)" in capsys.readouterr().err
    assert warmed == []  # --fast: nothing waits on the clock
    run(synthetic(tmp_path, frames_per_segment=2, fast=False, duration=1.0))
    assert warmed == [3]  # real time: each stage called once before the stream


def test_warm_up_calls_each_stage_once_with_the_live_shapes():
    seen = []
    autok.warm_up(lambda x: seen.append(("frame", x.shape, x.dtype)),
                  lambda x: seen.append(("audio", x.shape, x.dtype)),
                  lambda a, v: seen.append(("window", a.shape, v.shape)))
    assert seen == [("frame", (1, 480, 640, 3), np.uint8), ("audio", (16000,), np.float32),
                    ("window", (1, 10, 128), (1, 10, 7, 7, 512))]


def test_a_gpu_keeps_the_recipe_without_a_probe():
    assert runtime.gpu_frames(runtime.load_model(AppOptions(source="synthetic",
                                                            random_weights=True))) == 16
