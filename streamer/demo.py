"""The main job out of the box: generated clips -> features -> a JCA model -> a held-out clip
replayed live through main.py, scored against its ground truth.

    python -m streamer.demo                      # what `make demo` runs
    python -m streamer.demo --fast --headless    # no dashboard, replay as fast as it goes
    python -m streamer.demo --clips 24 --epochs 20 --work /tmp/demo   # other settings

Steps (each cached under --work in a folder named by a hash of the settings it depends on, so a
second run goes straight to the replay and a changed setting rebuilds only what it changes):

  1. clips     --clips generated 10-s training clips (mp4 with sound, streamer.demo_clips) and
               their events.csv (file,label,start,end), plus the 24-s held-out clip
  2. features  python -m model.extract (the real VGG19 / VGGish extractors: the real weights
               when they are in the weights cache, else seeded RANDOM weights, said loudly), at
               the frames per segment the live run will use: with --frames-per-segment auto
               (the default) the K main.py picks on this machine (python -m streamer.autok)
  3. model     python -m model.train --online --lookahead K (trained on the windows a live run at
               lookahead K labels from; --no-online: the paper's whole-clip protocol)
  4. live      python main.py --replay <held-out clip> --checkpoint <model> (real time, with the
               dashboard; an online model runs at the lookahead it was trained for), then the
               live labels against the clip's truth per second, and python -m streamer.plot for
               the timeline PNG

Exit status 1 when the live accuracy is under --target (0.9).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from model import weights
from model.errors import UserError, run_cli
from model.files import atomic_write_text
from model.limits import check_lookahead, check_positive
from streamer import demo_clips
from streamer.demo_clips import BACKGROUND, Clip
from streamer.options import AUTO_FRAMES, frames_arg
from streamer.sinks import LineFile

ROOT = Path(__file__).resolve().parents[1]
CLIPS_VERSION = 1  # bump when streamer.demo_clips changes a picture or a sound
DONE = "done.json"
# The paper preset at half width with 2 JCA layers: enough for three classes, and it trains in
# about a minute on two CPU cores.
HALF_WIDTH = ("hidden=64", "embed=128", "joint_hidden=64", "joint_embed=128", "layers=2")
RANDOM_NOTE = ("features from RANDOM extractor weights: labels come from a model trained on "
               "those features; with real weights run python -m model.weights fetch")


@dataclass(frozen=True)
class DemoOptions:
    work: str = "runs/demo"
    clips: int = 56  # training clips (10% go to validation, 10% to test)
    clip_seconds: float = 10.0  # their length (shorter ones are padded to 10 s by model.extract)
    seed: int = 0  # clips, extractor weights (when random) and training
    frames_per_segment: int | None = None  # VGG19 frames per second; None: auto, as main.py
    weights: str = "auto"  # "auto": real extractor weights if cached, else random; "random"; "real"
    weights_dir: str | None = None
    epochs: int = 30
    lr: float = 2e-3
    batch_size: int = 8
    loss: str = "ce"
    model: tuple[str, ...] = HALF_WIDTH  # model.train --set NAME=VALUE, on the paper preset
    backend: str | None = None  # main.py --backend (None: its default)
    online: bool = True  # model.train --online: trained for the live edge at `lookahead`
    lookahead: int = 0  # seconds of future context per label, trained for and run with
    duration: float | None = None  # replay only the first S seconds of the held-out clip
    fast: bool = False  # replay as fast as the pipeline goes (tests)
    headless: bool = False  # no dashboard
    target: float = 0.9  # live accuracy the demo must reach

    def __post_init__(self) -> None:
        if self.clips < 3:
            raise UserError(f"--clips must be >= 3 (train, val and test need one each), got "
                            f"{self.clips}")
        if not 1 <= self.clip_seconds <= 60:
            raise UserError(f"--clip-seconds must be in 1..60, got {self.clip_seconds}")
        if self.weights not in ("auto", "random", "real"):
            raise UserError(f"--weights must be auto, random or real, got {self.weights!r}")
        check_lookahead(self.lookahead)
        check_positive("--duration", self.duration)


@dataclass(frozen=True)
class Score:
    seconds: int  # labelled seconds of the replay
    correct: int
    accuracy: float
    distractor_seconds: int  # seconds with a sight or a sound only (background by definition)
    distractor_background: float  # fraction of them labelled background
    warmup_accuracy: float | None  # seconds labelled from a padded window (nan-free: None)
    wrong: tuple[tuple[int, str, str], ...]  # (second, truth, live label)


# ---- cache ---------------------------------------------------------------------------------

def settings_key(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]


def is_done(folder: Path) -> bool:
    return (folder / DONE).is_file()


def mark_done(folder: Path, settings: dict[str, Any], **extra: Any) -> None:
    tmp = folder / (DONE + ".tmp")
    tmp.write_text(json.dumps({"settings": settings, **extra}, indent=2) + "\n")
    os.replace(tmp, folder / DONE)


def real_weight_files(weights_dir: str | None) -> dict[str, Path] | None:
    """The cached extractor weight files model.extract would load, or None if one is missing."""
    directory = weights.weights_dir(weights_dir)
    found = {}
    for role, names in (("visual", ["vgg19-keras"]), ("audio", ["vggish", "vggish-torchaudio"])):
        path = next((directory / weights.REGISTRY[n].filename for n in names
                     if (directory / weights.REGISTRY[n].filename).is_file()), None)
        if path is None:
            return None
        found[role] = path
    return found


def use_random_weights(opts: DemoOptions) -> tuple[bool, dict[str, Any]]:
    """(random?, what identifies the extractor weights for the cache key)."""
    files = None if opts.weights == "random" else real_weight_files(opts.weights_dir)
    if opts.weights == "real" and files is None:
        raise UserError(f"--weights real: no VGG19/VGGish weights in "
                        f"{weights.weights_dir(opts.weights_dir)}; run python -m model.weights "
                        "fetch (or use --weights auto)")
    if files is None:
        return True, {"random_seed": opts.seed}
    return False, {role: [p.name, p.stat().st_size, int(p.stat().st_mtime)]
                   for role, p in files.items()}


# ---- steps ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Paths:
    clips: Path  # videos/, events.csv, demo_clip.mp4, demo_clip.csv
    features: Path  # model.extract output
    model: Path  # jca.pt + train_log.jsonl
    live: Path  # predictions.jsonl, events.jsonl, timeline.png, score.json

    @property
    def checkpoint(self) -> Path:
        return self.model / "jca.pt"

    @property
    def held_out(self) -> Path:
        return self.clips / "demo_clip.mp4"


def plan(opts: DemoOptions, random_weights: bool, weights_key: dict[str, Any]
         ) -> tuple[Paths, dict[str, dict[str, Any]]]:
    work = Path(opts.work).resolve()
    s_clips = {"version": CLIPS_VERSION, "clips": opts.clips, "seconds": opts.clip_seconds,
               "seed": opts.seed}
    s_feat = {"clips": settings_key(s_clips), "k": opts.frames_per_segment,
              "random": random_weights, "weights": weights_key}
    s_model = {"features": settings_key(s_feat), "epochs": opts.epochs, "lr": opts.lr,
               "batch_size": opts.batch_size, "loss": opts.loss, "model": list(opts.model),
               "seed": opts.seed, "online": opts.online,
               "lookahead": opts.lookahead if opts.online else None}
    paths = Paths(work / f"clips-{settings_key(s_clips)}",
                  work / f"features-{settings_key(s_feat)}",
                  work / f"model-{settings_key(s_model)}", work / "live")
    return paths, {"clips": s_clips, "features": s_feat, "model": s_model}


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, disable=not console.is_terminal)


def make_clips(opts: DemoOptions, out: Path, console: Console) -> None:
    """The training clips + events.csv, and the held-out clip + its truth CSV."""
    train = demo_clips.training_clips(opts.clips, seed=opts.seed, duration=opts.clip_seconds)
    held = demo_clips.held_out_clip()
    videos = out / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    with _progress(console) as bar:
        task = bar.add_task("generating clips", total=len(train) + 1)
        for clip in train:
            demo_clips.write_clip(videos / f"{clip.name}.mp4", clip)
            bar.advance(task)
        demo_clips.write_clip(out / f"{held.name}.mp4", held)
        bar.advance(task)
    demo_clips.write_annotations(out / "events.csv", train)
    demo_clips.write_annotations(out / f"{held.name}.csv", [held])


def _check(what: str, code: int) -> None:
    if code == 130:
        raise KeyboardInterrupt
    if code != 0:
        raise UserError(f"{what} failed (exit {code}, see above); fix that and run the demo "
                        "again (finished steps are cached)")


def run_step(what: str, cmd: list[str], **kw: Any) -> None:
    """Run one CLI as a user would (from the repository root); a failure ends the demo."""
    _check(what, subprocess.run(cmd, cwd=ROOT, check=False, **kw).returncode)


def run_training(cmd: list[str], log: Path, epochs: int, console: Console) -> None:
    """model.train with one progress bar fed by its per-epoch JSON lines (kept in `log`); its
    other lines (stderr) are printed above the bar."""
    out = LineFile(log, "pass another --work", append=True)
    with _progress(console) as bar, subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        task = bar.add_task("training", total=epochs)
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                r = json.loads(line)
                epoch, loss, best = int(r["epoch"]), float(r["train_loss"]), r.get(
                    "best_val_accuracy")
            except (ValueError, KeyError, TypeError):
                bar.console.print(line.rstrip("\n"), markup=False, highlight=False)
                continue
            out.write(line.rstrip("\n"))
            bar.update(task, completed=epoch, description=f"training: loss {loss:.3f}" + (
                f", best val {best:.1%}" if best is not None else ""))
    out.close()
    _check("training", proc.returncode)
    if out.fault is not None:
        raise out.fault


def extract_cmd(opts: DemoOptions, paths: Paths, random_weights: bool, tty: bool) -> list[str]:
    cmd = [sys.executable, "-m", "model.extract", "--videos", str(paths.clips / "videos"),
           "--annotations", str(paths.clips / "events.csv"), "--out", str(paths.features),
           "--frames-per-segment", str(opts.frames_per_segment)]
    if random_weights:
        cmd += ["--random-weights", "--seed", str(opts.seed)]
    elif opts.weights_dir:
        cmd += ["--weights-dir", opts.weights_dir]
    return cmd + ([] if tty else ["--no-progress"])


def train_cmd(opts: DemoOptions, paths: Paths) -> list[str]:
    # One thread: a small model's many small ops run up to 30x slower when two OpenMP threads
    # compete with other work for two cores (benchmarks/RESULTS.md, demo).
    cmd = [sys.executable, "-m", "model.train", "--data", str(paths.features),
           "--out", str(paths.checkpoint), "--loss", opts.loss, "--lr", str(opts.lr),
           "--epochs", str(opts.epochs), "--batch-size", str(opts.batch_size),
           "--val-every", "1", "--seed", str(opts.seed), "--threads", "1", "--no-progress"]
    for item in opts.model:
        cmd += ["--set", item]
    if opts.online:
        cmd += ["--online", "--lookahead", str(opts.lookahead)]
    if (paths.checkpoint.parent / (paths.checkpoint.name + ".resume")).is_file():
        cmd.append("--resume")  # an interrupted run goes on where it stopped
    return cmd


def pick_frames() -> int:
    """The K main.py's `--frames-per-segment auto` picks here (measured once per machine)."""
    out = subprocess.run([sys.executable, "-m", "streamer.autok"], stdout=subprocess.PIPE,
                         text=True, cwd=ROOT)
    _check("the frames-per-segment probe", out.returncode)
    return int(out.stdout.split()[-1])


