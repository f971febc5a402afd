"""Timeline picture of a prediction log: predicted class per second against the truth, and the
confidence beneath.

    python -m streamer.plot runs/live.jsonl --out timeline.png
    python -m streamer.plot runs/live.jsonl --truth clip.csv --out timeline.png
    python -m streamer.plot live.jsonl --truth Annotations.txt --truth-id RUhOCu3LNXM --out t.png

The truth is one of: AVE `Annotations.txt` lines (`Category&YouTubeID&Quality&Start&End`; a
literal line works too), a CSV `file,label,start,end` with that header row (seconds), or
per-second labels (a JSON list, or a text file with one label per line). A second t is labelled
by the interval holding its middle, t + 0.5 (for AVE's whole seconds: Start <= t < End).
"""

from __future__ import annotations

import argparse
import json
import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model.annotations import AnnotatedFile, detect_format, parse_annotations, second_labels
from model.classes import BACKGROUND
from model.errors import UserError, run_cli
from model.files import atomic_path
from model.provenance import Provenance
from streamer.palette import PALETTE, UNKNOWN_COLOR, class_color, short_name
from streamer.records import read_predictions


@dataclass(frozen=True)
class Classes:
    """Class ids and names as far as a log tells them; the last class is background."""
    names: dict[int, str]
    n: int
    unknown: dict[str, int] = field(default_factory=dict)  # labels the log never predicted

    @classmethod
    def from_log(cls, records: Sequence[Mapping[str, Any]]) -> Classes:
        names = {int(r["class_id"]): str(r["label"]) for r in records}
        n = max([len(r.get("probs") or ()) for r in records] + [max(names) + 1])
        return cls(names, n)

    @property
    def background(self) -> str:
        return self.names.get(self.n - 1, BACKGROUND)

    def id_of(self, label: str) -> int | None:
        key = label.strip().lower()
        if key in (BACKGROUND, "bg", self.background.lower()):
            return self.n - 1
        for cid, name in self.names.items():
            if name.lower() == key:
                return cid
        return None

    def color(self, label: str) -> str:
        cid = self.id_of(label)
        if cid is not None:
            return class_color(cid, self.n)
        # palette colours no predicted class of this log uses, in order
        k = self.unknown.setdefault(label.strip().lower(), len(self.unknown))
        used = {cid % len(PALETTE) for cid in self.names if cid != self.n - 1}
        free = [c for i, c in enumerate(PALETTE) if i not in used] or [UNKNOWN_COLOR]
        return free[k % len(free)]


def read_truth(spec: str, n_seconds: int, classes: Classes,
               truth_id: str | None = None) -> list[str]:
    """Per-second true labels (length `n_seconds`, or the truth's own length if longer)."""
    path = Path(spec)
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise UserError(f"truth {spec} is not a text file; give an AVE Annotations.txt, a "
                            "file,label,start,end CSV, or a per-second label list") from None
    elif "&" in spec:  # one literal Annotations.txt line
        text = spec
    else:
        raise UserError(f"truth {spec} not found; give an AVE Annotations.txt line or file, a "
                        "file,label,start,end CSV, or a per-second label list")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise UserError(f"truth {spec} is empty; give at least one annotation")
    if path.suffix.lower() == ".json":
        try:
            labels = json.loads(text)
        except json.JSONDecodeError:
            labels = None
        if not isinstance(labels, list):
            raise UserError(f"truth {spec} is not a JSON list of per-second labels")
        return [classes.names.get(x, f"class {x}") if isinstance(x, int) else str(x)
                for x in labels]
    if detect_format(text) is None:
        return lines
    files = _pick(parse_annotations(text, spec).files, truth_id, spec)
    events = [e for f in files for e in f.events]
    end = max([n_seconds] + [math.ceil(e.end) for e in events])
    bg = classes.background
    return [bg if label == BACKGROUND else label for label in second_labels(events, 0.0, end)]


