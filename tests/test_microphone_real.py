"""The microphone for real: PortAudio (sounddevice) recording the monitor of a PulseAudio null
sink, in a user-mode `pulseaudio` started for the test, while `paplay` plays a generated clip's
sound into the sink and a test sender streams its picture to `--camera URL` (OpenCV's FFmpeg
backend). The labels match the replay of the same file; the daemon killed mid-run ends the
microphone with one line, every prediction kept.

Skipped only where the machine cannot run it (no pulseaudio / paplay / pactl, or no PortAudio):
.ci/run installs them.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from benchmarks.mpegts_sender import Sender
from model.inference import InferenceModel
from model.provenance import Provenance
from streamer.app import open_source
from streamer.microphone import MicrophoneLost
from streamer.options import parse_args
from streamer.replay import replay_source
from streamer.runtime import Runtime, assemble
from streamer.synthetic import TONES, Event, Script, write_media

TOOLS = ("pulseaudio", "pactl", "paplay")
SINK = "jca_test"
PLAY_RATE = 44100
MAX_SHIFT = 2  # seconds the sound may start off the stream clock (see the test)
PREROLL_S = 2.0  # a new client's first ~1.5 s are dropped by the server: lead in with silence
START_S = 10.0  # the daemon answers within this
CLASSES = ("beep", "whistle", "hum", "background")
BAND_HZ = 62  # FakeAudio-like bands: 1 Hz bins averaged 62 at a time
TONE_BANDS = {round(TONES[c] / BAND_HZ - 0.5): i for i, c in enumerate(CLASSES[:3])}
LOUD = 2.0  # log band energy of a tone at half scale is far above this; noise far below
SCRIPT = Script(16.0, (Event("beep", 2, 6), Event("whistle", 9, 13)), size=(72, 96), fps=10)


def band_energies(samples: np.ndarray) -> np.ndarray:
    spec = np.abs(np.fft.rfft(np.asarray(samples, np.float64).reshape(-1), 16000))[:7936]
    return np.log1p(spec.reshape(128, BAND_HZ).mean(axis=1)).astype(np.float32)


def tone_labeller(audio: np.ndarray, visual: np.ndarray) -> np.ndarray:
    """(B, 10, 128), (B, 10, 7, 7, 512) -> (B, 10, C) logits: the class whose tone's band is
    loudest, background when no tone band is loud."""
    logits = np.zeros((*audio.shape[:2], len(CLASSES)), np.float32)
    logits[..., -1] = LOUD
    for band, c in TONE_BANDS.items():
        logits[..., c] = audio[..., band]
    return logits * 10


def tone_runtime() -> Runtime:
    """A runtime that labels by the sound alone, so camera timing cannot change a label."""
    from stream_fakes import FakeVisual, tiny_model

    model = InferenceModel(tiny_model(), CLASSES, None, 1.0, 0.0, Provenance.UNTRAINED, "tones")
    return Runtime(model, FakeVisual().frame_features, band_energies, tone_labeller, "cpu", 2,
                   Provenance.UNTRAINED)


def missing_tools() -> str | None:
    absent = [t for t in TOOLS if shutil.which(t) is None]
    if absent:
        return f"{', '.join(absent)} not installed (.ci/run installs pulseaudio-utils)"
    try:
        import sounddevice  # noqa: F401
    except OSError:
        return "PortAudio not installed (.ci/run installs libportaudio2)"
    return None


@pytest.fixture
def pulse(tmp_path, monkeypatch):
    """A user-mode PulseAudio with a null sink whose monitor is the default input; PortAudio
    re-initialised to see it. Yields the daemon's Popen."""
    reason = missing_tools()
    if reason:
        pytest.skip(reason)
    import sounddevice as sd

    run_dir = tmp_path / "pulse"
    run_dir.mkdir(mode=0o700)
    socket = run_dir / "native"
    for k, v in {"XDG_RUNTIME_DIR": str(run_dir), "HOME": str(tmp_path),
                 "PULSE_SERVER": f"unix:{socket}"}.items():
        monkeypatch.setenv(k, v)
    daemon = subprocess.Popen(
        ["pulseaudio", "--daemonize=no", "--exit-idle-time=-1", "-n", "--use-pid-file=no",
         f"--load=module-native-protocol-unix socket={socket}",
         f"--load=module-null-sink sink_name={SINK}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + START_S
        while subprocess.run(["pactl", "info"], capture_output=True).returncode != 0:
            if daemon.poll() is not None or time.monotonic() > deadline:
                pytest.skip("pulseaudio does not start on this machine")
            time.sleep(0.1)  # polling the daemon's socket (another process), bounded
        subprocess.run(["pactl", "set-default-sink", SINK], check=True)
        subprocess.run(["pactl", "set-default-source", f"{SINK}.monitor"], check=True)
        sd._terminate()
        sd._initialize()
        yield daemon
    finally:
        daemon.kill()
        daemon.wait()
        sd._terminate()
        sd._initialize()


def sound_file(path: Path, script: Script) -> Path:
    """The script's sound at PLAY_RATE, after PREROLL_S of silence, as a 16-bit WAV."""
    x = np.concatenate([np.zeros(round(PREROLL_S * PLAY_RATE), np.float32),
                        script.samples(0, script.sample_count(PLAY_RATE), PLAY_RATE)])
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(PLAY_RATE)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
    return path


class Records:
    def __init__(self, on_record=None) -> None:
        self.records: list[dict] = []
        self.on_record = on_record

    def on_segment(self, record: dict) -> None:
        self.records.append(record)
        if self.on_record is not None:
            self.on_record(record)

    def close(self) -> None:
        pass


def camera_and_mic(url: str):
    opts = parse_args(["--camera", url, "--mic", "pulse", "--random-weights", "--log", "",
                       "--events", ""])
    return open_source(opts)


def interior(labels: list[str]) -> list[int]:
    """Segments whose neighbours carry the same label: a start off by under half a second
    cannot change theirs."""
    return [i for i in range(1, len(labels) - 1) if labels[i - 1] == labels[i] == labels[i + 1]]


def best_shift(got: list[str], expected: list[str], checked: list[int]) -> int:
    """The whole-second shift (within MAX_SHIFT) under which most checked labels agree."""
    def agree(s: int) -> int:
        return sum(got[i + s] == expected[i] for i in checked if 0 <= i + s < len(got))
    return max(range(-MAX_SHIFT, MAX_SHIFT + 1), key=agree)


def test_camera_url_and_pulse_microphone_label_as_the_replay(tmp_path, pulse):
    rt = tone_runtime()
    clip = write_media(tmp_path / "clip.ts", SCRIPT, fps=10, audio_rate=PLAY_RATE,
                       video_codec="mpeg2video", audio_codec="mp2")
    replay = Records()
    assemble(rt, replay_source(clip, fast=True), [replay]).run()
    expected = [r["label"] for r in replay.records]
    assert expected[3] == "beep" and expected[10] == "whistle"  # the labeller works offline
    with Sender([clip]) as sender:
        source = camera_and_mic(sender.url)
        player = subprocess.Popen(["paplay", str(sound_file(tmp_path / "sound.wav", SCRIPT))])
        try:
            live = Records()
            pipe = assemble(rt, source, [live], duration=SCRIPT.duration)
            time.sleep(PREROLL_S)  # the player's lead-in: the clip's sound starts now
            summary = pipe.run()
        finally:
            player.kill()
            player.wait()
    assert summary.error is None
    got = [r["label"] for r in live.records]
    checked = interior(expected)
    assert len(got) >= len(expected) - 2 and len(checked) >= 4
    # the server drops an unknown part (~1.5 s) of the player's lead-in, so the sound starts
    # at an unknown offset: one whole-second shift must make every interior label agree
    shift = best_shift(got, expected, checked)
    assert [got[i + shift] for i in checked if 0 <= i + shift < len(got)] == \
        [expected[i] for i in checked if 0 <= i + shift < len(got)]
    assert {"beep", "whistle"} <= {got[i + shift] for i in checked if 0 <= i + shift < len(got)}
    # the camera delivered (its sender started PREROLL_S before the clock: the picture ends
    # that much before --duration)
    assert all("video" not in r["missing"] for r in live.records[1:10])


def test_daemon_killed_mid_run_ends_the_microphone_with_one_line(tmp_path, pulse):
    rt = tone_runtime()
    clip = write_media(tmp_path / "clip.ts", SCRIPT, fps=10, audio_rate=PLAY_RATE,
                       video_codec="mpeg2video", audio_codec="mp2")

    def kill_after_two(record: dict) -> None:
        if record["segment"] == 1:
            pulse.kill()

    with Sender([clip]) as sender:
        source = camera_and_mic(sender.url)
        live = Records(kill_after_two)
        summary = assemble(rt, source, [live], duration=SCRIPT.duration).run()
    assert isinstance(summary.error, MicrophoneLost)
    assert "\n" not in str(summary.error) and "stopped delivering audio" in str(summary.error)
    assert len(live.records) >= 2  # the segments before the loss are kept
    assert [r["segment"] for r in live.records] == list(range(len(live.records)))
