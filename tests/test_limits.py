"""model.limits: each shared option's range, checked in one place, as one line naming the flag,
its range and the value; the CLIs and AppOptions all answer with it."""

from __future__ import annotations

import math

import pytest
import torch

from model.errors import UserError
from model.limits import (
    MAX_SEED,
    check_av_offset,
    check_choice,
    check_device_name,
    check_frames_per_segment,
    check_lookahead,
    check_non_negative,
    check_positive,
    check_range,
    check_seed,
    resolve_device,
)
from streamer.options import AppOptions, parse_args


def test_ranges_accept_their_ends_and_refuse_past_them():
    assert [check_lookahead(k) for k in (0, 9)] == [0, 9]
    for k in (-1, 10):
        with pytest.raises(UserError, match=rf"^--lookahead must be in 0\.\.9, got {k}$"):
            check_lookahead(k)
    assert [check_frames_per_segment(k) for k in (1, 16, 64)] == [1, 16, 64]
    for k in (0, 65):
        with pytest.raises(UserError, match=rf"^--frames-per-segment must be in 1\.\.64, got {k}$"):
            check_frames_per_segment(k)
    assert check_seed(0) == 0 and check_seed(MAX_SEED) == MAX_SEED
    for seed in (-1, MAX_SEED + 1):
        with pytest.raises(UserError, match=rf"^--seed must be in 0\.\.{MAX_SEED}, got {seed}$"):
            check_seed(seed)
    assert check_range("--limit", 1, 1) == 1
    with pytest.raises(UserError, match=r"^--limit must be >= 1, got 0$"):
        check_range("--limit", 0, 1)
    with pytest.raises(UserError, match=r"^unknown --backend 'fast': use one of a, b$"):
        check_choice("--backend", "fast", ("a", "b"))


def test_seconds_are_finite_and_in_range():
    assert check_positive("--duration", None) is None and check_positive("--duration", 0.5)
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(UserError, match=r"^--seconds must be a finite number of seconds "
                                             rf"> 0, got {bad}$"):
            check_positive("--seconds", bad)
    assert check_non_negative("--min-gap", 0.0) == 0.0
    for bad in (-0.5, math.nan, math.inf):
        with pytest.raises(UserError, match=r"^--min-gap must be a finite number of seconds "
                                             r">= 0, got"):
            check_non_negative("--min-gap", bad)
    assert [check_av_offset(s) for s in (None, -10.0, 0.0, 0.25, 10.0)] == [
        None, -10.0, 0.0, 0.25, 10.0]
    for bad in (math.nan, math.inf, -math.inf, 10.001, -1e9, 1e9):
        with pytest.raises(UserError, match=r"^--av-offset must be a finite number of seconds "
                                             rf"within ±10, got {bad}$"):
            check_av_offset(bad)


def test_devices():
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
    for bad in ("tpu", "gpu0", "", "cuda:x", "meta"):
        with pytest.raises(UserError, match=r"unknown --device .*auto, cpu or cuda\[:N\]"):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match=r"no CUDA GPU .*use --device cpu"):
            resolve_device("cuda:0")
    assert check_device_name("cuda:1") == "cuda:1"  # by name: this machine need not have it
    with pytest.raises(UserError, match=r"unknown --device 'gpu': use cpu or cuda\[:N\]"):
        check_device_name("gpu")


@pytest.mark.parametrize(("fields", "message"), [
    ({"lookahead": 10}, "--lookahead must be in 0..9"),
    ({"frames_per_segment": 0}, "--frames-per-segment must be in 1..64"),
    ({"frames_per_segment": 65}, "--frames-per-segment must be in 1..64"),
    ({"duration": 0.0}, "--duration must be a finite number of seconds > 0"),
    ({"duration": math.inf}, "--duration must be a finite number of seconds > 0"),
    ({"av_offset": math.nan}, "--av-offset must be a finite number of seconds within ±10"),
    ({"av_offset": 1e9}, "--av-offset must be a finite number of seconds within ±10"),
    ({"min_event": -1.0}, "--min-event must be a finite number of seconds >= 0"),
    ({"min_gap": math.nan}, "--min-gap must be a finite number of seconds >= 0"),
    ({"seed": -1}, "--seed must be in 0.."),
    ({"backend": "fast"}, "unknown --backend 'fast'"),
    ({"precision": "int8"}, "unknown --precision 'int8'"),
    ({"checkpoint": "a.pt", "random_weights": True}, "exclude each other"),
    ({"source": "camera", "fast": True}, "--fast only applies"),
    ({"source": "webcam"}, "unknown source 'webcam'"),
])
def test_app_options_are_checked_when_made(fields, message):
    with pytest.raises(UserError, match=message):
        AppOptions(**{"source": "synthetic", **fields})


@pytest.mark.parametrize(("flags", "message"), [
    (["--av-offset", "nan"], r"^--av-offset must be a finite number of seconds within ±10, "
                             r"got nan$"),
    (["--av-offset", "1e9"], r"^--av-offset must be .* within ±10, got 1000000000\.0$"),
    (["--frames-per-segment", "0"], r"^--frames-per-segment must be in 1\.\.64, got 0$"),
    (["--duration", "inf"], r"^--duration must be a finite number of seconds > 0, got inf$"),
    (["--min-gap", "-1"], r"^--min-gap must be a finite number of seconds >= 0, got -1\.0$"),
    (["--seed", "-3"], r"^--seed must be in 0\.\."),
])
def test_main_flags_are_refused_where_the_options_are_built(flags, message):
    """main.py's flags: a bad number is one line when the options are made, before any model
    or thread (`--av-offset nan` used to end in a traceback on the compute thread)."""
    with pytest.raises(UserError, match=message):
        parse_args(["--synthetic", "--random-weights", *flags])


@pytest.mark.parametrize(("flags", "message"), [
    (["--limit", "0"], r"^--limit must be >= 1, got 0$"),
    (["--seed", "-1"], r"^--seed must be in 0\.\."),
    (["--frames-per-segment", "65"], r"^--frames-per-segment must be in 1\.\.64, got 65$"),
    (["--batch-size", "0"], r"^--batch-size must be >= 1, got 0$"),
    (["--threads", "0"], r"^--threads must be >= 1, got 0$"),
    (["--device", "gpu"], r"^unknown --device 'gpu'"),
])
def test_extract_flags_are_checked_by_the_same_rules(flags, message, tmp_path):
    from model.extract import main

    with pytest.raises(UserError, match=message):
        main(["--videos", str(tmp_path), "--annotations", str(tmp_path / "a.csv"), "--out",
              str(tmp_path / "out"), "--random-weights", *flags])


@pytest.mark.parametrize(("entry", "flags", "message"), [
    ("benchmarks.latency:parse_args", ["--synthetic", "--repeat", "0"],
     r"^--repeat must be >= 1, got 0$"),
    ("benchmarks.latency:parse_args", ["--synthetic", "--streams", "2", "0"],
     r"^--streams must be >= 1, got 0$"),
    ("calibrate.sync:main", ["--replay", "clip.mp4", "--min-events", "0"],
     r"^--min-events must be >= 1, got 0$"),
])
def test_benchmark_and_calibration_flags_are_checked_by_the_same_rules(entry, flags, message):
    import importlib

    module, function = entry.split(":")
    with pytest.raises(UserError, match=message):
        getattr(importlib.import_module(module), function)(flags)
