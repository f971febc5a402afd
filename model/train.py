"""Train JCA on AVE-format features, selecting on the validation split only.

    python -m model.train --data AVE/ --out runs/jca.pt
    python -m model.train --data runs/synth --out runs/synth.pt --epochs 30 --lr 1e-3 --loss ce
    python -m model.train --data runs/synth --out runs/synth.pt --resume   # after Ctrl+C
    python -m model.train --data runs/synth --out runs/live.pt --online --lookahead 0

The default protocol is the reference implementation's (FACTS section 2): Adam lr 1e-4, batch 64,
300 epochs, MultiLabelSoftMarginLoss on the softmax outputs, ReduceLROnPlateau(0.5, 10) on the
epoch's training loss, validation every 5 epochs and the best-on-validation weights kept.
--online trains the same model on the windows a live run labels from (model.online); the
checkpoint's meta.train.protocol records `online` and the `lookahead` it was trained for.

Files: --out CKPT gets the best-on-validation model (a model.checkpoint file, written atomically
at each improvement); CKPT.resume holds the last finished epoch (weights, optimizer, scheduler,
RNG state) and is rewritten atomically after every epoch, so Ctrl+C at any moment leaves both
valid and --resume continues to the same weights an uninterrupted run reaches (seeded, CPU).
One JSON line per epoch goes to stdout; the progress bar goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from model.checkpoint import atomic_torch_save, save_checkpoint
from model.cli_args import (
    add_data_args,
    add_protocol_args,
    open_from_args,
    protocol_options,
    require_data,
)
from model.config import ABLATIONS
from model.data import AVEData
from model.errors import UserError, run_cli
from model.metrics import pooled_accuracy
from model.network import JCANet
from model.online import live_windows, segment_losses, weighted_loss
from model.protocol import TrainOptions

STATE_FORMAT = "jca-live-train-state"


@dataclass
class TrainResult:
    best_val_accuracy: float
    best_epoch: int
    epochs_run: int
    history: list[dict[str, Any]]
    checkpoint: Path


def compute_loss(name: str, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """logits (B, T, C), labels (B, T) class ids -> scalar loss: the mean of the per-segment
    losses (model.online.segment_losses; msl is the reference's MultiLabelSoftMarginLoss applied
    to the softmax outputs)."""
    return segment_losses(name, logits, labels).mean()


@torch.no_grad()
def predict(model: torch.nn.Module, data: AVEData, split: str, batch_size: int = 64,
            cache: bool | None = None, temperature: float = 1.0
            ) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities softmax(logits / T) (n, 10, C) float32 and labels (n, 10) of a split, in its
    file order."""
    model.eval()
    probs, labels = [], []
    for audio, visual, y in data.batches(split, batch_size, cache=cache):
        logits = model(torch.from_numpy(audio), torch.from_numpy(visual))  # (B, 10, C)
        probs.append(torch.softmax(logits.float() / temperature, -1).numpy())
        labels.append(y)
    return np.concatenate(probs), np.concatenate(labels)


def resume_path(out: Path) -> Path:
    return out.with_name(out.name + ".resume")


def _fingerprint(data: AVEData) -> dict[str, Any]:
    """What must not change between an interrupted run and its resumption."""
    return {"n_clips": data.n_clips, "class_names": data.class_names,
            "splits": {k: [len(v), int(v.sum())] for k, v in data.splits.items()}}


def _meta(data: AVEData, opts: TrainOptions, best_val: float, best_epoch: int,
          epochs_run: int, history: list[dict[str, Any]], selected: str) -> dict[str, Any]:
    synthetic = data.paths.labels.parent / "synthetic.json"
    return {
        "train": {"protocol": opts.to_dict(), "selected": selected,
                  "best_val_accuracy": best_val, "best_epoch": best_epoch,
                  "epochs_run": epochs_run, "history": history,
                  "dataset": {"labels": str(data.paths.labels), "classes": data.n_classes,
                              "clips": {k: len(v) for k, v in data.splits.items()},
                              "synthetic": synthetic.exists()}},
        "random_features": bool(data.recipe is not None and data.recipe.random_weights),
        "recipe_known": data.recipe is not None,
    }


