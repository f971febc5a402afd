"""Confidence calibration: temperature scaling recovers a known temperature (and agrees with a
brute-force float64 search), the event threshold is the F1-best cut, the reliability bins give
model.metrics' ECE, and on a generated dataset the CLI lowers ECE on the validation split and
stores what the streamer then applies."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from calibrate import confidence, temperature
from model.calibration import softmax
from model.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from model.data import AVEPaths, open_dataset
from model.errors import UserError
from model.metrics import event_f1, expected_calibration_error
from model.protocol import TrainOptions
from model.synthetic import make_dataset
from model.train import train
from streamer.options import AppOptions
from streamer.runtime import load_model

TINY = (("hidden", 8), ("embed", 16), ("joint_hidden", 8), ("joint_embed", 16),
        ("attn_hidden", 8), ("attn_dim", 8), ("mlp_hidden", 16), ("layers", 2))


def draw(t_true: float, n: int = 20000, c: int = 10, seed: int = 0):
    """Logits of a model whose labels really are drawn from softmax(logits / t_true)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3, (n, c))
    p = np.exp(z / t_true - (z / t_true).max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = (p.cumsum(1) > rng.random((n, 1))).argmax(1)
    return z, y


def reference_nll(z: np.ndarray, y: np.ndarray, t: float) -> float:
    logp = z / t - np.log(np.exp(z / t).sum(1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


@pytest.mark.parametrize("t_true", [0.5, 1.0, 2.5])
def test_fit_recovers_a_known_temperature(t_true):
    z, y = draw(t_true)
    t = temperature.fit_temperature(z, y)
    assert abs(t - t_true) / t_true < 0.03
    assert temperature.nll(z, y, t) == pytest.approx(reference_nll(z, y, t), rel=1e-10)
    grid = np.exp(np.linspace(math.log(t_true * 0.8), math.log(t_true * 1.25), 201))
    brute = grid[np.argmin([reference_nll(z, y, g) for g in grid])]
    assert t == pytest.approx(brute, rel=3e-3)  # grid step 0.22%


def test_scaling_never_changes_a_label_and_lowers_ece_of_an_overconfident_model():
    z, y = draw(2.0)
    t = temperature.fit_temperature(z, y)
    before, after = softmax(z), softmax(z, t)
    assert (before.argmax(1) == after.argmax(1)).all()
    assert expected_calibration_error(after, y) < expected_calibration_error(before, y) / 3


def test_event_threshold_is_the_f1_best_cut():
    rng = np.random.default_rng(3)
    c, n = 5, 600
    y = np.where(rng.random(n) < 0.4, c - 1, rng.integers(0, c - 1, n))
    logits = rng.normal(0, 1, (n, c))
    logits[np.arange(n), y] += 1.2  # informative but noisy
    logits[:, c - 1] -= 0.8  # biased towards events: a threshold pays
    probs = softmax(logits)
    p, f1 = temperature.fit_event_threshold(probs, y, background=c - 1)
    conf, pred = probs.max(1), probs.argmax(1)
    best = max(event_f1(np.where((pred != c - 1) & (conf < q), c - 1, pred), y, c - 1)["f1"]
               for q in [0.0, *np.unique(conf)])  # brute force over every cut
    assert f1 == pytest.approx(best, abs=1e-12)
    assert p > 1 / c and f1 > event_f1(pred, y, c - 1)["f1"]
    relabelled = temperature.apply_threshold(probs, p, c - 1)
    assert event_f1(relabelled, y, c - 1)["f1"] == pytest.approx(f1)
    # a perfect detector needs no threshold
    assert temperature.fit_event_threshold(np.eye(c)[y] * 0.9 + 0.02, y, c - 1)[0] == 0.0


def test_reliability_bins_give_the_metrics_ece():
    z, y = draw(1.7, n=3000, seed=5)
    probs = softmax(z)
    edges, acc, conf, counts = temperature.reliability(probs, y, bins=15)
    has = counts > 0
    ece = float(np.sum(counts[has] / counts.sum() * np.abs(acc[has] - conf[has])))
    assert ece == pytest.approx(expected_calibration_error(probs, y, 15), rel=1e-12)
    assert counts.sum() == len(y) and len(edges) == 16


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A generated dataset and a briefly trained tiny model; a copy made over-confident on
    purpose (last layer x 4), as a long-trained network tends to be."""
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("conf")
    make_dataset(d / "data", n_clips=60, n_classes=5, seed=0)
    with open_dataset(AVEPaths.from_dir(d / "data")) as data:
        train(data, d / "m.pt", TrainOptions(epochs=6, lr=3e-3, batch_size=8, loss="ce",
                                             val_every=6, overrides=TINY), log=None)
    net, ckpt = load_checkpoint(d / "m.pt")
    with torch.no_grad():
        net.head.mlp[3].weight.mul_(4)
        net.head.mlp[3].bias.mul_(4)
    save_checkpoint(d / "over.pt", net, ckpt.class_names, ckpt.recipe, ckpt.meta)
    torch.set_num_threads(2)
    return d


def test_cli_lowers_ece_on_val_and_the_streamer_applies_the_result(trained, capsys):
    ckpt = trained / "over.pt"
    assert confidence.main(["--data", str(trained / "data"), "--checkpoint", str(ckpt)]) == 0
    out = capsys.readouterr().out
    meta, _ = read_checkpoint(ckpt)
    cal = meta.meta["calibration"]
    assert cal["ece_after"] < cal["ece_before"]
    assert cal["temperature"] > 1  # over-confident -> softened
    assert cal["fitted_on"]["split"] == "val" and cal["fitted_on"]["segments"] == 90
    assert meta.meta["train"]["best_epoch"] > 0  # the rest of meta is kept
    assert f"ECE (15 bins): {cal['ece_before']:.4f} -> {cal['ece_after']:.4f}" in out
    png = trained / "over.reliability.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # what was stored is what the detector and the event intervals use
    model = load_model(AppOptions(source="replay", checkpoint=str(ckpt)))
    assert model.temperature == cal["temperature"]
    assert model.threshold == cal["event_threshold"]
    # the numbers are recomputable from the validation logits
    net, _ = load_checkpoint(ckpt)
    with open_dataset(AVEPaths.from_dir(trained / "data")) as data:
        a, v, y = data.read(data.split("val"))
    with torch.no_grad():
        z = net(torch.from_numpy(a), torch.from_numpy(v)).double().numpy().reshape(-1, 5)
    y = y.reshape(-1)
    assert cal["temperature"] == pytest.approx(temperature.fit_temperature(z, y), rel=1e-4)
    after = softmax(z, cal["temperature"])
    assert cal["ece_after"] == pytest.approx(expected_calibration_error(after, y), abs=1e-5)


def test_live_windows_and_out_file(trained):
    src = trained / "m.pt"
    out = trained / "live.pt"
    assert confidence.main(["--data", str(trained / "data"), "--checkpoint", str(src),
                            "--lookahead", "0", "--out", str(out),
                            "--png", str(trained / "live.png")]) == 0
    assert "calibration" not in read_checkpoint(src)[0].meta  # the source is left alone
    cal = read_checkpoint(out)[0].meta["calibration"]
    assert cal["fitted_on"]["windows"] == "lookahead 0"
    assert (trained / "live.png").exists()


@pytest.mark.parametrize("extra, message", [
    (["--lookahead", "10"], "--lookahead must be in 0..9"),
    (["--png", "/nonexistent/dir/x.png"], "does not exist"),
])
def test_bad_arguments(trained, extra, message):
    with pytest.raises(UserError, match=message):
        confidence.main(["--data", str(trained / "data"), "--checkpoint",
                         str(trained / "m.pt"), *extra])


def test_missing_checkpoint_is_a_user_error(trained):
    with pytest.raises(UserError, match="no such file"):
        confidence.main(["--data", str(trained / "data"), "--checkpoint",
                         str(trained / "none.pt")])
