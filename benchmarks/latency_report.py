"""The latency benchmark's report: a markdown table and a PNG of the stage distributions.

    text = markdown(report)          # report: benchmarks.latency's JSON object
    plot(report, "runs/latency.png")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from model.provenance import Provenance

LABELS = {
    "capture_to_close": "capture -> segment close",
    "frame": "VGG19 per frame (while the segment is open)",
    "visual": "VGG19 left at close",
    "audio": "VGGish at close",
    "extraction": "extraction at close (VGG19 left + VGGish)",
    "model": "window model",
    "output": "output (record assembly)",
    "wait": "wait (earlier segments, window copy, softmax, sinks)",
    "close_to_label": "**segment close -> label**",
    "capture_to_label": "capture -> label",
}
PLOTTED = ("capture_to_close", "frame", "extraction", "model", "output", "wait",
           "close_to_label", "capture_to_label")


def fmt(x: float | None, digits: int = 1) -> str:
    if x is None:
        return "-"
    if abs(x) >= 100 or digits == 0:
        return f"{x:.0f}"
    return f"{x:.{digits}f}" if abs(x) >= 1 else f"{x:.{digits + 1}g}"


def ratio_text(values: list[float]) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    lo, hi = min(vals), max(vals)
    return f"{lo:.2f}" if abs(hi - lo) < 0.005 else f"{lo:.2f} to {hi:.2f}"


def run_line(run: dict[str, Any]) -> str:
    drops = ", ".join(f"{k} {v}" for k, v in run["drops"].items())
    load = run["load_avg_1m"]
    return (f"Real-time factor **{fmt(run['rtf'], 2)}** (compute busy {run['busy_s']:.1f} s for "
            f"{run['stream_s']:.1f} s of stream, wall {run['wall_s']:.1f} s); segments "
            f"{run['segments']} (log {run['log_records']}, expected {run['expected_segments']})"
            f"; drops: {drops}; load average {load[0]:.1f} -> {load[1]:.1f}.")


def stage_rows(stages: dict[str, dict[str, float]]) -> list[str]:
    rows = ["| stage | p50 ms | p95 ms | p99 ms | max ms | n |", "|---|---|---|---|---|---|"]
    for name, d in stages.items():
        rows.append(f"| {LABELS.get(name, name)} | {fmt(d['p50'])} | {fmt(d['p95'])} | "
                    f"{fmt(d['p99'])} | {fmt(d['max'])} | {d['n']} |")
    return rows


def comparison_rows(comp: dict[str, Any]) -> list[str]:
    rows = [f"#### {comp['title']} (baseline: {comp['baseline']}; ratio = variant / baseline, "
            "same repeat)", "",
            "| variant | K | mode | close->label p50 / p95 / p99 ms | extraction p50 ms | "
            "model p50 ms | VGG19/frame p50 ms | RTF | drops | ratio close->label p50 | "
            "ratio p95 | ratio model p50 | ratio RTF |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for v in comp["variants"]:
        c = v["close_to_label"]
        rows.append(
            f"| {v['variant']} | {v['k']} | {v['mode']} | {fmt(c['p50'])} / {fmt(c['p95'])} / "
            f"{fmt(c['p99'])} | {fmt(v['extraction_p50'])} | {fmt(v['model_p50'])} | "
            f"{fmt(v['frame_p50'])} | {ratio_text(v['rtf'])} | {v['drops']} | "
            f"{ratio_text(v['ratio_close_to_label_p50'])} | "
            f"{ratio_text(v['ratio_close_to_label_p95'])} | "
            f"{ratio_text(v['ratio_model_p50'])} | {ratio_text(v['ratio_rtf'])} |")
    for name, why in comp.get("skipped", {}).items():
        rows.append(f"| {name} | - | - | not run: {why} | | | | | | | | | |")
    return rows


def stream_rows(streams: dict[str, Any]) -> list[str]:
    rows = ["| N | RTF (worst stream) | drops | close->label p50 / p95 / p99 ms | "
            "VGG19/frame p50 ms (incl. queue) | VGG19 mean batch, busy | VGGish mean batch, busy "
            "| model mean batch, busy | real time |", "|---|---|---|---|---|---|---|---|---|"]
    for r in streams["runs"]:
        st = r["stages"]
        c = st["close_to_label"]
        w = r["workers"]
        cells = [f"{w[n]['mean_batch']:.1f}, {100 * w[n]['utilization']:.0f}%"
                 for n in ("vgg19", "vggish", "model")]
        rows.append(f"| {r['streams']} | {fmt(r['rtf'], 2)} | {r['drops']} | {fmt(c['p50'])} / "
                    f"{fmt(c['p95'])} / {fmt(c['p99'])} | {fmt(st['frame']['p50'])} | "
                    f"{' | '.join(cells)} | {'yes' if r['kept_up'] else 'no'} |")
    return rows


def markdown(report: dict[str, Any]) -> str:
    cfg, main = report["config"], report["main"]
    m = report["machine"]
    prov = Provenance.from_record(cfg)
    out = [f"### Pipeline latency: {cfg['source']}, {main['mode']}, K = {main['k']}, "
           f"{cfg['backend']} ({cfg['backend_precision']}) on {cfg['device']}", "",
           f"Command: `{report['command']}`  ",
           f"Device: {m['device_name']}, torch {m['torch']}, {m['torch_threads']} torch threads, "
           f"{m['cpu_count']} CPUs; extractors in {cfg['extractor_precision']}, lookahead "
           f"{cfg['lookahead']}" + (f"; {prov.tag}: {prov.reason}" if prov.tag else "") + ".", ""]
    out += stage_rows(main["stages"])
    out += ["", run_line(main), ""]
    for comp in report["comparisons"]:
        out += [*comparison_rows(comp), ""]
    if report.get("streams"):
        s = report["streams"]
        out += [f"#### Concurrent streams ({s['mode']}, K = {s['k']}, {s['seconds']} s each; "
                "extraction and model batched across streams)", ""]
        out += stream_rows(s)
        out += ["", f"Largest N kept in real time: **{s['max_realtime']}**.", ""]
    if report["targets"]:
        out += ["| target | measured | limit | met |", "|---|---|---|---|"]
        for t in report["targets"]:
            met = "-" if t["met"] is None else "yes" if t["met"] else "**no**"
            out.append(f"| {t['target']} | {t['measured']} | {t['limit']} | {met} |")
        out.append("")
    return "\n".join(out)


def plot(report: dict[str, Any], path: str | Path) -> Path:
    """Box plots of the main run's stages; ECDFs of close -> label per compared variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    main = report["main"]
    curves = [(f"{c['name']}: {r['name']}", r) for c in report["comparisons"]
              for r in c["runs"] if r["repeat"] == 0]
    curves += [(f"streams: N={r['streams']}", r) for r in (report.get("streams") or {})
               .get("runs", [])]
    ncols = 2 if curves else 1
    fig, axes = plt.subplots(1, ncols, figsize=(7 * ncols, 4.8), squeeze=False)
    ax = axes[0][0]
    data, names = [], []
    for stage in PLOTTED:
        vals = main["frame_ms"] if stage == "frame" else [r[stage] for r in main["records"]]
        if len(vals):
            data.append(np.maximum(np.asarray(vals, np.float64), 1e-2))
            names.append(LABELS[stage].replace("**", ""))
    ax.boxplot(data[::-1], orientation="horizontal", whis=(5, 95), flierprops={"ms": 3})
    ax.set_yticks(range(1, len(names) + 1), names[::-1], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("ms (log; whiskers p5..p95)")
    ax.set_title(f"{main['mode']}, K = {main['k']}, {report['config']['device']}", fontsize=10)
    if curves:
        ax = axes[0][1]
        for label, r in curves:
            vals = [x["close_to_label"] for x in r["records"]]
            if vals:
                ax.ecdf(np.maximum(vals, 1e-2), label=label)
        ax.set_xscale("log")
        ax.set_xlabel("segment close -> label, ms (log)")
        ax.set_ylabel("fraction of segments")
        ax.legend(fontsize=7)
        ax.set_title("comparisons", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
