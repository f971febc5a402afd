"""Calibrate a checkpoint's confidences on the validation split: temperature + event threshold.

    python -m calibrate.confidence --data runs/synth --checkpoint runs/synth.pt
    python -m calibrate.confidence --data DIR --checkpoint CKPT --lookahead 0 --png rel.png

Fits one temperature T (minimum NLL of softmax(logits / T), calibrate/temperature.py) on the
raw logits of the split, then the event-vs-background threshold p that maximises event F1 on
the calibrated probabilities, and stores both in the checkpoint (rewritten atomically):
meta["calibration"] = {"temperature", "event_threshold", "fitted_on", "ece_before",
"ece_after", ...}. The live detector divides its logits by T and its event intervals count
segments under p confidence as background. Prints ECE before and after and writes a
reliability diagram (default: beside the checkpoint, CKPT.reliability.png).

Windows: whole clips by default (the offline evaluation); --lookahead K fits on the windows a
live stream with lookahead K sees (warm-up padded), which is what the detector's numbers are.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from calibrate.logits import check_writable, checkpoint_and_split, model_forward, split_logits
from calibrate.temperature import (
    T_RANGE,
    fit_event_threshold,
    fit_temperature,
    nll,
    reliability,
)
from model.calibration import softmax
from model.checkpoint import save_checkpoint
from model.cli_args import add_data_args, require_data
from model.data import PAD_MODES
from model.errors import UserError, run_cli
from model.files import atomic_path
from model.limits import check_lookahead, check_range
from model.metrics import event_f1, expected_calibration_error, pooled_accuracy


def calibrate(logits: np.ndarray, labels: np.ndarray, bins: int = 15) -> dict[str, Any]:
    """Everything fitted and measured on one split's logits (n, ..., C) and labels (n, ...)."""
    c = logits.shape[-1]
    z = logits.reshape(-1, c)
    y = labels.reshape(-1)
    t = fit_temperature(z, y)
    before, after = softmax(z), softmax(z, t)
    threshold, f1_after = fit_event_threshold(after, y, background=c - 1)
    return {
        "temperature": t,
        "event_threshold": threshold,
        "ece_before": expected_calibration_error(before, y, bins),
        "ece_after": expected_calibration_error(after, y, bins),
        "nll_before": nll(z, y),
        "nll_after": nll(z, y, t),
        "accuracy": pooled_accuracy(after, y),
        "event_f1_before": event_f1(after.argmax(-1), y, c - 1)["f1"],
        "event_f1_after": f1_after,
        "at_limit": not T_RANGE[0] * 1.001 < t < T_RANGE[1] / 1.001,
        "ece_bins": bins,
    }


