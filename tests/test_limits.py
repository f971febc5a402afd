"""model.limits: each shared option's range, checked in one place, as one line naming the flag,
its range and the value; the CLIs and AppOptions all answer with it."""

from __future__ import annotations

import pytest
import torch

from model.errors import UserError
from model.limits import (
    check_choice,
    check_frames_per_segment,
    check_lookahead,
    check_positive,
    resolve_device,
)
from streamer.options import AppOptions


def test_ranges_accept_their_ends_and_refuse_past_them():
    assert [check_lookahead(k) for k in (0, 9)] == [0, 9]
    for k in (-1, 10):
        with pytest.raises(UserError, match=rf"^--lookahead must be in 0\.\.9, got {k}$"):
            check_lookahead(k)
    assert check_frames_per_segment(1) == 1 and check_frames_per_segment(16) == 16
    with pytest.raises(UserError, match=r"^--frames-per-segment must be >= 1, got 0$"):
        check_frames_per_segment(0)
    assert check_positive("--duration", None) is None and check_positive("--duration", 0.5)
    with pytest.raises(UserError, match=r"^--seconds must be positive, got -1"):
        check_positive("--seconds", -1.0)
    with pytest.raises(UserError, match=r"^unknown --backend 'fast': use one of a, b$"):
        check_choice("--backend", "fast", ("a", "b"))


def test_devices():
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
    for bad in ("tpu", "gpu0", ""):
        with pytest.raises(UserError, match=r"unknown --device .*auto, cpu or cuda\[:N\]"):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match=r"no CUDA GPU .*use --device cpu"):
            resolve_device("cuda:0")


@pytest.mark.parametrize(("fields", "message"), [
    ({"lookahead": 10}, "--lookahead must be in 0..9"),
    ({"frames_per_segment": 0}, "--frames-per-segment must be >= 1"),
    ({"duration": 0.0}, "--duration must be positive"),
    ({"backend": "fast"}, "unknown --backend 'fast'"),
    ({"precision": "int8"}, "unknown --precision 'int8'"),
    ({"checkpoint": "a.pt", "random_weights": True}, "exclude each other"),
    ({"source": "camera", "fast": True}, "--fast only applies"),
    ({"source": "webcam"}, "unknown source 'webcam'"),
])
def test_app_options_are_checked_when_made(fields, message):
    with pytest.raises(UserError, match=message):
        AppOptions(**{"source": "synthetic", **fields})
