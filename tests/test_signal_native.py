"""Ctrl+C, SIGTERM and SIGHUP end jca-live with its status and one line, whenever they come.

While the model loads, the run ends at once even when the loading code swallows the exception a
Python handler would raise: OpenVINO's converter turns a KeyboardInterrupt raised in one of its
Python callbacks into a conversion failure (the run then went on loading, and recorded OpenVINO
as failed on this machine), and one raised inside importlib's lock bookkeeping leaves the import
lock held, so the next fork hangs the process. After the run, while the interpreter shuts down
(native libraries' exit hooks), a signal keeps the run's status: it used to kill the process
(SIGTERM, SIGHUP) or print a traceback (Ctrl+C).

The command runs in a child process whose `streamer.app.run` is replaced; the test process
itself is never signalled."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from streamer.signals import StopSignals, early_line

ROOT = Path(__file__).resolve().parents[1]
EXIT_S = 20  # the child ends at the signal; this only bounds a failure
READY = "ready"  # the child's stderr line: it is where the signal should land
SIGNALS = pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                                  ids=lambda s: s.name)

CHILD = """
import atexit, signal, sys, types

from streamer import cli


def ready():
    print({ready!r}, file=sys.stderr, flush=True)


def loading(opts, signals):
    said = False
    while True:
        try:
            if not said:
                said = True
                ready()
            signal.pause()
        except BaseException:  # what native code does with an exception raised in a callback
            pass


def slow_teardown():
    ready()
    signal.pause()


def finished(opts, signals):
    atexit.register(slow_teardown)


sys.modules["streamer.app"] = types.ModuleType("streamer.app")
sys.modules["streamer.app"].run = {run}
cli.entry_point()
"""


def signalled(run: str, sig: signal.Signals, log: Path) -> tuple[int, str, str]:
    """main.py's command with `run` as its body, `sig` sent once it says it is ready."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(ready=READY, run=run), "--synthetic",
         "--random-weights", "--headless", "--log", str(log)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr.readline().strip() == READY
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=EXIT_S)
    finally:
        proc.kill()
    return proc.returncode, out, err


@SIGNALS
def test_a_signal_while_loading_ends_the_command_even_if_swallowed(tmp_path, sig):
    code, out, err = signalled("loading", sig, tmp_path / "log.jsonl")
    assert code == 128 + sig, err
    assert err.splitlines() == [early_line(sig)]
    assert out == "" and not (tmp_path / "log.jsonl").exists()


@SIGNALS
def test_a_signal_while_the_interpreter_shuts_down_keeps_the_status(tmp_path, sig):
    code, out, err = signalled("finished", sig, tmp_path / "log.jsonl")
    assert (code, out, err) == (0, "", "")


def test_once_attached_ctrl_c_is_python_s_and_stop_signals_stop():
    """After a pipeline is attached: Ctrl+C raises KeyboardInterrupt (the pipeline ends the
    stream on it, exit 0) and records no stop signal; SIGTERM asks the pipeline to stop. The
    previous handlers come back."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    stops: list[str] = []
    with StopSignals(exit_early=True) as signals:
        signals.attach(stops.append)
        with pytest.raises(KeyboardInterrupt):
            signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
        assert signals.exit_code is None and stops == []
        signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
        assert stops == ["SIGTERM"] and signals.exit_code == 143
    assert {s: signal.getsignal(s) for s in before} == before