def replay_cmd(opts: DemoOptions, paths: Paths, frames: str) -> list[str]:
    cmd = [sys.executable, str(ROOT / "main.py"), "--replay", str(paths.held_out),
           "--checkpoint", str(paths.checkpoint), "--frames-per-segment", frames,
           "--log", str(paths.live / "predictions.jsonl"),
           "--events", str(paths.live / "events.jsonl")]
    if not opts.online:  # an online checkpoint says its lookahead to main.py itself
        cmd += ["--lookahead", str(opts.lookahead)]
    if opts.duration is not None:
        cmd += ["--duration", str(opts.duration)]
    if opts.backend is not None:
        cmd += ["--backend", opts.backend]
    return cmd + (["--fast"] if opts.fast else []) + (["--headless"] if opts.headless else [])


def plot_cmd(paths: Paths, clip: Clip) -> list[str]:
    seen_or_heard = {"audio": "heard", "visual": "seen"}
    distractors = ", ".join(f"{p.label} {seen_or_heard[p.show]} {p.start:g}-{p.end:g} s"
                            for p in clip.parts if not p.event)
    return [sys.executable, "-m", "streamer.plot", str(paths.live / "predictions.jsonl"),
            "--truth", str(paths.clips / f"{clip.name}.csv"), "--out",
            str(paths.live / "timeline.png"),
            "--title", "held-out demo clip: live labels vs truth; one modality only "
                       f"(background by definition):\n{distractors}"]