def save_reliability_png(logits: np.ndarray, labels: np.ndarray, temperature: float,
                         path: Path, title: str, bins: int = 15) -> None:
    """Accuracy against confidence per bin, before and after scaling, beside the diagonal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    z = logits.reshape(-1, logits.shape[-1])
    y = labels.reshape(-1)
    fig, axes = plt.subplots(2, 2, figsize=(9, 6), sharex=True,
                             gridspec_kw={"height_ratios": [3, 1]})
    panels = ((0, 1.0, "before"), (1, temperature, f"after (T = {temperature:.3g})"))
    for col, t, name in panels:
        top, bottom = axes[0, col], axes[1, col]
        probs = softmax(z, t)
        edges, acc, conf, counts = reliability(probs, y, bins)
        width = edges[1] - edges[0]
        mids = edges[:-1] + width / 2
        has = counts > 0
        top.bar(mids[has], acc[has], width=width * 0.92, color="#4c72b0", label="accuracy")
        top.plot(mids[has], conf[has], "o", color="#c44e52", ms=4,
                 label="mean confidence")
        top.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
        ece = expected_calibration_error(probs, y, bins)
        top.set_title(f"{name}: ECE {ece:.4f}", fontsize=10)
        top.set_xlim(0, 1)
        top.set_ylim(0, 1)
        bottom.bar(mids, counts / max(len(y), 1), width=width * 0.92, color="#8c8c8c")
        bottom.set_xlabel("confidence (top probability)")
    axes[0, 0].set_ylabel("accuracy")
    axes[1, 0].set_ylabel("share of segments")
    axes[0, 0].legend(loc="upper left", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path, suffix=Path(path).suffix) as tmp:  # no half picture on a full disk
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m calibrate.confidence",
                                 description=__doc__.split("\n\n")[0])
    add_data_args(ap)
    ap.add_argument("--checkpoint", required=True, help="checkpoint to calibrate (rewritten)")
    ap.add_argument("--out", metavar="CKPT", help="write the calibrated checkpoint here instead")
    ap.add_argument("--split", default="val", choices=("train", "val", "test"),
                    help="split to fit on (default val; never fit on test)")
    ap.add_argument("--lookahead", type=int, metavar="K",
                    help="fit on live windows with lookahead K (default: whole clips)")
    ap.add_argument("--pad", choices=PAD_MODES, default="repeat-first")
    ap.add_argument("--png", metavar="PNG",
                    help="reliability diagram (default CKPT.reliability.png)")
    ap.add_argument("--bins", type=int, default=15, help="ECE bins (default 15)")
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args(argv)
    require_data(args)
    if args.lookahead is not None:
        check_lookahead(args.lookahead)
    check_range("--bins", args.bins, 1)
    check_range("--batch-size", args.batch_size, 1)
    out = Path(args.out or args.checkpoint)
    png = Path(args.png) if args.png else out.with_name(out.stem + ".reliability.png")
    check_writable(out, png)
    with checkpoint_and_split(args, "calibrate") as (model, ckpt, data):
        logits, labels = split_logits(model_forward(model), data, args.split, args.lookahead,
                                      args.pad, args.batch_size)
    fit = calibrate(logits, labels, args.bins)
    windows = "whole clips" if args.lookahead is None else f"lookahead {args.lookahead}"
    fitted_on = {"data": str(data.paths.labels.parent), "split": args.split,
                 "clips": len(labels), "segments": int(labels.size), "windows": windows,
                 "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    meta = {**ckpt.meta, "calibration": {
        "temperature": fit["temperature"], "event_threshold": fit["event_threshold"],
        "fitted_on": fitted_on, **{k: v for k, v in fit.items()
                                   if k not in ("temperature", "event_threshold")}}}
    save_reliability_png(logits, labels, fit["temperature"], png,
                         f"{Path(args.checkpoint).name} on {args.split} ({windows}, "
                         f"{labels.size} segments)", args.bins)
    try:
        save_checkpoint(out, model, ckpt.class_names, ckpt.recipe, meta)
    except OSError as e:
        raise UserError(f"cannot write the checkpoint {out} ({e.strerror}); pass a writable "
                        "--out path") from None
    say = print
    say(f"{args.split} split: {len(labels)} clips, {labels.size} segments ({windows}), "
        f"accuracy {fit['accuracy']:.2%}")
    say(f"temperature T = {fit['temperature']:.4f} (NLL {fit['nll_before']:.4f} -> "
        f"{fit['nll_after']:.4f})")
    say(f"ECE ({args.bins} bins): {fit['ece_before']:.4f} -> {fit['ece_after']:.4f}")
    say(f"event threshold p = {fit['event_threshold']:.4f}: event-vs-background F1 "
        f"{fit['event_f1_before']:.4f} -> {fit['event_f1_after']:.4f}")
    if fit["at_limit"]:
        print(f"warning: T is at the edge of its range {T_RANGE}: the split is too small or "
              "too easy to calibrate on", file=sys.stderr)
    say(f"reliability diagram: {png}")
    say(f"calibration stored in {out} (meta.calibration); main.py applies it")
    return 0


if __name__ == "__main__":
    run_cli(main)
