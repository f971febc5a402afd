"""Training: the must-show comparison on complementary synthetic data, the reference loss,
interrupt-and-resume to identical weights, the online protocol's windows, loss and checkpoint
record, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from model.checkpoint import load_checkpoint, read_checkpoint
from model.cli_args import parse_overrides
from model.data import AVEPaths, open_dataset
from model.evaluate import evaluate
from model.online import live_windows, segment_losses, weighted_loss
from model.protocol import TrainOptions, online_lookahead
from model.recipe import FeatureRecipe
from model.synthetic import make_dataset
from model.train import compute_loss, resume_path, train

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")

# the paper preset's architecture at a quarter of its widths, so three models train in seconds
SMALL = (("hidden", 32), ("embed", 64), ("joint_hidden", 32), ("joint_embed", 64),
         ("attn_hidden", 32), ("mlp_hidden", 64))
TINY = (("hidden", 8), ("embed", 16), ("joint_hidden", 8), ("joint_embed", 16),
        ("attn_hidden", 8), ("attn_dim", 8), ("mlp_hidden", 16), ("layers", 2))


def test_msl_loss_is_multilabel_soft_margin_on_softmax_outputs():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 10, 5))
    labels = rng.integers(0, 5, (3, 10))
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    y = np.eye(5)[labels]
    sig = 1 / (1 + np.exp(-p))
    want = -(y * np.log(sig) + (1 - y) * np.log(1 - sig)).mean(-1).mean()
    got = compute_loss("msl", torch.tensor(logits), torch.tensor(labels))
    assert abs(got.item() - want) < 1e-12
    ce = -np.log(p[np.arange(3)[:, None], np.arange(10), labels]).mean()
    assert abs(compute_loss("ce", torch.tensor(logits), torch.tensor(labels)).item() - ce) < 1e-12


def test_parse_overrides_types_and_errors():
    assert parse_overrides(["hidden=64", "rnn=gru", "residual=false", "dropout_head=0.5"]) == (
        ("hidden", 64), ("rnn", "gru"), ("residual", False), ("dropout_head", 0.5))
    from model.errors import UserError

    with pytest.raises(UserError, match="NAME=VALUE"):
        parse_overrides(["nonsense=1"])
    with pytest.raises(UserError, match="needs a int"):
        parse_overrides(["hidden=big"])


@pytest.fixture(scope="module")
def complementary(tmp_path_factory):
    d = tmp_path_factory.mktemp("complementary")
    make_dataset(d, n_clips=300, n_classes=9, seed=0)
    return d


def test_full_model_beats_single_modalities_and_reaches_90_percent(complementary, tmp_path):
    """The must-show: on data whose classes need both modalities, the full model (the paper
    architecture at reduced width) clearly beats audio-only and visual-only baselines trained
    the same way, and reaches >= 90% pooled test accuracy."""
    acc = {}
    with open_dataset(AVEPaths.from_dir(complementary)) as data:
        for ablation in (None, "audio-only", "visual-only"):
            opts = TrainOptions(epochs=15, lr=2e-3, batch_size=16, loss="ce", val_every=3,
                                ablation=ablation, overrides=SMALL)
            out = tmp_path / f"{ablation}.pt"
            result = train(data, out, opts, log=None)
            model, ckpt = load_checkpoint(out)
            assert ckpt.meta["train"]["best_epoch"] == result.best_epoch
            report, _ = evaluate(model, ckpt, data, "test", streaming=False)
            acc[ablation] = report["accuracy"]
    print("pooled test accuracy", acc)
    assert acc[None] >= 0.90
    assert acc[None] >= acc["audio-only"] + 0.15
    assert acc[None] >= acc["visual-only"] + 0.15


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    make_dataset(d, n_clips=30, n_classes=4, seed=1)
    FeatureRecipe.ave(visual_weights="random:seed=0").save(d / "recipe.json")
    return d


def _train_cli(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "model.train", "--data", str(data), "--out", str(out),
            "--epochs", "6", "--val-every", "4", "--batch-size", "8", "--lr", "3e-3",
            "--no-progress", "--threads", "1",
            *[a for k, v in TINY for a in ("--set", f"{k}={v}")], *extra]


def test_sigint_then_resume_reaches_the_same_weights(tiny_data, tmp_path):
    """A real Ctrl+C (SIGINT) after epoch 2 leaves a valid checkpoint; --resume then ends with
    exactly the weights (and best checkpoint) of an uninterrupted seeded run. The default msl
    loss with dropout is used, so the RNG state must be restored too."""
    full = tmp_path / "full.pt"
    r = subprocess.run(_train_cli(tiny_data, full), cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2, 3, 4, 5, 6]
    assert [x["val_accuracy"] is not None for x in lines] == [False] * 3 + [True, False, True]

    cut = tmp_path / "cut.pt"
    proc = subprocess.Popen(_train_cli(tiny_data, cut), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stdout:
        seen.append(json.loads(line))
        if seen[-1]["epoch"] == 2:
            proc.send_signal(signal.SIGINT)
            break
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "--resume" in err
    state = torch.load(resume_path(cut), weights_only=True)
    assert 2 <= state["epoch"] < 6
    # interrupted before the first validation: --out still holds a loadable model
    _, ckpt = load_checkpoint(cut)
    assert ckpt.meta["train"]["selected"].startswith("last finished epoch")

    r = subprocess.run(_train_cli(tiny_data, cut, "--resume"), cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    resumed = [json.loads(x) for x in r.stdout.splitlines()]
    assert resumed[0]["epoch"] == state["epoch"] + 1 and resumed[-1]["epoch"] == 6
    assert resumed[-1]["train_loss"] == lines[-1]["train_loss"]

    a = torch.load(resume_path(full), weights_only=True)
    b = torch.load(resume_path(cut), weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    (ca, sa), (cb, sb) = read_checkpoint(full), read_checkpoint(cut)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert ca.meta["train"]["best_epoch"] == cb.meta["train"]["best_epoch"]
    assert ca.meta["random_features"] is True  # recipe.json says random extractor weights
    assert ca.meta["train"]["protocol"]["loss"] == "msl"
    assert ca.recipe == FeatureRecipe.ave(visual_weights="random:seed=0")


def _cli_error(monkeypatch, capsys, args: list[str]) -> str:
    """Run model.train's CLI in-process: exit code 2 and exactly one stderr line."""
    from model.errors import run_cli
    from model.train import main

    monkeypatch.setattr(sys, "argv", ["model.train", *args])
    with pytest.raises(SystemExit) as info:
        run_cli(main)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err


