"""What each backend needs and whether it runs here; building the engine `--backend auto` loads.

    python -m model.backends [--device cpu|cuda[:N]]
    python -m model.backends build --checkpoint runs/jca.pt           # aot on a CPU
    python -m model.backends build --random-weights --seed 0          # for --random-weights runs
    python -m model.backends build --checkpoint runs/jca.pt --device cuda --precision fp16

`build` compiles the window model the live detector runs (one window per call, with the
attention map) and puts the engine in the cache ($JCA_LIVE_ENGINES, default
~/.cache/jca-live/engines); `python main.py --backend auto` with the same model, precision and
device then loads it instead of running eager. --backend (default: the best engine that runs
here, tensorrt on a GPU with torch-tensorrt, else aot) may also be compile or export, which
cache the decomposed program they start from (auto does not pick them).
"""

from __future__ import annotations

import argparse
import sys

from model.errors import UserError, run_cli

BUILDABLE = ("aot", "tensorrt", "compile", "export")


def list_backends(argv: list[str]) -> None:
    from model.backends.probe import BACKENDS, ENGINES, unavailable
    from model.limits import resolve_device

    ap = argparse.ArgumentParser(prog="python -m model.backends",
                                 description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    a = ap.parse_args(argv)
    device = resolve_device(a.device)
    for b in BACKENDS[1:]:
        why = unavailable(b, device)
        print(f"{b:9s} {'ok' if why is None else 'no: ' + why}")
    engines = " or ".join(ENGINES[device.split(":")[0]])
    print(f"auto: a cached {engines} engine built for the model (python -m model.backends build), "
          "else eager")


def build(argv: list[str]) -> None:
    """Heavy imports here only: listing what runs needs neither the model nor torch.export."""
    from model.backends.build import live_backend
    from model.backends.probe import PRECISIONS, engine_backends
    from model.inference import load_model
    from model.limits import resolve_device

    ap = argparse.ArgumentParser(prog="python -m model.backends build",
                                 description="Build and cache the window model's engine.")
    which = ap.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", metavar="FILE", help="trained model (python -m model.train)")
    which.add_argument("--random-weights", action="store_true",
                       help="the untrained model main.py --random-weights runs")
    ap.add_argument("--seed", type=int, default=0, help="seed of random weights (main.py --seed)")
    ap.add_argument("--backend", choices=BUILDABLE,
                    help="default: the best engine that runs here (tensorrt on a GPU with "
                         "torch-tensorrt, else aot)")
    ap.add_argument("--precision", default="fp32", choices=PRECISIONS)
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto)")
    a = ap.parse_args(argv)
    device = resolve_device(a.device)
    name = a.backend
    if name is None:
        runnable, skipped = engine_backends(device, a.precision)
        if not runnable:
            raise UserError("no engine backend runs here: " + "; ".join(skipped))
        name = runnable[0]
    model = load_model(a.checkpoint, a.random_weights, a.seed)
    print(f"building {name} ({a.precision}, {device}) for {model.name}...", file=sys.stderr,
          flush=True)
    be = live_backend(name, model.net, device, a.precision)
    print(be.describe())
    if name in ("export", "compile"):
        print(f"auto loads aot or tensorrt engines only: run main.py --backend {name} to use it")
    else:
        print(f"python main.py --backend auto ({a.precision}, {device}) now loads this engine")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["build"]:
        build(argv[1:])
    else:
        list_backends(argv)


if __name__ == "__main__":
    run_cli(main)
