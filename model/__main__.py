"""Describe a model: its config and parameter counts, from a preset or a checkpoint.

    python -m model --info paper
    python -m model --info reference --ablation gru --classes 5
    python -m model --info --checkpoint runs/jca.pt
"""

from __future__ import annotations

import argparse

from model.config import ABLATIONS, PRESETS, JCAConfig, preset
from model.errors import UserError, run_cli
from model.network import JCANet, count_parameters


def describe(cfg: JCAConfig, title: str, model: JCANet | None = None) -> str:
    counts = count_parameters(model if model is not None else JCANet(cfg))
    lines = [title, "config:"]
    lines += [f"  {k} = {v}" for k, v in cfg.to_dict().items()]
    lines.append("parameters:")
    lines += [f"  {name:<16} {n:>12,}" for name, n in counts.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model", description=__doc__.splitlines()[0])
    p.add_argument("--info", nargs="?", const="paper", metavar="PRESET",
                   help=f"print config and parameter counts of a preset {sorted(PRESETS)}")
    p.add_argument("--ablation", choices=sorted(ABLATIONS), help="a Table 2 / Table 1 row")
    p.add_argument("--classes", type=int, help="number of classes, background included")
    p.add_argument("--checkpoint", help="describe this checkpoint instead of a preset")
    args = p.parse_args(argv)
    if args.info is None and args.checkpoint is None:
        p.print_help()
        return 0
    if args.checkpoint:
        from model.checkpoint import load_checkpoint

        model, ckpt = load_checkpoint(args.checkpoint)
        print(describe(ckpt.config, f"checkpoint {ckpt.path} (format v{ckpt.version})", model))
        print(f"classes ({len(ckpt.class_names)}): {', '.join(ckpt.class_names)}")
        print(f"recipe: {ckpt.recipe.to_dict() if ckpt.recipe else None}")
        print(f"meta: {ckpt.meta}")
        return 0
    if args.info not in PRESETS:
        raise UserError(f"unknown preset {args.info!r}: choose one of {sorted(PRESETS)}")
    overrides = {} if args.classes is None else {"num_classes": args.classes}
    try:
        cfg = preset(args.info, args.ablation, **overrides)
    except ValueError as e:
        raise UserError(f"bad model options: {e}") from None
    print(describe(cfg, f"preset {args.info}" + (f", ablation {args.ablation}"
                                                 if args.ablation else "")))
    return 0


if __name__ == "__main__":
    run_cli(main)
