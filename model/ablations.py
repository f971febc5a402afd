"""Table 2 on a dataset: train every ablation row the same way, print ours beside the paper's.

    python -m model.ablations --data runs/synth --epochs 15 --lr 2e-3 --loss ce --batch-size 16
    python -m model.ablations --data DIR --rows full gru avg-pool --json runs/table2.json

Each row is trained with model.train (same protocol, seed and data; selection on validation)
and scored by the dataset's metric on the test split. Rows are "full" plus the keys of
model.config.ABLATIONS (default: Table 2's rows; "audio-only" and "visual-only" are Table 1's
single-modality baselines). The paper's numbers are on AVE with its real features: on any other
dataset only the ordering of the rows is comparable.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from model.checkpoint import load_checkpoint
from model.cli_args import (
    add_data_args,
    add_protocol_args,
    open_from_args,
    protocol_options,
    require_data,
)
from model.config import ABLATIONS, ROW_NAMES, TABLE2
from model.data import AVEData
from model.errors import UserError, run_cli
from model.evaluate import evaluate
from model.files import atomic_write_text
from model.protocol import TrainOptions
from model.train import train

FULL = "full"
BASELINES = ("audio-only", "visual-only")
TABLE2_ROWS = (FULL, *[k for k in ABLATIONS if k not in BASELINES])


def run_ablations(data: AVEData, out_dir: str | Path, opts: TrainOptions,
                  rows: tuple[str, ...] = TABLE2_ROWS, split: str = "test",
                  on_row: Any = None) -> list[dict[str, Any]]:
    """Train and score each row; returns one dict per row (JSON-ready)."""
    out_dir = Path(out_dir)
    results = []
    for row in rows:
        ablation = None if row == FULL else row
        t0 = time.perf_counter()
        ckpt_path = out_dir / f"{row}.pt"
        result = train(data, ckpt_path, replace(opts, ablation=ablation), log=None)
        model, ckpt = load_checkpoint(ckpt_path)
        report, _ = evaluate(model, ckpt, data, split, opts.batch_size, streaming=False)
        entry = {"row": row, "name": ROW_NAMES[ablation], "accuracy": report["accuracy"],
                 "best_val_accuracy": result.best_val_accuracy, "best_epoch": result.best_epoch,
                 "paper": TABLE2.get(ablation), "checkpoint": str(ckpt_path),
                 "seconds": round(time.perf_counter() - t0, 1)}
        results.append(entry)
        if on_row is not None:
            on_row(entry)
    return results


def render(results: list[dict[str, Any]], console: Console, split: str) -> None:
    full = next((r for r in results if r["row"] == FULL), None)
    table = Table(title=f"Table 2: ours ({split} split, pooled segment accuracy) vs the paper "
                        "(AVE)")
    for col, justify in (("row", "left"), ("ours %", "right"), ("Δ vs full", "right"),
                         ("paper %", "right"), ("paper Δ", "right"), ("val %", "right"),
                         ("epoch", "right")):
        table.add_column(col, justify=justify)
    for r in results:
        ours = 100 * r["accuracy"]
        delta = "" if full is None or r is full else f"{ours - 100 * full['accuracy']:+.1f}"
        paper = r["paper"]
        paper_delta = ("" if paper is None or r["row"] == FULL
                       else f"{paper - TABLE2[None]:+.1f}")
        table.add_row(r["name"], f"{ours:.1f}", delta, "-" if paper is None else f"{paper:.1f}",
                      paper_delta, f"{100 * r['best_val_accuracy']:.1f}", str(r["best_epoch"]))
    console.print(table)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_args(ap)
    choices = (FULL, *ABLATIONS)
    ap.add_argument("--rows", nargs="+", metavar="ROW", default=list(TABLE2_ROWS),
                    help=f"rows to run, from {', '.join(choices)} (default: Table 2's); "
                         "'all' adds the single-modality baselines")
    ap.add_argument("--out-dir", default="runs/ablations", help="one checkpoint per row")
    ap.add_argument("--json", metavar="OUT", help="write the table as JSON")
    ap.add_argument("--split", default="test", choices=("val", "test"))
    add_protocol_args(ap)
    args = ap.parse_args()
    require_data(args)
    rows = tuple(choices) if args.rows == ["all"] else tuple(args.rows)
    unknown = [r for r in rows if r not in choices]
    if unknown:
        raise UserError(f"unknown row {unknown[0]!r}; choose from {', '.join(choices)} or all")
    opts = protocol_options(args)
    for row in rows:  # every row's config must build before hours of training start
        replace(opts, ablation=None if row == FULL else row).config(2)
    console = Console()
    with open_from_args(args) as data:
        results = run_ablations(
            data, args.out_dir, opts, rows, args.split,
            on_row=lambda r: console.print(
                f"{r['name']}: {100 * r['accuracy']:.1f}% ({r['seconds']:.0f} s)"))
    render(results, console, args.split)
    if args.json:
        atomic_write_text(args.json, json.dumps({"protocol": opts.to_dict(), "split": args.split,
                                                 "rows": results}, indent=2) + "\n")


if __name__ == "__main__":
    run_cli(main)
