"""Timeline PNG: truth formats, log reading, and the picture's bands in the class colours."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from model.annotations import read_annotations, segment_labels
from model.errors import UserError
from streamer.palette import class_color
from streamer.plot import Classes, main, plot_timeline, read_truth, segment_accuracy
from streamer.records import log_line, read_log

NAMES = ["Church bell", "Bark", "Helicopter", "background"]
BG = 3
ANNOTATIONS = Path(__file__).resolve().parents[1].parent / "shared" / "ave" / "Annotations.txt"


def records(classes: list[int], warmup: int = 1) -> list[dict]:
    out = []
    for s, cid in enumerate(classes):
        probs = np.full(len(NAMES), 0.1)
        probs[cid] = 0.7
        out.append({"segment": s, "start": float(s), "end": float(s + 1), "label": NAMES[cid],
                    "class_id": cid, "confidence": 0.7, "probs": probs.tolist(), "lookahead": 0,
                    "warmup": s < warmup, "latency_ms": {"total": 5.0}})
    return out


PRED = [BG, BG, 1, 1, 1, BG, 2, 2, 2, BG, 0, 0]
CLASSES = Classes.from_log(records(PRED))


def test_truth_formats(tmp_path):
    bg = "background"
    assert read_truth("Bark&abc&good&2&5", 8, CLASSES) == [bg, bg] + ["Bark"] * 3 + [bg] * 3
    ann = tmp_path / "Annotations.txt"
    ann.write_text("Bark&aaa&good&2&5\nHelicopter&bbb&good&0&10\n")
    with pytest.raises(UserError, match="--truth-id"):
        read_truth(str(ann), 10, CLASSES)
    assert read_truth(str(ann), 10, CLASSES, "bbb") == ["Helicopter"] * 10
    assert len(read_truth(str(ann), 12, CLASSES, "aaa")) == 12  # as long as the log
    with pytest.raises(UserError, match="no entry"):
        read_truth(str(ann), 10, CLASSES, "zzz")

    csv = tmp_path / "truth.csv"
    csv.write_text("file,label,start,end\nclip.mp4,Bark,1.4,3.6\nclip.mp4,Helicopter,5.0,6.2\n")
    # a second belongs to the interval holding its middle
    assert read_truth(str(csv), 7, CLASSES) == [bg, "Bark", "Bark", "Bark", bg, "Helicopter", bg]
    assert read_truth(str(csv), 7, CLASSES, "clip") == read_truth(str(csv), 7, CLASSES)

    js = tmp_path / "labels.json"
    js.write_text(json.dumps([3, 1, "Helicopter"]))
    assert read_truth(str(js), 3, CLASSES) == ["background", "Bark", "Helicopter"]
    txt = tmp_path / "labels.txt"
    txt.write_text("Bark\nbackground\n")
    assert read_truth(str(txt), 2, CLASSES) == ["Bark", "background"]

    with pytest.raises(UserError, match="not found"):
        read_truth(str(tmp_path / "missing.csv"), 3, CLASSES)
    bad = tmp_path / "bad.txt"
    bad.write_text("Bark&aaa&2&5\n")
    with pytest.raises(UserError, match="5 fields"):
        read_truth(str(bad), 3, CLASSES)


def test_truth_is_read_as_model_extract_reads_annotations(tmp_path):
    """The extraction's annotations reader: columns in any order, a split column, a spreadsheet's
    BOM, background rows, an AVE header line; the seconds are the training labels."""
    csv = tmp_path / "truth.csv"
    csv.write_text("\ufefflabel,split,file,start,end\nBark,test,clip.mp4,1.4,3.6\n"
                   "background,test,clip.mp4,0,0\nHelicopter,test,clip.mp4,5.0,6.2\n",
                   encoding="utf-8")
    ann = read_annotations(csv)
    ids = segment_labels(ann.files[0].events, 0.0, NAMES[:BG])
    assert read_truth(str(csv), 10, CLASSES) == [NAMES[i] for i in ids]
    ave = tmp_path / "Annotations.txt"
    ave.write_text("Category&VideoID&Quality&StartTime&EndTime\nBark&aaa&good&2&5\n")
    ids = segment_labels(read_annotations(ave).files[0].events, 0.0, NAMES[:BG])
    assert read_truth(str(ave), 10, CLASSES) == [NAMES[i] for i in ids]
    assert ids.tolist() == [BG, BG, 1, 1, 1, BG, BG, BG, BG, BG]
    bad = tmp_path / "bad.csv"
    bad.write_text("file,label,start,end\nclip.mp4,Bark,3,1\n")
    with pytest.raises(UserError, match=r"bad\.csv:2: need 0 <= start <= end"):
        read_truth(str(bad), 3, CLASSES)


@pytest.mark.skipif(not ANNOTATIONS.is_file(), reason="needs ../shared/ave/Annotations.txt")
def test_real_ave_annotation():
    truth = read_truth(str(ANNOTATIONS), 10, CLASSES, "MH3m4AwEcRY")  # Church bell 6..8
    line = next(ln for ln in ANNOTATIONS.read_text().splitlines() if "&MH3m4AwEcRY&" in ln)
    cat, _, _, start, end = line.split("&")
    assert truth == [cat if int(start) <= t < int(end) else "background" for t in range(10)]


def test_read_log_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_log(tmp_path / "none.jsonl")
    bad = tmp_path / "bad.jsonl"  # a line that is not a record is skipped (tests/test_full_disk)
    bad.write_text(log_line(records([1])[0]) + "\n{oops\n")
    assert read_log(bad) == records([1])
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(UserError, match="no predictions"):
        read_log(empty)
    shuffled = tmp_path / "s.jsonl"
    shuffled.write_text("\n".join(log_line(r) for r in records(PRED)[::-1]))
    assert [r["segment"] for r in read_log(shuffled)] == list(range(len(PRED)))


def _pixel(fig, img, ax, x: float, y: float) -> np.ndarray:
    px, py = ax.transData.transform((x, y))
    return img[round(img.shape[0] - py), round(px), :3]


def _hex(c: str) -> np.ndarray:
    return np.array([int(c[k:k + 2], 16) for k in (1, 3, 5)])


def test_bands_in_class_colours_against_truth():
    recs = records(PRED)
    truth_ids = [BG, BG, BG, 1, 1, BG, 2, 2, BG, BG, 0, 0]
    truth = [NAMES[c] for c in truth_ids]
    fig = plot_timeline(recs, truth, "t")
    fig.canvas.draw()
    img = np.asarray(fig.canvas.buffer_rgba())
    ax = fig.axes[0]
    for s, (p, t) in enumerate(zip(PRED, truth_ids, strict=True)):
        got = _pixel(fig, img, ax, s + 0.2, 1.75)
        want = _hex(class_color(p, len(NAMES)))
        if s < 1:  # warm-up: faded towards white
            want = 0.45 * want + 0.55 * 255
        assert np.abs(got - want).max() <= 3, (s, got, want)
        got = _pixel(fig, img, ax, s + 0.2, 0.75)
        assert np.abs(got - _hex(class_color(t, len(NAMES)))).max() <= 3, s
        agree = _pixel(fig, img, ax, s + 0.5, 0.35)
        assert np.abs(agree - _hex("#2ca02c" if p == t else "#d62728")).max() <= 3, s
    # truth labels the log never predicted get colours of their own
    classes = Classes.from_log(recs)
    beep, hum = classes.color("beep"), classes.color("hum")
    predicted = {class_color(c, len(NAMES)) for c in PRED}
    assert beep != hum and not {beep, hum} & predicted and classes.color("beep") == beep
    hits = sum(p == t for p, t in zip(PRED, truth_ids, strict=True))
    assert segment_accuracy(recs, truth) == pytest.approx(hits / len(PRED))
    assert f"({hits}/{len(PRED)})" in fig.get_suptitle()
    assert "UNTRAINED" not in fig.get_suptitle()
    assert "RANDOM" not in fig.get_suptitle()


def test_title_tags_untrained_and_random_features():
    plain = records(PRED)
    rand = [{**r, "untrained": False, "random_features": True} for r in plain]
    head = plot_timeline(rand, None, "t").get_suptitle()
    assert "RANDOM FEATURES" in head and "UNTRAINED" not in head
    both = [{**r, "untrained": True, "random_features": True} for r in plain]
    head = plot_timeline(both, None, "t").get_suptitle()
    assert "UNTRAINED" in head and "RANDOM FEATURES" not in head


def test_cli_writes_png(tmp_path, capsys):
    log = tmp_path / "live.jsonl"
    log.write_text("\n".join(log_line(r) for r in records(PRED)) + "\n")
    truth = tmp_path / "truth.csv"
    truth.write_text("file,label,start,end\nx,Bark,2,5\nx,Helicopter,6,9\nx,Church bell,10,12\n")
    out = tmp_path / "timeline.png"
    assert main([str(log), "--truth", str(truth), "--out", str(out)]) == 0
    img = mpimg.imread(out)
    assert img.ndim == 3 and img.shape[1] >= 800 and img.shape[0] == 480
    assert "segment accuracy 100.0%" in capsys.readouterr().out
    with pytest.raises(UserError, match="does not exist"):
        main([str(log), "--out", str(tmp_path / "no" / "x.png")])
