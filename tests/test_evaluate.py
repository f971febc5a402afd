"""Metrics against hand-computed cases; the evaluate CLI's numbers recomputed independently
from --predictions; streaming accuracy against windows built by hand."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from model.checkpoint import load_checkpoint, save_checkpoint
from model.config import preset
from model.data import AVEPaths, open_dataset
from model.errors import UserError
from model.evaluate import check_compatible, evaluate, render, stream_predict
from model.metrics import (
    confusion_matrix,
    event_f1,
    expected_calibration_error,
    per_class_accuracy,
    pooled_accuracy,
    summarize,
)
from model.network import JCANet
from model.provenance import Provenance
from model.recipe import FeatureRecipe
from model.synthetic import make_dataset

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


TINY = {"hidden": 8, "embed": 16, "joint_hidden": 8, "joint_embed": 16, "attn_hidden": 8,
        "attn_dim": 8, "mlp_hidden": 16, "layers": 2}


def test_pooled_accuracy_pools_segments_not_clips():
    # clip 0: 1 of 2 right; clip 1: 3 of 3 right (as (n, T, C) with T = 2... flattened)
    probs = np.array([[0.6, 0.4], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7], [0.9, 0.1]])
    labels = np.array([0, 1, 1, 1, 0])
    assert pooled_accuracy(probs, labels) == 4 / 5
    assert pooled_accuracy(probs.reshape(5, 1, 2), labels.reshape(5, 1)) == 4 / 5


def test_confusion_per_class_and_event_f1_by_hand():
    labels = np.array([0, 0, 1, 2, 2, 2])  # class 2 = background
    pred = np.array([0, 2, 1, 2, 0, 2])
    cm = confusion_matrix(pred, labels, 4)
    want = np.zeros((4, 4), int)
    want[0, 0] = want[0, 2] = want[1, 1] = want[2, 0] = 1
    want[2, 2] = 2
    np.testing.assert_array_equal(cm, want)
    acc = per_class_accuracy(cm)
    np.testing.assert_allclose(acc[:3], [0.5, 1.0, 2 / 3])
    assert np.isnan(acc[3])  # no segments of class 3
    # event positives: true events at 0,1,2; predicted events at 0,2,4 -> tp = 2
    f = event_f1(pred, labels, background=2)
    assert f["precision"] == pytest.approx(2 / 3) and f["recall"] == pytest.approx(2 / 3)
    assert f["f1"] == pytest.approx(2 / 3)
    assert event_f1(np.array([2, 2]), np.array([2, 2]), 2)["f1"] == 0.0


def test_ece_by_hand():
    # confidences 0.95 (right), 0.9 (wrong), 0.55 (right), 0.6 (right); 10 bins of width 0.1
    probs = np.array([[0.95, 0.05], [0.9, 0.1], [0.45, 0.55], [0.6, 0.4]])
    labels = np.array([0, 1, 1, 0])
    # bin (0.9, 1.0]: 0.95 -> acc 1, conf 0.95;  bin (0.8, 0.9]: 0.9 -> acc 0, conf 0.9
    # bin (0.5, 0.6]: 0.55 and 0.6 -> acc 1, conf 0.575
    want = 0.25 * 0.05 + 0.25 * 0.9 + 0.5 * 0.425
    assert expected_calibration_error(probs, labels, bins=10) == pytest.approx(want)
    assert expected_calibration_error(np.eye(3), np.arange(3)) == 0.0


def test_summarize_is_json_ready():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=(4, 10))
    labels = rng.integers(0, 2, (4, 10))  # class 2 never occurs
    s = summarize(probs, labels, ["a", "b", "background"])
    text = json.dumps(s, allow_nan=False)
    assert json.loads(text)["per_class_accuracy"]["background"] is None
    assert sum(map(sum, s["confusion"])) == 40 == s["segments"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("eval")
    make_dataset(d, n_clips=24, n_classes=5, seed=2)
    torch.manual_seed(0)
    net = JCANet(preset("paper", num_classes=5, **TINY)).eval()
    with open_dataset(AVEPaths.from_dir(d)) as data:
        names = data.class_names
    ckpt = d / "net.pt"
    save_checkpoint(ckpt, net, names, None, {"train": {"best_val_accuracy": 0.5}})
    return d, ckpt, net


def test_cli_numbers_recompute_exactly_from_predictions(setup, tmp_path):
    d, ckpt, _ = setup
    out_json, out_npz = tmp_path / "r.json", tmp_path / "p.npz"
    r = subprocess.run([sys.executable, "-m", "model.evaluate", "--data", str(d),
                        "--checkpoint", str(ckpt), "--json", str(out_json),
                        "--predictions", str(out_npz), "--threads", "1"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    report = json.loads(out_json.read_text())
    p = np.load(out_npz)
    probs, labels = p["probs"], p["labels"]
    assert probs.shape == (len(p["clips"]), 10, 5) and probs.dtype == np.float32
    # independent recomputation: a plain loop over every segment of the split
    right = total = 0
    for clip_probs, clip_labels in zip(probs, labels, strict=True):
        for seg_probs, label in zip(clip_probs, clip_labels, strict=True):
            best = max(range(len(seg_probs)), key=lambda c: (seg_probs[c], -c))
            right += best == label
            total += 1
    assert report["accuracy"] == right / total
    assert report["segments"] == total
    printed = re.search(r"pooled segment accuracy\s*│\s*([\d.]+)%", r.stdout)
    assert printed and printed.group(1) == f"{100 * right / total:.2f}"
    with open_dataset(AVEPaths.from_dir(d)) as data:
        np.testing.assert_array_equal(p["clips"], data.split("test"))
        np.testing.assert_array_equal(labels, data.labels[data.split("test")])
    # streaming: k = 9 sees the whole clip, so it equals the offline numbers
    stream = p["stream_probs"]
    assert stream.shape == (10, *probs.shape)
    np.testing.assert_allclose(stream[9], probs, atol=1e-6)
    for k in range(10):
        acc = float(np.mean(stream[k].argmax(-1) == labels))
        assert report["streaming"]["accuracy_by_lookahead"][str(k)] == acc
    png = tmp_path / "r.confusion.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.array(report["confusion"]).sum() == total


def test_streaming_windows_match_hand_built_live_windows(setup):
    """Segment t with lookahead k is labelled from segments max(0, e-9)..e, e = min(t+k, 9),
    left-padded with copies of segment 0, at the position of t: built here by hand."""
    d, _, net = setup
    with open_dataset(AVEPaths.from_dir(d)) as data:
        stream = stream_predict(net, data, "test", pad="repeat-first", batch_size=20)
        a, v, _ = data.read(data.split("test")[:2])
    for i in range(2):
        for k in (0, 3, 9):
            for t in (0, 4, 9):
                e = min(t + k, 9)
                ids = [0] * (9 - e) + list(range(e + 1))  # left-pad with segment 0
                pos = 9 - (e - t)
                assert ids[pos] == t
                with torch.no_grad():
                    logits = net(torch.from_numpy(a[i, ids][None]),
                                 torch.from_numpy(v[i, ids][None]))
                want = torch.softmax(logits, -1)[0, pos].numpy()
                np.testing.assert_allclose(stream[k, i, t], want, atol=1e-5)


def test_evaluation_applies_the_calibrated_temperature(setup, tmp_path):
    """A calibrated checkpoint is evaluated as the live detector runs it: softmax(logits / T)."""
    d, _, net = setup
    with open_dataset(AVEPaths.from_dir(d)) as data:
        names = data.class_names
        calibrated = tmp_path / "calibrated.pt"
        save_checkpoint(calibrated, net, names, None, {"calibration": {"temperature": 2.5}})
        model, ckpt = load_checkpoint(calibrated)
        report, arrays = evaluate(model, ckpt, data, "test", streaming=True)
        a, v, _ = data.read(data.split("test"))
    with torch.no_grad():
        logits = net(torch.from_numpy(a), torch.from_numpy(v)).double().numpy()  # (n, 10, C)
    z = logits / 2.5
    want = np.exp(z - z.max(-1, keepdims=True))
    want /= want.sum(-1, keepdims=True)
    assert report["temperature"] == 2.5
    np.testing.assert_allclose(arrays["probs"], want, atol=1e-5)
    np.testing.assert_allclose(arrays["stream_probs"][9], want, atol=1e-5)
    assert report["ece"] == pytest.approx(
        expected_calibration_error(arrays["probs"], arrays["labels"], report["ece_bins"]))


def test_report_names_a_model_trained_on_random_features(setup, tmp_path):
    d, _, net = setup
    with open_dataset(AVEPaths.from_dir(d)) as data:
        ckpt_path = tmp_path / "rf.pt"
        save_checkpoint(ckpt_path, net, data.class_names, None, {"random_features": True})
        model, ckpt = load_checkpoint(ckpt_path)
        report, _ = evaluate(model, ckpt, data, "test", streaming=False)
    console = Console(record=True, file=io.StringIO(), width=200)
    render(report, console)
    text = console.export_text()
    assert report["random_features"] is True
    assert f"RANDOM FEATURES: {Provenance.RANDOM_FEATURES.reason}" in text
    assert "UNTRAINED" not in text
    assert report["train"]["online_lookahead"] is None and "whole clips" in text


def test_report_says_which_lookahead_an_online_checkpoint_was_trained_for(setup, tmp_path):
    d, _, net = setup
    with open_dataset(AVEPaths.from_dir(d)) as data:
        ckpt_path = tmp_path / "online.pt"
        save_checkpoint(ckpt_path, net, data.class_names, None,
                        {"train": {"protocol": {"online": True, "lookahead": 1}}})
        model, ckpt = load_checkpoint(ckpt_path)
        report, _ = evaluate(model, ckpt, data, "test", streaming=False)
    console = Console(record=True, file=io.StringIO(), width=200)
    render(report, console)
    assert report["train"]["online_lookahead"] == 1
    assert "online, for lookahead 1 s" in console.export_text()


def test_checkpoint_must_match_the_dataset(setup, tmp_path):
    d, _, net = setup
    from model.checkpoint import load_checkpoint

    with open_dataset(AVEPaths.from_dir(d)) as data:
        other = tmp_path / "other.pt"
        save_checkpoint(other, net, ["w", "x", "y", "z", "background"], None)
        with pytest.raises(UserError, match="class names differ"):
            check_compatible(load_checkpoint(other)[1], data)
        data.recipe = FeatureRecipe.ave()
        save_checkpoint(other, net, data.class_names, FeatureRecipe.ave(
            visual_preprocess="torchvision"), None)
        with pytest.raises(UserError, match="visual_preprocess"):
            check_compatible(load_checkpoint(other)[1], data)


def test_cli_bad_checkpoint_is_one_line(setup, tmp_path, monkeypatch, capsys):
    from model.errors import run_cli
    from model.evaluate import main

    d, _, _ = setup
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    monkeypatch.setattr(sys, "argv", ["model.evaluate", "--data", str(d), "--checkpoint",
                                      str(bad)])
    with pytest.raises(SystemExit) as info:
        run_cli(main)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.pt" in err
