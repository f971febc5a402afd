"""Command-line plumbing shared by the dataset CLIs (model.train, model.evaluate,
model.ablations, calibrate.confidence, calibrate.precision).

    add_data_args(ap)                 # --data DIR, per-file overrides, cache, --check, --threads
    add_protocol_args(ap)             # --preset, --set NAME=VALUE, --epochs, --lr, ...
    args = ap.parse_args()
    require_data(args)
    opts = protocol_options(args)     # TrainOptions
    with open_from_args(args) as data:
        ...
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from model.config import PRESETS, JCAConfig
from model.errors import UserError
from model.protocol import LOSSES, TrainOptions

if TYPE_CHECKING:
    from model.data import AVEData

DATA_FILES = ("visual", "audio", "labels", "train-order", "val-order", "test-order",
              "categories", "recipe")  # the AVEPaths fields, as flags
CONVERTERS = {"int": int, "float": float, "str": str}  # JCAConfig field type -> parser
TRUE, FALSE = ("true", "1"), ("false", "0")


def parse_overrides(items: list[str]) -> tuple[tuple[str, Any], ...]:
    """["hidden=64", "rnn=gru"] -> typed (name, value) pairs for JCAConfig."""
    types = {f.name: f.type for f in fields(JCAConfig)}
    out = []
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or name not in types:
            raise UserError(f"bad --set {item!r}: use NAME=VALUE with NAME one of "
                            f"{', '.join(sorted(types))}")
        kind = types[name]
        try:
            value: Any = CONVERTERS.get(kind, str)(raw)
            if kind == "bool":
                if raw.lower() not in TRUE + FALSE:
                    raise ValueError(raw)
                value = raw.lower() in TRUE
        except ValueError:
            raise UserError(f"bad --set {item!r}: {name} needs a {kind}") from None
        out.append((name, value))
    return tuple(out)


def add_data_args(ap: argparse.ArgumentParser) -> None:
    """--data DIR and the per-file overrides."""
    ap.add_argument("--data", help="directory of AVE-format files")
    for key in DATA_FILES:
        ap.add_argument(f"--{key}", metavar="PATH", help=f"override the {key} file")
    ap.add_argument("--cache-features", action=argparse.BooleanOptionalAction, default=None,
                    help="hold each split's features in RAM as float32 (default: only when the "
                         "split fits in --cache-limit-gb)")
    ap.add_argument("--cache-limit-gb", type=float, default=1.0)
    ap.add_argument("--check", action="store_true",
                    help="scan every feature for NaN/inf before starting (reads all files)")
    ap.add_argument("--threads", type=int,
                    help="torch CPU threads (default: torch's choice; 1 is often faster for "
                         "small models on a busy CPU)")


def require_data(args: argparse.Namespace) -> None:
    """The flags of `add_data_args` name a dataset (a folder, or at least its labels file)."""
    if args.data is None and args.labels is None:
        raise UserError("no dataset given: pass --data DIR (AVE-format files)")


def open_from_args(args: argparse.Namespace) -> AVEData:
    """The dataset the flags of `add_data_args` name, opened (use it as a context manager)."""
    import torch

    from model.data import AVEPaths, open_dataset

    if args.threads is not None:
        if args.threads < 1:
            raise UserError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    overrides = {k.replace("-", "_"): getattr(args, k.replace("-", "_")) for k in DATA_FILES}
    data = open_dataset(AVEPaths.from_dir(args.data, **overrides),
                        cache_limit_bytes=int(args.cache_limit_gb * (1 << 30)))
    if args.check:
        data.check_finite()
    return data


def add_protocol_args(ap: argparse.ArgumentParser) -> None:
    """The model and training-protocol flags (model.train, model.ablations)."""
    ap.add_argument("--preset", default=TrainOptions.preset, choices=sorted(PRESETS))
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="override a model config field (repeatable), e.g. --set hidden=64")
    ap.add_argument("--epochs", type=int, default=TrainOptions.epochs)
    ap.add_argument("--lr", type=float, default=TrainOptions.lr)
    ap.add_argument("--batch-size", type=int, default=TrainOptions.batch_size)
    ap.add_argument("--loss", choices=LOSSES, default=TrainOptions.loss)
    ap.add_argument("--val-every", type=int, default=TrainOptions.val_every)
    ap.add_argument("--weight-decay", type=float, default=TrainOptions.weight_decay)
    ap.add_argument("--seed", type=int, default=TrainOptions.seed)
    ap.add_argument("--online", action="store_true",
                    help="train on the windows a live run labels from (model.online), for "
                         "--lookahead K")
    ap.add_argument("--lookahead", type=int, default=TrainOptions.lookahead, metavar="K",
                    help="with --online: the lookahead main.py will run with (default 0)")
    ap.add_argument("--online-ends", type=int, default=TrainOptions.online_ends, metavar="N",
                    help="with --online: live windows per clip and epoch besides the whole clip")
    ap.add_argument("--edge-weight", type=float, default=TrainOptions.edge_weight,
                    help="with --online: extra loss weight of the segment a live run labels")


def protocol_options(args: argparse.Namespace, ablation: str | None = None) -> TrainOptions:
    """TrainOptions from the flags of `add_protocol_args`."""
    return TrainOptions(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                        loss=args.loss, val_every=args.val_every,
                        weight_decay=args.weight_decay, seed=args.seed, preset=args.preset,
                        ablation=ablation, overrides=parse_overrides(args.set),
                        online=args.online, lookahead=args.lookahead,
                        online_ends=args.online_ends, edge_weight=args.edge_weight)