def _save_best(out: Path, model: torch.nn.Module, data: AVEData, meta: dict[str, Any]) -> None:
    try:
        save_checkpoint(out, model, data.class_names, data.recipe, meta)
    except OSError as e:
        raise UserError(f"cannot write the checkpoint {out} ({e.strerror}); pass a writable "
                        "--out path") from None


def train(data: AVEData, out: str | Path, opts: TrainOptions, *, resume: bool = False,
          progress: bool = False, log: Callable[[str], None] | None = print,
          cache: bool | None = None) -> TrainResult:
    """Train on data's train split, validate on its val split, keep the best model at `out`."""
    out = Path(out)
    state_file = resume_path(out)
    torch.use_deterministic_algorithms(True, warn_only=True)
    cfg = opts.config(data.n_classes)
    torch.manual_seed(opts.seed)
    model = JCANet(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=opts.plateau_factor, patience=opts.plateau_patience)
    start, best_val, best_epoch, history = 0, -1.0, 0, []
    if resume:
        start, best_val, best_epoch, history = _load_state(
            state_file, model, optimizer, scheduler, opts, data)
    elif state_file.exists():
        state_file.unlink()  # a fresh run must not be resumed from an older one's state
    epochs_run = start

    columns = (TextColumn("epoch {task.completed}/{task.total}"), BarColumn(),
               TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn())
    console = Console(stderr=True)
    with Progress(*columns, console=console, disable=not progress) as bar:
        task = bar.add_task("train", total=opts.epochs, completed=start,
                            status=_status(history))
        try:
            for epoch in range(start + 1, opts.epochs + 1):
                t0 = time.perf_counter()
                model.train()
                total, count = 0.0, 0
                ends = np.random.default_rng([opts.seed, epoch, 1])  # the online windows
                for audio, visual, labels in data.batches("train", opts.batch_size,
                                                          seed=opts.seed, epoch=epoch,
                                                          cache=cache):
                    loss = _batch_loss(model, opts, audio, visual, labels, ends)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    total += loss.item() * len(labels)
                    count += len(labels)
                train_loss = total / count
                if not math.isfinite(train_loss):
                    raise UserError(f"training loss became {train_loss} at epoch {epoch}; "
                                    "lower --lr")
                lr = optimizer.param_groups[0]["lr"]
                scheduler.step(train_loss)
                val_acc = None
                if epoch % opts.val_every == 0 or epoch == opts.epochs:
                    probs, y = predict(model, data, "val", opts.batch_size, cache=cache)
                    val_acc = pooled_accuracy(probs, y)
                    if val_acc > best_val:
                        best_val, best_epoch = val_acc, epoch
                        record = {"epoch": epoch, "train_loss": train_loss, "lr": lr,
                                  "val_accuracy": val_acc}
                        _save_best(out, model, data, _meta(
                            data, opts, best_val, best_epoch, epoch, [*history, record],
                            "best validation accuracy"))
                record = {"epoch": epoch, "train_loss": train_loss, "lr": lr,
                          "val_accuracy": val_acc,
                          "best_val_accuracy": best_val if best_epoch else None,
                          "best_epoch": best_epoch,
                          "seconds": round(time.perf_counter() - t0, 3)}
                history.append({k: record[k] for k in ("epoch", "train_loss", "lr",
                                                       "val_accuracy")})
                atomic_torch_save({
                    "format": STATE_FORMAT, "epoch": epoch, "options": opts.to_dict(),
                    "data": _fingerprint(data), "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "torch_rng": torch.get_rng_state(), "best_val": best_val,
                    "best_epoch": best_epoch, "history": history}, state_file)
                epochs_run = epoch
                if log is not None:
                    log(json.dumps(record))
                bar.update(task, completed=epoch, status=_status(history))
        except KeyboardInterrupt:
            _on_interrupt(out, state_file, data, opts, epochs_run, console)
            raise
    return TrainResult(best_val, best_epoch, epochs_run, history, out)


