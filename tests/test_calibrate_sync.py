"""A/V offset calibration: the signal maths against NumPy float64 references, offsets injected
into generated files recovered within one frame through the streamer's replay source, --save
read back by the streamer, and one-line errors for recordings that allow no measurement."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from calibrate import avsync, sync
from calibrate.pattern import FlashClick
from model.errors import UserError
from streamer import offsets as store
from streamer.app import open_source, resolve_av_offset
from streamer.options import AppOptions
from streamer.synthetic import write_media

ROOT = Path(__file__).resolve().parents[1]
FPS = 25.0


@pytest.fixture(autouse=True)
def config_file(tmp_path, monkeypatch):
    """Never touch the user's own calibration file."""
    path = tmp_path / "cfg" / "calibration.json"
    monkeypatch.setenv(store.ENV, str(path))
    return path


def test_onset_envelope_matches_a_float64_loop():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(16000 * 2) * 0.01).astype(np.float32)
    x[4992:5100] += 0.5  # from the start of hop 312
    x[20011:20400] += 0.8 * np.sign(rng.standard_normal(389)).astype(np.float32)
    got = avsync.onset_envelope(x, 16000, hop=0.001, lookback=0.02)
    n, back = 16, 20
    rms = [np.sqrt(np.mean(np.asarray(x[i * n:(i + 1) * n], np.float64) ** 2))
           for i in range(len(x) // n)]
    want = []
    for i, r in enumerate(rms):
        before = rms[max(0, i - back):i] or [rms[0]]
        before = before + [rms[0]] * (back - len(before)) if i < back else before
        want.append(max(r - max(before), 0.0))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    # a step and a burst that starts part way through a hop: rises only where they begin
    assert set(np.flatnonzero(got > 0.1)) == {312, 20011 // 16, 20011 // 16 + 1}


def test_cross_correlation_matches_direct_sum():
    rng = np.random.default_rng(1)
    a, v = rng.standard_normal(300), rng.standard_normal(300)
    got = avsync.cross_correlation(a, v, 40)
    a0, v0 = a - a.mean(), v - v.mean()
    norm = np.sqrt((a0 ** 2).sum() * (v0 ** 2).sum())
    want = [sum(a0[t + lag] * v0[t] for t in range(300) if 0 <= t + lag < 300) / norm
            for lag in range(-40, 41)]
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_refine_peak_finds_a_parabola_vertex():
    x = np.arange(9, dtype=np.float64)
    c = -(x - 4.3) ** 2
    assert avsync.refine_peak(c, 4) == pytest.approx(4.3, abs=1e-12)
    assert avsync.refine_peak(c, 0) == 0.0


def impulses(times, rate_or_fps, n, width=1):
    out = np.zeros(n)
    for t in times:
        i = round(t * rate_or_fps)
        out[i:i + width] = 1.0
    return out


@pytest.mark.parametrize("offset", [-0.2137, 0.0, 0.0421, 0.15])
def test_estimate_offset_on_arrays(offset):
    """Events at random sub-frame times: the picture shows each on the first frame after it."""
    rng = np.random.default_rng(2)
    events = np.cumsum(rng.uniform(0.8, 1.8, 8)) + 0.5
    duration = events[-1] + 1.5
    frame_times = np.arange(0, duration, 1 / FPS)
    change = np.zeros(len(frame_times))
    for e in events:
        change[np.searchsorted(frame_times, e)] = 100.0  # first frame at or after the event
    audio = (rng.standard_normal(int(duration * 16000)) * 0.003).astype(np.float32)
    for e in events:
        i = round((e + offset) * 16000)
        audio[i:i + 80] += 0.5 * rng.standard_normal(80).astype(np.float32)
    r = avsync.estimate_offset(audio, 16000, 0.0, frame_times, change)
    # the picture dates an event up to one frame late, so the audio looks up to a frame early
    assert offset - 1 / FPS - 0.002 <= r.offset_ms / 1000 <= offset + 0.002
    assert r.events == 8 and r.confidence > 0.5
    assert r.frame_ms == pytest.approx(40.0)


def write_clip(path: Path, script: FlashClick) -> Path:
    return write_media(path, script, fps=script.fps, audio_rate=44100)


@pytest.mark.parametrize("offset_ms", [-200, 0, 150])
def test_injected_offsets_recovered_within_one_frame(tmp_path, capsys, offset_ms):
    """The must-show: flash + click files with the audio shifted by -200, 0, +150 ms."""
    script = FlashClick(offset=offset_ms / 1000, fps=FPS)
    clip = write_clip(tmp_path / f"clap{offset_ms}.mkv", script)
    assert sync.main(["--replay", str(clip), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert abs(out["offset_ms"] - offset_ms) < 1000 / FPS
    assert out["events"] == len(script.events)
    assert out["key"] == f"replay:{clip.resolve()}"


def test_live_recording_stops_on_time_and_skips_the_warmup():
    """A paced (live) source, as a camera + microphone would be: record() ends by the clock even
    though items keep coming, and leaves out the first second."""
    from streamer.synthetic import synthetic_source

    script = FlashClick(offset=0.09, events=(0.3, 1.3, 2.04, 2.6, 3.36), duration=30.0)
    source = synthetic_source(script, fast=False)
    assert source.live
    rec = sync.record(source, seconds=4.0)
    assert rec.frame_times[0] >= sync.LIVE_WARMUP and rec.frame_times[-1] < 4.0
    r = sync.measure(rec)
    assert abs(r.offset_ms - 90) < 1000 / FPS
    assert r.events == 4  # the flash at 0.3 s fell in the warm-up


def test_save_is_the_streamers_default_offset(tmp_path, config_file, capsys):
    clip = write_clip(tmp_path / "c.mkv", FlashClick(offset=0.12, fps=30.0))
    opts = AppOptions(source="replay", replay=str(clip), fast=True)
    source = open_source(opts)
    try:
        assert resolve_av_offset(opts, source) == 0.0  # nothing saved yet
    finally:
        source.close()
    assert sync.main(["--replay", str(clip), "--save"]) == 0
    saved = json.loads(config_file.read_text())["av_offset"][f"replay:{clip.resolve()}"]
    assert abs(saved["offset_ms"] - 120) < 1000 / 30
    source = open_source(opts)
    try:
        assert resolve_av_offset(opts, source) == pytest.approx(saved["offset_ms"] / 1000)
        assert "A/V offset" in capsys.readouterr().err
        explicit = AppOptions(source="replay", replay=str(clip), fast=True, av_offset=-0.05)
        assert resolve_av_offset(explicit, source) == -0.05  # the flag wins
    finally:
        source.close()
    other = write_clip(tmp_path / "other.mkv", FlashClick(fps=30.0, duration=3.0))
    opts = AppOptions(source="replay", replay=str(other), fast=True)
    source = open_source(opts)
    try:
        assert resolve_av_offset(opts, source) == 0.0  # saved per setup, not globally
    finally:
        source.close()


def test_store_keeps_other_setups_and_rejects_a_bad_file(config_file):
    store.save_offset("camera:0 + mic:A", 80.0, 0.9, 7)
    store.save_offset("camera:1 + mic:B", -30.0, 0.8, 6)
    store.save_offset("camera:0 + mic:A", 85.5, 0.95, 9)
    assert store.load_offset("camera:0 + mic:A").offset_ms == 85.5
    assert store.load_offset("camera:1 + mic:B").events == 6
    assert store.load_offset("camera:2 + mic:C") is None
    config_file.write_text("{not json")
    with pytest.raises(UserError, match=r"calibration\.json is unreadable"):
        store.load_offset("camera:0 + mic:A")


class Jittered(FlashClick):
    """Clicks at random times around their flashes: sound and picture share no offset."""

    def click_times(self) -> list[float]:
        rng = np.random.default_rng(1)
        return [t + rng.uniform(-0.9, 0.9) for t in super().click_times()]


class Silent(FlashClick):
    def click_times(self) -> list[float]:
        return []


@pytest.mark.parametrize("script, message", [
    (FlashClick(events=(1.0, 2.6), duration=4.0), "too few events: 2 matched"),
    (FlashClick(events=tuple(0.4 + 0.5 * i for i in range(12)), offset=0.1, duration=7.0),
     "do not line up clearly"),  # a steady beat aligns equally well one beat away
    (Jittered(), "do not line up clearly"),
    (Silent(duration=4.0), "no sound onsets found"),
])
def test_recordings_without_a_measurement_give_a_message_not_a_number(tmp_path, script,
                                                                      message):
    clip = write_clip(tmp_path / "bad.mkv", script)
    with pytest.raises(avsync.SyncError, match=message):
        sync.main(["--replay", str(clip)])


def test_cli_error_is_one_line_without_traceback_and_saves_nothing(tmp_path):
    clip = write_clip(tmp_path / "few.mkv", FlashClick(events=(1.0, 2.6), duration=4.0))
    p = subprocess.run([sys.executable, "-m", "calibrate.sync", "--replay", str(clip), "--save"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={"PATH": "/usr/bin:/bin", store.ENV: str(tmp_path / "c.json")})
    assert p.returncode == 2, p.stderr
    assert p.stdout == ""
    assert len(p.stderr.strip().splitlines()) == 1 and p.stderr.startswith("error: too few")
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "c.json").exists()


@pytest.mark.parametrize("args, message", [
    (["--replay", "/nonexistent/clip.mp4"], "no such file"),
    (["--replay", "x.mp4", "--mic", "1"], "--mic goes with --camera"),
    (["--replay", "x.mp4", "--seconds", "0"], "--seconds must be a finite number of seconds > 0"),
])
def test_bad_arguments_are_user_errors(args, message):
    with pytest.raises(UserError, match=message):
        sync.main(args)
