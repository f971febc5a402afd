"""Calibration tools: make a deployed detector's numbers true for its own camera, microphone
and hardware (docs/CALIBRATION.md).

    python -m calibrate.sync (--camera N [--mic DEV] | --replay FILE) [--save]   A/V offset
    python -m calibrate.confidence --data DIR --checkpoint CKPT                  temperature
    python -m calibrate.precision --data DIR --checkpoint CKPT                   fp16/bf16/int8
"""

from __future__ import annotations

if __name__ == "__main__":
    print(__doc__)