# ---- scoring -------------------------------------------------------------------------------

def score(records: Sequence[dict[str, Any]], clip: Clip) -> Score:
    """Live labels against the clip's per-second truth."""
    truth = clip.truths()
    rows = [(int(r["segment"]), str(r["label"]), bool(r.get("warmup"))) for r in records
            if 0 <= int(r["segment"]) < len(truth)]
    if not rows:
        raise UserError("the replay labelled no second of the held-out clip; see the messages "
                        "of main.py above")
    ok = {seg: label == truth[seg] for seg, label, _ in rows}
    labels = {seg: label for seg, label, _ in rows}
    distractors = [s for s in clip.distractor_seconds() if s in labels]
    warm = [ok[seg] for seg, _, w in rows if w]
    return Score(
        seconds=len(rows), correct=sum(ok.values()), accuracy=sum(ok.values()) / len(rows),
        distractor_seconds=len(distractors),
        distractor_background=(sum(labels[s] == BACKGROUND for s in distractors)
                               / len(distractors)) if distractors else float("nan"),
        warmup_accuracy=sum(warm) / len(warm) if warm else None,
        wrong=tuple((seg, truth[seg], labels[seg]) for seg in sorted(ok) if not ok[seg]))


def report(s: Score, opts: DemoOptions, console: Console) -> None:
    ok = s.accuracy >= opts.target
    colour = "green" if ok else "red"
    console.print(f"[bold {colour}]live accuracy {s.accuracy:.1%}[/] ({s.correct} of "
                  f"{s.seconds} seconds of the held-out clip, target {opts.target:.0%}, "
                  f"lookahead {opts.lookahead} s)")
    if s.distractor_seconds:
        console.print(f"distractor seconds (a sight without its sound or a sound without its "
                      f"sight) labelled background: {s.distractor_background:.0%} of "
                      f"{s.distractor_seconds}")
    if s.warmup_accuracy is not None:
        console.print(f"warm-up seconds (window still padded): {s.warmup_accuracy:.0%} correct")
    for seg, truth, label in s.wrong:
        console.print(f"  second {seg}: truth {truth}, live {label}")


