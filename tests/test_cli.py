"""How the command ends, as a user, systemd or a pipe ends it: main.py as a subprocess stopped by
SIGTERM (with --overlay), by SIGHUP (on a terminal: the dashboard gives the cursor back), and by
its stdout reader closing the pipe (`| head -n 2`); and the dead-end messages it no longer gives.

The signal is sent once the log holds its first record (the test polls the file); every check is
on what the process leaves behind: its exit status, its stderr, the log, the event intervals and
the overlay video."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest
import torch
from stream_fakes import CLASSES, tiny_model, wait_for_first_record

from model.checkpoint import save_checkpoint
from model.errors import UserError
from model.extractors import build_extractors
from model.recipe import FeatureRecipe
from streamer.app import build
from streamer.options import AppOptions

ROOT = Path(__file__).resolve().parents[1]
EXIT_S = 120  # from the stop to the exit: the segments already closed, then the sinks
FAST = ["--random-weights", "--device", "cpu", "--backend", "eager",
        "--frames-per-segment", "1"]


@pytest.fixture(scope="module")
def beep_checkpoint(tmp_path_factory) -> Path:
    """A model that labels every second "beep" (class 0): one event interval, open until the
    stream ends, on the random extractors' features."""
    net = tiny_model()
    with torch.no_grad():
        net.head.mlp[3].weight.zero_()
        net.head.mlp[3].bias.copy_(torch.tensor([10.0, 0.0, 0.0, 0.0]))
    recipe = build_extractors(random_weights=True, seed=0, frames_per_segment=1).recipe
    path = tmp_path_factory.mktemp("ckpt") / "beep.pt"
    save_checkpoint(path, net, list(CLASSES), recipe)
    return path


def start(args: list[str], log: Path, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "main.py", *args, "--log", str(log)], cwd=ROOT,
                            **popen)


def records(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_sigterm_flushes_every_sink_and_exits_143(tmp_path, beep_checkpoint):
    """`docker stop` / systemd: the open event interval is written, the overlay video is whole,
    one line says what stopped it, and the status is 128 + SIGTERM."""
    import av

    log, events, overlay = tmp_path / "log.jsonl", tmp_path / "events.jsonl", tmp_path / "o.mp4"
    args = ["--synthetic", "--checkpoint", str(beep_checkpoint), "--device", "cpu", "--backend",
            "eager", "--frames-per-segment", "1", "--headless", "--events", str(events),
            "--overlay", str(overlay)]
    proc = start(args, log, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_first_record(proc, log)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=EXIT_S)
    assert proc.returncode == 128 + signal.SIGTERM == 143, err
    assert "Traceback" not in err
    (line,) = [x for x in err.splitlines() if x.startswith("stopped")]
    recs = records(log)
    assert line.startswith(f"stopped (SIGTERM): {len(recs)} segments")
    assert [r["segment"] for r in recs] == list(range(len(recs)))
    assert [json.loads(x) for x in out.splitlines()] == recs
    assert {r["label"] for r in recs} == {"beep"}
    (interval,) = records(events)  # the interval still open at the signal, closed by the stop
    assert (interval["label"], interval["start"], interval["end"]) == ("beep", 0.0,
                                                                       recs[-1]["end"])
    with av.open(str(overlay)) as c:  # a killed writer leaves a file without its index
        assert len(c.streams.audio) == 1
        assert sum(1 for _ in c.decode(video=0)) > 0


def test_sighup_on_a_terminal_gives_the_cursor_back_and_exits_129(tmp_path):
    """A closed terminal: the dashboard stops drawing and shows the cursor it hid."""
    log, events = tmp_path / "log.jsonl", tmp_path / "events.jsonl"
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    screen = bytearray()

    def drain() -> None:  # the terminal's side: read everything until the process is gone
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: no process holds the terminal any more
                return
            if not chunk:
                return
            screen.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    proc = start(["--synthetic", *FAST, "--events", str(events)], log, stdout=follower,
                 stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                 env={**os.environ, "TERM": "xterm-256color"})
    os.close(follower)
    try:
        wait_for_first_record(proc, log)
        proc.send_signal(signal.SIGHUP)
        _, err = proc.communicate(timeout=EXIT_S)
    finally:
        proc.kill()
        reader.join(timeout=10)
        os.close(leader)
    assert proc.returncode == 128 + signal.SIGHUP == 129, err
    assert "Traceback" not in err
    recs = records(log)
    assert f"stopped (SIGHUP): {len(recs)} segments" in err
    hidden, shown = screen.rfind(b"\x1b[?25l"), screen.rfind(b"\x1b[?25h")
    assert hidden >= 0, "the dashboard never drew"  # it did run on the terminal
    assert shown > hidden, "the cursor is left hidden"
    assert events.is_file()


def test_a_closed_stdout_stops_the_run_quietly(tmp_path):
    """`main.py --headless ... | head -n 2`: an hour of synthetic stream stops soon after the
    reader goes, exit 0, nothing but the usual lines on stderr, every record made in the log."""
    log, stderr = tmp_path / "log.jsonl", tmp_path / "stderr.txt"
    with stderr.open("w") as err_file:
        proc = start(["--synthetic", *FAST, "--fast", "--headless", "--events", ""], log,
                     stdout=subprocess.PIPE, stderr=err_file)
    assert proc.stdout is not None
    head = [json.loads(proc.stdout.readline()) for _ in range(2)]  # what `head -n 2` reads
    proc.stdout.close()
    try:
        proc.wait(timeout=EXIT_S)
    finally:
        proc.kill()
    err = stderr.read_text()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "Exception ignored" not in err
    recs = records(log)
    assert head == recs[:2]
    assert f"stopped (stdout closed): {len(recs)} segments" in err
    assert len(recs) < 60  # of 3600: it stopped, it did not run to the end


def test_missing_weights_with_a_checkpoint_name_the_fetch_not_random_weights(tmp_path):
    """A checkpoint trained on real extractor weights, none cached: the one way out is fetching
    them (--random-weights is refused together with --checkpoint)."""
    ckpt = tmp_path / "real.pt"
    save_checkpoint(ckpt, tiny_model(), list(CLASSES), FeatureRecipe.ave(frames_per_segment=1))
    opts = AppOptions(source="synthetic", checkpoint=str(ckpt), device="cpu",
                      frames_per_segment=1, backend="eager", weights_dir=str(tmp_path / "w"),
                      log=None, events=None)
    with pytest.raises(UserError) as e:
        build(opts)
    assert "python -m model.weights fetch" in str(e.value)
    assert "--random-weights" not in str(e.value)


def test_stop_signals_raise_while_loading_then_stop_what_is_attached():
    """Before a pipeline exists a stop signal aborts (nothing to flush), after it the signal
    only asks the pipeline to stop; the status is 128 + the first signal; the previous
    handlers come back."""
    from streamer.signals import Stopped, StopSignals

    before = signal.getsignal(signal.SIGTERM)
    stops: list[str] = []
    with StopSignals() as signals:
        with pytest.raises(Stopped, match="SIGTERM"):
            signal.raise_signal(signal.SIGTERM)
        signals.attach(stops.append)  # a signal that already came stops it at once
        signal.raise_signal(signal.SIGHUP)
        assert stops == ["SIGTERM", "SIGTERM"]  # the first signal names the stop
        assert (signals.name, signals.exit_code) == ("SIGTERM", 143)
    assert signal.getsignal(signal.SIGTERM) == before

    with StopSignals() as signals:
        signals.attach(stops.append)
        signal.raise_signal(signal.SIGHUP)
    assert stops[-1] == "SIGHUP" and signals.exit_code == 129