def test_bad_input_gives_one_line_and_exit_2(tiny_data, tmp_path, monkeypatch, capsys):
    import h5py

    args = _train_cli(tiny_data, tmp_path / "x.pt")[3:]
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in tiny_data.iterdir():
        (bad / f.name).symlink_to(f)
    (bad / "val_order.h5").unlink()
    with h5py.File(bad / "val_order.h5", "w") as f:
        f.create_dataset("order", data=np.array([0, 99]))
    assert "out of range" in _cli_error(monkeypatch, capsys, [*args, "--data", str(bad)])
    err = _cli_error(monkeypatch, capsys, [*args, "--data", str(tmp_path / "nowhere")])
    assert "not found" in err
    err = _cli_error(monkeypatch, capsys, [*args, "--epochs", "0"])
    assert "--epochs must be >= 1" in err
    err = _cli_error(monkeypatch, capsys, [*args, "--set", "rnn=transformer"])
    assert "rnn must be one of" in err
    (bad / "visual_feature.h5").unlink()
    with h5py.File(bad / "visual_feature.h5", "w") as f:
        f.create_dataset("avadataset", shape=(29, 10, 7, 7, 512), dtype=np.float32)
    assert "clip counts disagree" in _cli_error(monkeypatch, capsys, [*args, "--data", str(bad)])