# ---- main ----------------------------------------------------------------------------------

def run(opts: DemoOptions, console: Console | None = None) -> Score:
    console = console or Console()
    tty = sys.stderr.isatty()  # the CLIs draw their progress bars on stderr
    live_frames = AUTO_FRAMES if opts.frames_per_segment is None else str(opts.frames_per_segment)
    if opts.frames_per_segment is None:  # extract at the K the live run will pick
        opts = replace(opts, frames_per_segment=pick_frames())
    random_weights, weights_key = use_random_weights(opts)
    paths, settings = plan(opts, random_weights, weights_key)
    times: dict[str, float] = {}
    if random_weights:
        console.print(Panel(RANDOM_NOTE, title="RANDOM extractor weights",
                            style="bold yellow"))

    def step(name: str, title: str) -> None:
        times[name] = time.monotonic()
        console.rule(f"[bold]{len(times)}/4 {name}: {title}")

    step("clips", f"{opts.clips} training clips of {opts.clip_seconds:g} s + a held-out clip")
    if is_done(paths.clips):
        console.print(f"cached: {paths.clips}", soft_wrap=True)
    else:
        make_clips(opts, paths.clips, console)
        mark_done(paths.clips, settings["clips"])

    step("features", f"VGG19 ({opts.frames_per_segment} frame/s) + VGGish, "
         f"{'RANDOM' if random_weights else 'real'} weights")
    if is_done(paths.features):
        console.print(f"cached: {paths.features}", soft_wrap=True)
    else:
        run_step("feature extraction", extract_cmd(opts, paths, random_weights, tty))
        mark_done(paths.features, settings["features"])

    step("model", f"JCA, {opts.epochs} epochs, "
         + (f"online for lookahead {opts.lookahead} s" if opts.online else "whole clips"))
    if is_done(paths.checkpoint.parent):
        console.print(f"cached: {paths.checkpoint}", soft_wrap=True)
    else:
        paths.model.mkdir(parents=True, exist_ok=True)
        run_training(train_cmd(opts, paths), paths.model / "train_log.jsonl", opts.epochs,
                     console)
        mark_done(paths.model, settings["model"])
    best = _best_val(paths.checkpoint)
    if best is not None:
        console.print(f"best validation accuracy {best:.1%}: {paths.checkpoint}", soft_wrap=True)

    held = demo_clips.held_out_clip()
    step("live", f"replaying the held-out clip ({held.duration:.0f} s, never trained on)"
         + (" as fast as it goes" if opts.fast else " in real time"))
    paths.live.mkdir(parents=True, exist_ok=True)
    if random_weights:
        console.print("[yellow]main.py marks these labels RANDOM FEATURES because the "
                      "extractor weights are random; the JCA model itself was trained on their "
                      "features, so its labels hold[/]")
    if not opts.headless and tty:
        time.sleep(1.0)  # let the reader see what comes before the dashboard takes the screen
    run_step("the live replay", replay_cmd(opts, paths, live_frames),
             stdout=subprocess.DEVNULL if opts.headless else None)

    from streamer.records import read_log

    s = score(read_log(paths.live / "predictions.jsonl"), held)
    atomic_write_text(paths.live / "score.json", json.dumps(asdict(s), indent=2) + "\n")
    run_step("the timeline plot", plot_cmd(paths, held), stdout=subprocess.DEVNULL)
    times["end"] = time.monotonic()
    console.rule("[bold]result")
    if random_weights:
        console.print(f"[yellow]{RANDOM_NOTE}[/]")
    report(s, opts, console)
    console.print(f"timeline: {paths.live / 'timeline.png'}", soft_wrap=True)
    console.print(f"prediction log: {paths.live / 'predictions.jsonl'}, events: "
                  f"{paths.live / 'events.jsonl'}", soft_wrap=True)
    console.print("time: " + ", ".join(f"{a} {times[b] - times[a]:.0f} s"
                                       for a, b in itertools.pairwise(times))
                  + f"; total {times['end'] - times['clips']:.0f} s")
    return s