def _pick(files: list[AnnotatedFile], truth_id: str | None, spec: str) -> list[AnnotatedFile]:
    """The annotated files of the one clip the truth is about."""
    if truth_id is not None:
        files = [f for f in files if truth_id in (f.file, Path(f.file).stem)]
        if not files:
            raise UserError(f"truth {spec} has no entry for {truth_id}; check --truth-id")
    elif len({f.file for f in files}) > 1:
        raise UserError(f"truth {spec} describes {len({f.file for f in files})} clips; pick one "
                        "with --truth-id ID")
    return files


def _runs(labels: Sequence[str]) -> list[tuple[str, int, int]]:
    runs: list[tuple[str, int, int]] = []
    for i, lab in enumerate(labels):
        if runs and runs[-1][0] == lab and runs[-1][2] == i:
            runs[-1] = (lab, runs[-1][1], i + 1)
        else:
            runs.append((lab, i, i + 1))
    return runs


def _ink(hex_color: str) -> str:
    r, g, b = (int(hex_color[k:k + 2], 16) for k in (1, 3, 5))
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "white"


def plot_timeline(records: Sequence[Mapping[str, Any]], truth: Sequence[str] | None = None,
                  title: str = ""):
    """A matplotlib Figure: band rows (predicted, truth, agreement) and the confidence below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    classes = Classes.from_log(records)
    starts = np.array([float(r.get("start", r["segment"])) for r in records])
    ends = np.array([float(r.get("end", r["segment"] + 1)) for r in records])
    pred = [str(r["label"]) for r in records]
    conf = np.array([float(r.get("confidence", np.nan)) for r in records])
    t_end = max(float(ends.max()), float(len(truth)) if truth else 0.0)

    width = min(24.0, max(9.0, t_end * 0.22))  # inches
    fig = plt.figure(figsize=(width, 4.8), dpi=100)
    gs = fig.add_gridspec(2, 1, height_ratios=[1.3, 1], hspace=0.12)
    ax, axc = fig.add_subplot(gs[0]), fig.add_subplot(gs[1])
    axc.sharex(ax)

    rows = {"predicted": 2.0}
    if truth:
        rows.update({"truth": 1.0, "agree": 0.35})
    for s, e, lab, r in zip(starts, ends, pred, records, strict=True):
        ax.add_patch(Rectangle((s, 1.6), e - s, 0.8, color=classes.color(lab), lw=0,
                               alpha=0.45 if r.get("warmup") else 1.0))
    label_runs = [(lab, starts[a], ends[b - 1], 2.0) for lab, a, b in _runs(pred)]
    correct = None
    if truth:
        for lab, a, b in _runs(truth):
            ax.add_patch(Rectangle((a, 0.6), b - a, 0.8, color=classes.color(lab), lw=0))
            label_runs.append((lab, float(a), float(b), 1.0))
        correct = []
        for s, e, r in zip(starts, ends, records, strict=True):
            seg = int(np.floor(s + 0.5))
            if 0 <= seg < len(truth):
                ok = str(r["label"]).lower() == truth[seg].lower() or \
                    classes.id_of(truth[seg]) == int(r["class_id"])
                correct.append(ok)
                ax.add_patch(Rectangle((s, 0.2), e - s, 0.3, lw=0,
                                       color="#2ca02c" if ok else "#d62728"))
    px_per_s = (width - 2.85) * fig.dpi / t_end
    for lab, a, b, y in label_runs:  # name the runs wide enough to hold their name
        text = short_name(lab)
        if (b - a) * px_per_s >= 6.0 * len(text) + 6:
            ax.text((a + b) / 2, y, text, ha="center", va="center", fontsize=8,
                    color=_ink(classes.color(lab)), clip_on=True)
    ax.set_ylim(0.1, 2.5)
    ax.set_yticks(list(rows.values()), list(rows))
    ax.tick_params(axis="x", labelbottom=False)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    shown = dict.fromkeys(pred + list(truth or ()))
    handles = [Patch(color=classes.color(lab), label=short_name(lab)) for lab in shown]
    if any(r.get("warmup") for r in records):
        handles.append(Patch(color="#808080", alpha=0.45, label="(faded: warm-up)"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8,
              frameon=False, title="class", title_fontsize=8)

    t_mid = (starts + ends) / 2
    axc.step(np.append(starts, ends[-1]), np.append(conf, conf[-1]), where="post", lw=1.5,
             color="#1f77b4", label="confidence")
    axc.fill_between(np.append(starts, ends[-1]), np.append(conf, conf[-1]), step="post",
                     color="#1f77b4", alpha=0.15)
    if truth:
        p_true = []
        for s, r in zip(starts, records, strict=True):
            seg = int(np.floor(s + 0.5))
            cid = classes.id_of(truth[seg]) if 0 <= seg < len(truth) else None
            probs = r.get("probs") or ()
            p_true.append(float(probs[cid]) if cid is not None and cid < len(probs) else np.nan)
        axc.plot(t_mid, p_true, ls="--", marker=".", lw=1, color="#ff7f0e",
                 label="p(true class)")
    axc.set_ylim(0, 1.02)
    axc.set_xlim(0, t_end)
    axc.set_ylabel("confidence")
    axc.set_xlabel("stream time (s)")
    axc.grid(alpha=0.3)
    axc.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)

    head = title or "predictions"
    if correct:
        acc = sum(correct) / len(correct)
        head += f"   segment accuracy {acc:.0%} ({sum(correct)}/{len(correct)})"
    provenance = Provenance.of(any(r.get("untrained") for r in records),
                               any(r.get("random_features") for r in records))
    if provenance.tag:
        head += f"   [{provenance.tag}: {provenance.reason}]"
    # about 12 characters of 10-pt text per inch: wrap rather than run off the right edge
    lines = [w for line in head.splitlines() for w in textwrap.wrap(line, int(width * 12)) or [""]]
    fig.suptitle("\n".join(lines), fontsize=10, x=0.02, ha="left")
    top = 0.9 - 0.035 * max(0, len(lines) - 2)
    fig.subplots_adjust(left=0.95 / width, right=1 - 1.9 / width, top=top, bottom=0.12)
    return fig


def segment_accuracy(records: Sequence[Mapping[str, Any]], truth: Sequence[str]) -> float:
    """Fraction of logged segments whose label is the truth of that second."""
    classes = Classes.from_log(records)
    hits = total = 0
    for r in records:
        seg = int(np.floor(float(r.get("start", r["segment"])) + 0.5))
        if 0 <= seg < len(truth):
            total += 1
            hits += classes.id_of(truth[seg]) == int(r["class_id"])
    return hits / total if total else float("nan")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m streamer.plot", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("log", help="prediction log (JSONL)")
    ap.add_argument("--truth", help="ground truth: Annotations.txt (or one line), CSV, or labels")
    ap.add_argument("--truth-id", help="which clip of a multi-clip truth file (YouTube id / file)")
    ap.add_argument("--title", default=None)
    ap.add_argument("--out", required=True, help="PNG to write")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if not out.parent.is_dir():
        raise UserError(f"cannot write {out}: folder {out.parent} does not exist; create it")
    got = read_predictions(args.log)
    records = got.records
    truth = None
    if args.truth:
        n = int(np.ceil(max(float(r.get("end", r["segment"] + 1)) for r in records)))
        truth = read_truth(args.truth, n, Classes.from_log(records), args.truth_id)
    fig = plot_timeline(records, truth, args.title or Path(args.log).name)
    try:
        with atomic_path(out, suffix=out.suffix) as tmp:  # a full disk leaves no half picture
            fig.savefig(tmp)
    except OSError as e:
        raise UserError(f"cannot write {out} ({e.strerror or e}); free space on its disk or "
                        "pass another --out") from None
    msg = f"wrote {out} ({len(records)} segments, {got.skipped_text()}"
    if truth:
        msg += f", segment accuracy {segment_accuracy(records, truth):.1%}"
    print(msg + ")")
    return 0


if __name__ == "__main__":
    run_cli(main)
