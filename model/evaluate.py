"""Evaluate a checkpoint on a split of an AVE-format dataset.

    python -m model.evaluate --data runs/synth --checkpoint runs/synth.pt
    python -m model.evaluate --data DIR --checkpoint CKPT --split val --json out.json \
        --predictions out.npz

Reports the dataset's metric (segment accuracy pooled over every segment of the split, argmax
over all classes), per-class accuracy, the confusion matrix (JSON, and a PNG beside --json or at
--confusion-png), event-vs-background precision/recall/F1, expected calibration error, and the
streaming accuracy for each lookahead k = 0..9: every segment labelled only from the 10-segment
window that ends k segments after it, padded during warm-up exactly as the live detector does
(model.data.window_for_segment) - the accuracy a live user gets. k = 9 sees whole clips and
equals the offline accuracy. `train.online_lookahead` says which lookahead a checkpoint trained
with `model.train --online` was trained for (null: the paper's whole-clip protocol).

--predictions OUT.npz holds per-segment probabilities and labels so anyone can recompute every
number: probs (n, 10, C) float32, labels (n, 10) int64, clips (n,) row indices,
class_names (C,), stream_probs (10, n, 10, C) float32 (lookahead k first), stream_pad.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from model.calibration import calibrated_temperature
from model.checkpoint import Checkpoint, load_checkpoint
from model.cli_args import add_data_args, open_from_args, require_data
from model.data import PAD_MODES, SEGMENTS, AVEData, window_for_segment
from model.errors import UserError, run_cli
from model.files import atomic_path, atomic_write_text
from model.metrics import pooled_accuracy, summarize
from model.protocol import online_lookahead
from model.provenance import Provenance
from model.train import predict


@torch.no_grad()
def stream_predict(model: torch.nn.Module, data: AVEData, split: str, pad: str = "repeat-first",
                   batch_size: int = 64, cache: bool | None = None,
                   temperature: float = 1.0) -> np.ndarray:
    """Streaming probabilities (10, n, 10, C): [k, i, t] labels segment t of clip i from the
    window that ends at min(t + k, 9), as a live stream that starts at the clip's first segment
    and ends at its last would (model.data.window_for_segment)."""
    model.eval()
    clips_per_batch = max(1, batch_size // SEGMENTS)
    outs = []
    for audio, visual, _ in data.batches(split, clips_per_batch, cache=cache):
        # every window a live stream over the clip sees: the one ending at e, for e = 0..9
        wa = np.stack([window_for_segment(a, e, 0, pad)[0] for a in audio
                       for e in range(SEGMENTS)])  # (b * 10, 10, 128)
        wv = np.stack([window_for_segment(v, e, 0, pad)[0] for v in visual
                       for e in range(SEGMENTS)])  # (b * 10, 10, 7, 7, 512)
        logits = model(torch.from_numpy(wa), torch.from_numpy(wv))  # (b * 10, 10, C)
        probs = torch.softmax(logits.float() / temperature, -1).numpy()
        outs.append(probs.reshape(len(audio), SEGMENTS, SEGMENTS, -1))  # (b, end, pos, C)
    by_end = np.concatenate(outs)  # (n, 10 window ends, 10 positions, C)
    result = np.empty((SEGMENTS, by_end.shape[0], SEGMENTS, by_end.shape[-1]), np.float32)
    for k in range(SEGMENTS):
        for t in range(SEGMENTS):
            # the same (end, position) window_for_segment gives for segment t of a 10-segment clip
            _, pos = window_for_segment(np.zeros(SEGMENTS), t, k)
            end = t + (SEGMENTS - 1 - pos)
            result[k, :, t] = by_end[:, end, pos]
    return result


def evaluate(model: torch.nn.Module, ckpt: Checkpoint, data: AVEData, split: str = "test",
             batch_size: int = 64, streaming: bool = True, pad: str = "repeat-first",
             cache: bool | None = None, ece_bins: int = 15
             ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """All metrics of a split (JSON-ready dict) and the arrays behind them. Probabilities use the
    checkpoint's calibrated temperature (1 when uncalibrated), as the live detector does."""
    check_compatible(ckpt, data)
    t = calibrated_temperature(ckpt.meta)
    probs, labels = predict(model, data, split, batch_size, cache=cache, temperature=t)
    report: dict[str, Any] = {"split": split, "checkpoint": ckpt.path, "temperature": t,
                              "clips": len(labels), "class_names": list(data.class_names),
                              **summarize(probs, labels, data.class_names, ece_bins)}
    arrays = {"probs": probs, "labels": labels, "clips": data.split(split),
              "class_names": np.array(data.class_names)}
    if streaming:
        stream = stream_predict(model, data, split, pad, batch_size, cache, temperature=t)
        report["streaming"] = {"pad": pad, "accuracy_by_lookahead": {
            str(k): pooled_accuracy(stream[k], labels) for k in range(SEGMENTS)}}
        arrays["stream_probs"] = stream
        arrays["stream_pad"] = np.array(pad)
    report["train"] = {k: ckpt.meta.get("train", {}).get(k)
                       for k in ("best_val_accuracy", "best_epoch", "selected")}
    report["train"]["online_lookahead"] = online_lookahead(ckpt.meta)  # None: whole clips
    report["random_features"] = ckpt.meta.get("random_features")
    return report, arrays


