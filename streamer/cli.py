"""The jca-live command: main.py's flags, the run, and the exit status that says how it ended.

    jca-live --replay clip.mp4 --checkpoint runs/jca.pt      # installed: [project.scripts]
    python main.py --replay clip.mp4 --checkpoint runs/jca.pt   # the same from a checkout

Exit status: 0 when the stream ended (end of file, --duration, Ctrl+C, the reader of stdout
closing it, e.g. `| head`); 2 for a mistake the user can fix or a fault (one line on stderr),
an output that could not be written included (a full disk: streamer.sinks); 130 for
Ctrl+C before the stream started; 128 + N when signal N ended it (SIGTERM 143, SIGHUP 129),
after the same clean stop as Ctrl+C (streamer.signals). The flags: streamer.options; the run:
streamer.app.
"""

from __future__ import annotations

from model.errors import run_cli
from streamer.options import parse_args
from streamer.signals import StopSignals, exit_at_signal


def main(argv: list[str] | None = None) -> int:
    # entered before torch loads: a stop or Ctrl+C while loading ends the process at once, one line
    with StopSignals(exit_early=True) as signals:
        opts = parse_args(argv)
        from streamer.app import run

        run(opts, signals)
    return signals.exit_code or 0


def entry_point() -> None:
    """The console script (and main.py): one line and exit 2 for a user error, no traceback."""
    try:
        run_cli(main)
    except SystemExit as end:  # a signal while the interpreter shuts down keeps this status
        exit_at_signal(end.code if isinstance(end.code, int) else 1)
        raise


if __name__ == "__main__":
    entry_point()