def _batch_loss(model: torch.nn.Module, opts: TrainOptions, audio: np.ndarray,
                visual: np.ndarray, labels: np.ndarray, ends: np.random.Generator
                ) -> torch.Tensor:
    """The training loss of one batch of clips: on the whole clips (the paper), or on the live
    windows of the online protocol."""
    if not opts.online:
        logits = model(torch.from_numpy(audio), torch.from_numpy(visual))
        return compute_loss(opts.loss, logits, torch.from_numpy(labels))
    w = live_windows(audio, visual, labels, opts.lookahead, opts.online_ends, opts.edge_weight,
                     ends)
    logits = model(torch.from_numpy(w.audio), torch.from_numpy(w.visual))
    return weighted_loss(opts.loss, logits, torch.from_numpy(w.labels),
                         torch.from_numpy(w.weights))


def _status(history: list[dict[str, Any]]) -> str:
    if not history:
        return ""
    last = history[-1]
    vals = [h["val_accuracy"] for h in history if h["val_accuracy"] is not None]
    best = f"  best val {max(vals):.2%}" if vals else ""
    return f"loss {last['train_loss']:.4f}{best}"


def _on_interrupt(out: Path, state_file: Path, data: AVEData, opts: TrainOptions,
                  epochs_run: int, console: Console) -> None:
    """Ctrl+C: the last finished epoch is already on disk; make sure --out exists too."""
    if epochs_run == 0:
        console.print("interrupted during the first epoch: nothing saved")
        return
    if not out.exists():  # no validation yet: keep the last finished epoch's weights
        state = torch.load(state_file, map_location="cpu", weights_only=True)
        model = JCANet(opts.config(data.n_classes))
        model.load_state_dict(state["model"])
        _save_best(out, model, data, _meta(data, opts, -1.0, 0, epochs_run, state["history"],
                                           "last finished epoch (interrupted before validation)"))
    console.print(f"interrupted after epoch {epochs_run}: best model in {out}; "
                  f"continue with --resume (state in {state_file})")


def _load_state(state_file: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                scheduler: Any, opts: TrainOptions, data: AVEData
                ) -> tuple[int, float, int, list[dict[str, Any]]]:
    if not state_file.exists():
        raise UserError(f"nothing to resume: {state_file} does not exist; run without --resume")
    try:
        state = torch.load(state_file, map_location="cpu", weights_only=True)
    except Exception:
        raise UserError(f"{state_file} is not a readable training state; delete it and run "
                        "without --resume") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise UserError(f"{state_file} is not a training state file; run without --resume")
    saved = {**TrainOptions().to_dict(), **state["options"]}  # fields added since: defaults
    now = opts.to_dict()
    changed = [k for k in now if k != "epochs" and saved.get(k) != now[k]]
    if changed:
        raise UserError("--resume needs the options of the interrupted run; changed: "
                        + ", ".join(f"{k} ({saved.get(k)} -> {now[k]})" for k in changed))
    if state["data"] != _fingerprint(data):
        raise UserError(f"{state_file} was made on a different dataset; point --data at the "
                        "interrupted run's data or run without --resume")
    if state["epoch"] >= opts.epochs:
        raise UserError(f"the run already finished {state['epoch']} epochs; raise --epochs to "
                        "train longer")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    return state["epoch"], state["best_val"], state["best_epoch"], list(state["history"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_args(ap)
    ap.add_argument("--out", required=True, help="checkpoint to write (best on validation)")
    add_protocol_args(ap)
    ap.add_argument("--ablation", choices=sorted(ABLATIONS), help="a Table 2 row")
    ap.add_argument("--resume", action="store_true", help="continue from CKPT.resume")
    ap.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                    help="progress bar on stderr (default: when stderr is a terminal)")
    args = ap.parse_args()
    require_data(args)
    opts = protocol_options(args, ablation=args.ablation)
    opts.config(2)  # bad --set values fail before any file is read
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    with open_from_args(args) as data:
        result = train(data, args.out, opts, resume=args.resume, progress=progress,
                       cache=args.cache_features, log=lambda line: print(line, flush=True))
    print(f"best validation accuracy {result.best_val_accuracy:.2%} at epoch "
          f"{result.best_epoch}; model saved to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    run_cli(main)