def _best_val(checkpoint: Path) -> float | None:
    from model.checkpoint import read_checkpoint

    if not checkpoint.is_file():
        raise UserError(f"training left no checkpoint at {checkpoint}; delete {checkpoint.parent}"
                        " and run the demo again")
    ckpt, _ = read_checkpoint(checkpoint)
    return (ckpt.meta.get("train") or {}).get("best_val_accuracy")


def parse_args(argv: Sequence[str] | None = None) -> DemoOptions:
    d = DemoOptions()
    ap = argparse.ArgumentParser(prog="python -m streamer.demo",
                                 description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--work", default=d.work, help=f"cache folder (default {d.work})")
    ap.add_argument("--clips", type=int, default=d.clips, help="training clips")
    ap.add_argument("--clip-seconds", type=float, default=d.clip_seconds, metavar="S",
                    help="length of a training clip")
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--frames-per-segment", type=frames_arg, default=AUTO_FRAMES, metavar="K",
                    help="VGG19 frames per second, offline and live (default auto: the K "
                         "main.py picks on this machine)")
    ap.add_argument("--weights", default=d.weights, choices=("auto", "random", "real"),
                    help="extractor weights: real if cached (auto), or force one")
    ap.add_argument("--weights-dir", default=None, help="extractor weights cache")
    ap.add_argument("--epochs", type=int, default=d.epochs)
    ap.add_argument("--lr", type=float, default=d.lr)
    ap.add_argument("--batch-size", type=int, default=d.batch_size)
    ap.add_argument("--loss", default=d.loss, choices=("msl", "ce", "bce"))
    ap.add_argument("--set", action="append", default=None, metavar="NAME=VALUE",
                    help="model config override for model.train (repeatable; default "
                         f"{' '.join(HALF_WIDTH)})")
    ap.add_argument("--online", action=argparse.BooleanOptionalAction, default=d.online,
                    help="train for the live edge (model.train --online; default) or on whole "
                         "clips (--no-online)")
    ap.add_argument("--lookahead", type=int, default=d.lookahead, metavar="K",
                    help="seconds of future context per label, trained for and run with")
    ap.add_argument("--backend", default=None, help="main.py --backend (default: its own)")
    ap.add_argument("--duration", type=float, default=None, metavar="S",
                    help="replay only the first S seconds")
    ap.add_argument("--fast", action="store_true", help="replay as fast as it goes")
    ap.add_argument("--headless", action="store_true", help="no dashboard")
    ap.add_argument("--target", type=float, default=d.target)
    a = ap.parse_args(argv)
    return DemoOptions(work=a.work, clips=a.clips, clip_seconds=a.clip_seconds, seed=a.seed,
                       frames_per_segment=a.frames_per_segment, weights=a.weights,
                       weights_dir=a.weights_dir, epochs=a.epochs, lr=a.lr,
                       batch_size=a.batch_size, loss=a.loss,
                       model=d.model if a.set is None else tuple(a.set),
                       backend=a.backend, online=a.online, lookahead=a.lookahead,
                       duration=a.duration, fast=a.fast,
                       headless=a.headless, target=a.target)


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    s = run(opts)
    return 0 if s.accuracy >= opts.target else 1


if __name__ == "__main__":
    run_cli(main)