def test_nan_met_mid_training_is_one_line_in_a_real_process(tiny_data, tmp_path):
    """NaN features are caught when the clip is first read, mid-training; the real process
    prints one line, exits 2, and shows no traceback."""
    import h5py

    nan = tmp_path / "nan"
    nan.mkdir()
    for f in tiny_data.iterdir():
        if f.name != "audio_feature.h5":
            (nan / f.name).symlink_to(f)
    with h5py.File(tiny_data / "audio_feature.h5") as f:
        audio = f["avadataset"][()]
    with open_dataset(AVEPaths.from_dir(tiny_data)) as data:
        victim = int(data.split("train")[3])
    audio[victim, 4, 5] = np.nan
    with h5py.File(nan / "audio_feature.h5", "w") as f:
        f.create_dataset("avadataset", data=audio)
    r = subprocess.run(_train_cli(nan, tmp_path / "x.pt"), cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    assert f"audio_feature.h5: clip {victim} has NaN" in r.stderr


def test_never_reads_the_test_split(tiny_data, tmp_path):
    """Selection is on validation only: NaN in every test clip's features goes unnoticed."""
    import h5py

    d = tmp_path / "poisoned_test"
    d.mkdir()
    for f in tiny_data.iterdir():
        if f.name != "visual_feature.h5":
            (d / f.name).symlink_to(f)
    with open_dataset(AVEPaths.from_dir(tiny_data)) as data:
        test = data.split("test")
        _, visual, _ = data.read(np.arange(data.n_clips))
    visual[test] = np.nan
    with h5py.File(d / "visual_feature.h5", "w") as f:
        f.create_dataset("avadataset", data=visual)
    with open_dataset(AVEPaths.from_dir(d)) as data:
        result = train(data, tmp_path / "m.pt", TrainOptions(epochs=2, val_every=1,
                                                             batch_size=8, overrides=TINY),
                       log=None)
    assert result.best_epoch >= 1


def test_resume_refuses_changed_options(tiny_data, tmp_path, capsys):
    out = tmp_path / "r.pt"
    with open_dataset(AVEPaths.from_dir(tiny_data)) as data:
        opts = TrainOptions(epochs=1, batch_size=8, overrides=TINY)
        lines = []
        train(data, out, opts, log=lines.append, progress=True)
        assert json.loads(lines[0])["val_accuracy"] is not None  # the last epoch validates
        assert "best val" in capsys.readouterr().err  # the progress bar's status
        from model.errors import UserError

        with pytest.raises(UserError, match=r"changed: lr"):
            train(data, out, TrainOptions(epochs=2, batch_size=8, lr=1e-3, overrides=TINY),
                  resume=True, log=None)
        with pytest.raises(UserError, match="already finished 1 epochs"):
            train(data, out, opts, resume=True, log=None)
    assert os.path.exists(out)


def test_ablations_cli_trains_every_row_and_prints_the_papers_numbers(
        tiny_data, tmp_path, monkeypatch, capsys):
    from model.ablations import main
    from model.config import ABLATIONS, TABLE2
    from model.errors import run_cli

    out = tmp_path / "table2.json"
    monkeypatch.setattr(sys, "argv", [
        "model.ablations", "--data", str(tiny_data), "--rows", "all", "--epochs", "1",
        "--batch-size", "8", "--out-dir", str(tmp_path / "rows"), "--json", str(out),
        *[a for k, v in TINY for a in ("--set", f"{k}={v}")]])
    with pytest.raises(SystemExit) as info:
        run_cli(main)
    assert info.value.code == 0
    printed = capsys.readouterr().out
    rows = json.loads(out.read_text())["rows"]
    assert [r["row"] for r in rows] == ["full", *ABLATIONS]
    with open_dataset(AVEPaths.from_dir(tiny_data)) as data:
        for r in rows:
            model, ckpt = load_checkpoint(r["checkpoint"])
            report, _ = evaluate(model, ckpt, data, "test", streaming=False)
            assert report["accuracy"] == r["accuracy"]
            assert r["paper"] == TABLE2[None if r["row"] == "full" else r["row"]]
            assert f"{r['paper']:.1f}" in printed


# ---- the online protocol -------------------------------------------------------------------

def test_online_windows_are_the_windows_a_live_run_labels_from():
    """Every training window is the live detector's window (streamer.window, fed segment by
    segment) and an independent NumPy construction; padded positions weigh nothing and the
    positions a live run at lookahead k labels from weigh 1 + edge_weight."""
    from streamer.window import Window

    rng = np.random.default_rng(0)
    audio = rng.random((2, 10, 128), dtype=np.float32)
    visual = rng.random((2, 10, 7, 7, 512), dtype=np.float32)
    labels = rng.integers(0, 3, (2, 10))
    k, ends = 1, 3
    w = live_windows(audio, visual, labels, k, ends, 4.0, np.random.default_rng(5))
    assert w.audio.shape == (2 * (1 + ends), 10, 128) and w.weights.shape == (8, 10)
    seen = []
    for i in range(len(w.audio)):
        clip = i // (1 + ends)
        e = 9 - int((w.weights[i] == 0).sum())  # the padded positions say where it ends
        seen.append(e)
        want = np.concatenate([np.repeat(audio[clip, :1], 9 - e, 0), audio[clip, :e + 1]])
        np.testing.assert_array_equal(w.audio[i], want)
        live = Window(10, "repeat-first")
        for t in range(e + 1):
            live.push(audio[clip, t], visual[clip, t])
        live_audio, live_visual = live.arrays()
        np.testing.assert_array_equal(w.audio[i], live_audio)
        np.testing.assert_array_equal(w.visual[i], live_visual)
        np.testing.assert_array_equal(
            w.labels[i], np.concatenate([np.repeat(labels[clip, :1], 9 - e), labels[clip, :e + 1]]))
        weight = np.r_[np.zeros(9 - e), np.ones(e + 1)]
        weight[9 - k:] += 4.0 if e == 9 else 0.0
        weight[9 - k] += 0.0 if e == 9 else 4.0
        np.testing.assert_array_equal(w.weights[i], weight)
    for clip in range(2):  # the whole clip, then distinct ends that label a segment: k..8
        mine = seen[clip * 4:(clip + 1) * 4]
        assert mine[0] == 9 and len(set(mine[1:])) == ends and all(k <= e <= 8 for e in mine[1:])


def test_weighted_loss_matches_a_float64_reference():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(4, 10, 5))
    labels = rng.integers(0, 5, (4, 10))
    weights = rng.random((4, 10)) * (rng.random((4, 10)) < 0.7)
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    y = np.eye(5)[labels]
    sig = 1 / (1 + np.exp(-p))
    msl = -(y * np.log(sig) + (1 - y) * np.log(1 - sig)).mean(-1)  # (4, 10)
    ce = -np.log(np.take_along_axis(p, labels[..., None], -1))[..., 0]
    t = [torch.tensor(x) for x in (logits, labels, weights)]
    for name, per_segment in (("msl", msl), ("ce", ce)):
        want = (per_segment * weights).sum() / weights.sum()
        assert abs(weighted_loss(name, *t).item() - want) < 1e-12
    for name in ("msl", "ce", "bce"):  # unweighted, they are the paper protocol's losses
        got = segment_losses(name, t[0], t[1]).mean().item()
        assert abs(got - compute_loss(name, t[0], t[1]).item()) < 1e-12


def test_online_checkpoint_records_the_lookahead_it_was_trained_for(tiny_data, tmp_path,
                                                                     monkeypatch, capsys):
    online, paper = tmp_path / "online.pt", tmp_path / "paper.pt"
    for out, extra in ((online, ["--online", "--lookahead", "1"]), (paper, [])):
        r = subprocess.run(_train_cli(tiny_data, out, "--epochs", "2", "--val-every", "1",
                                      *extra), cwd=ROOT, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr
    _, ckpt = load_checkpoint(online)
    protocol = ckpt.meta["train"]["protocol"]
    assert (protocol["online"], protocol["lookahead"]) == (True, 1)
    assert online_lookahead(ckpt.meta) == 1
    assert online_lookahead(load_checkpoint(paper)[1].meta) is None
    assert online_lookahead({"train": {"protocol": {"epochs": 300}}}) is None  # older files
    assert online_lookahead({}) is None
    args = _train_cli(tiny_data, tmp_path / "x.pt")[3:]
    assert "add --online" in _cli_error(monkeypatch, capsys, [*args, "--lookahead", "1"])
    err = _cli_error(monkeypatch, capsys, [*args, "--online", "--lookahead", "10"])
    assert "--lookahead must be in 0..9" in err
