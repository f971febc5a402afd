"""Live audio-visual event detection: label every second of a stream with JCA.

    python main.py --camera 0 --checkpoint runs/jca.pt          # webcam + default microphone
    python main.py --replay clip.mp4 --checkpoint runs/jca.pt   # a file, as if it were live
    python main.py --synthetic --random-weights --duration 20

The flags live in streamer/options.py, the body in streamer/app.py; see docs/STREAMING.md.
"""

from __future__ import annotations

from model.errors import run_cli
from streamer.app import run
from streamer.options import parse_args


def main(argv: list[str] | None = None) -> int:
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    run_cli(main)
