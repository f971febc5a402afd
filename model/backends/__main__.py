"""What each backend needs and whether it can run here; what `--backend auto` would pick.

    python -m model.backends [--device cpu|cuda[:N]]
"""

from __future__ import annotations

import argparse

from model.backends.probe import BACKENDS, resolve_backend, unavailable
from model.errors import run_cli


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    a = ap.parse_args()
    _, reason = resolve_backend("auto", a.device)
    for b in BACKENDS[1:]:
        why = unavailable(b, a.device)
        print(f"{b:9s} {'ok' if why is None else 'no: ' + why}")
    print(reason)


if __name__ == "__main__":
    run_cli(main)
