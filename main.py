"""Live audio-visual event detection: label every second of a stream with JCA.

    python main.py --camera 0 --checkpoint runs/jca.pt          # webcam + default microphone
    python main.py --replay clip.mp4 --checkpoint runs/jca.pt   # a file, as if it were live
    python main.py --synthetic --random-weights --duration 20

The same command as the installed `jca-live` (streamer/cli.py); the flags live in
streamer/options.py, the body in streamer/app.py; see docs/STREAMING.md.
"""

from streamer.cli import entry_point

if __name__ == "__main__":
    entry_point()