def check_compatible(ckpt: Checkpoint, data: AVEData) -> None:
    if list(ckpt.class_names) != list(data.class_names):
        if len(ckpt.class_names) != data.n_classes:
            raise UserError(f"checkpoint {ckpt.path} has {len(ckpt.class_names)} classes, the "
                            f"dataset {data.n_classes}; evaluate on the dataset it was trained "
                            "on")
        raise UserError(f"checkpoint {ckpt.path} class names differ from the dataset's (e.g. "
                        f"{ckpt.class_names[0]!r} vs {data.class_names[0]!r}); evaluate on the "
                        "dataset it was trained on")
    if ckpt.recipe is not None and data.recipe is not None:
        bad = ckpt.recipe.mismatches(data.recipe)
        if bad:
            raise UserError(f"features were made with another recipe than the model was "
                            f"trained on ({bad[0]}); re-extract them with the training recipe")


def save_confusion_png(cm: np.ndarray, class_names: list[str], path: Path,
                       title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(class_names)
    rows = cm.sum(1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, float), where=rows > 0)
    size = max(5.0, 0.32 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), class_names, rotation=90, fontsize=7)
    ax.set_yticks(range(n), class_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the true class")
    fig.tight_layout()
    with atomic_path(path, suffix=Path(path).suffix) as tmp:  # no half picture on a full disk
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def render(report: dict[str, Any], console: Console) -> None:
    head = Table(title=f"{report['split']} split: {report['clips']} clips, "
                       f"{report['segments']} segments")
    head.add_column("metric")
    head.add_column("value", justify="right")
    head.add_row("pooled segment accuracy", f"{report['accuracy']:.2%}")
    ev = report["event_vs_background"]
    head.add_row("event vs background F1", f"{ev['f1']:.4f}")
    head.add_row("event precision / recall", f"{ev['precision']:.4f} / {ev['recall']:.4f}")
    head.add_row(f"ECE ({report['ece_bins']} bins)", f"{report['ece']:.4f}")
    trained_for = (report.get("train") or {}).get("online_lookahead")
    head.add_row("training", "whole clips" if trained_for is None
                 else f"online, for lookahead {trained_for} s")
    provenance = Provenance.of(untrained=False, random_features=bool(report.get("random_features")))
    if provenance.tag:
        head.add_row("features", f"[yellow]{provenance.tag}[/]: {provenance.reason}")
    console.print(head)
    cls = Table(title="per-class accuracy")
    cls.add_column("class")
    cls.add_column("segments", justify="right")
    cls.add_column("accuracy", justify="right")
    cm = np.array(report["confusion"])
    for i, (name, acc) in enumerate(report["per_class_accuracy"].items()):
        cls.add_row(name, str(int(cm[i].sum())), "-" if acc is None else f"{acc:.2%}")
    console.print(cls)
    if "streaming" in report:
        st = Table(title=f"streaming accuracy (warm-up padding: {report['streaming']['pad']})")
        st.add_column("lookahead k (s)", justify="right")
        st.add_column("accuracy", justify="right")
        for k, acc in report["streaming"]["accuracy_by_lookahead"].items():
            st.add_row(k, f"{acc:.2%}")
        console.print(st)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_args(ap)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--split", default="test", choices=("train", "val", "test"))
    ap.add_argument("--json", metavar="OUT", help="write every metric as JSON")
    ap.add_argument("--predictions", metavar="OUT.npz", help="save per-segment probabilities")
    ap.add_argument("--confusion-png", metavar="PNG",
                    help="confusion matrix image (default: beside --json)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--pad", choices=PAD_MODES, default="repeat-first",
                    help="warm-up padding of the streaming windows")
    ap.add_argument("--no-streaming", action="store_true",
                    help="skip the streaming accuracy (it costs 10 forward passes per clip)")
    ap.add_argument("--ece-bins", type=int, default=15)
    args = ap.parse_args()
    require_data(args)
    if args.batch_size < 1 or args.ece_bins < 1:
        raise UserError("--batch-size and --ece-bins must be >= 1")
    outputs = [Path(p) for p in (args.json, args.predictions, args.confusion_png) if p]
    for p in outputs:
        if not p.parent.exists():
            raise UserError(f"cannot write {p}: directory {p.parent} does not exist")
    model, ckpt = load_checkpoint(args.checkpoint)
    with open_from_args(args) as data:
        report, arrays = evaluate(model, ckpt, data, args.split, args.batch_size,
                                  not args.no_streaming, args.pad, args.cache_features,
                                  args.ece_bins)
    render(report, Console())
    png = (Path(args.confusion_png) if args.confusion_png
           else Path(args.json).with_suffix(".confusion.png") if args.json else None)
    if png is not None:
        save_confusion_png(np.array(report["confusion"]), report["class_names"], png,
                           f"{Path(args.checkpoint).name} on {report['split']}: "
                           f"{report['accuracy']:.2%}")
        report["confusion_png"] = str(png)
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
    if args.predictions:
        np.savez_compressed(args.predictions, **arrays)
    written = [p for p in (args.json, args.predictions, png) if p]
    if written:
        print(f"wrote {', '.join(map(str, written))}", file=sys.stderr)


if __name__ == "__main__":
    run_cli(main)
