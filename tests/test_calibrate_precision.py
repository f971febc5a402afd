"""Precision check: agreement / accuracy change against fp32 by hand, the CPU report for the
precisions that run here (fp16 and bf16 autocast, torch.ao int8) stored in the checkpoint, and
the streamer's backend refusing a precision the checkpoint marks not allowed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calibrate import precision
from model.calibration import check_precision_allowed as check_allowed
from model.checkpoint import read_checkpoint, save_checkpoint
from model.config import preset
from model.data import AVEPaths, open_dataset
from model.errors import UserError
from model.network import JCANet
from model.synthetic import make_dataset
from model.train import predict
from streamer.options import AppOptions
from streamer.runtime import load_runtime

SMALL = dict(hidden=16, embed=32, attn_hidden=16, attn_dim=16, joint_hidden=16, joint_embed=32,
             mlp_hidden=16, layers=2)


def test_compare_counts_agreement_and_points():
    labels = np.array([[0, 1, 2, 2]])
    ref = np.eye(3)[[0, 1, 2, 0]][None]  # 3 of 4 right
    low = np.eye(3)[[0, 1, 1, 0]][None]  # 2 of 4 right, 3 of 4 agree with ref
    r = precision.compare(ref, low, labels)
    assert r["agreement"] == 0.75 and r["accuracy"] == 0.5
    assert r["delta_points"] == pytest.approx(-25.0) and not r["allowed"]
    same = precision.compare(ref, ref + 0.01, labels)
    assert same["agreement"] == 1.0 and same["delta_points"] == 0.0 and same["allowed"]


def entry(allowed, results):
    return {"precision": {"cpu": {"allowed": allowed, "results": results}}}


def test_check_allowed_rule():
    meta = entry(["fp32", "bf16"], {"bf16": {"delta_points": 0.0, "allowed": True},
                                    "fp16": {"delta_points": -1.2, "allowed": False},
                                    "int8": {"skipped": "no torch.ao"}})
    assert check_allowed(meta, "fp32", "cpu") is None
    assert check_allowed(meta, "bf16", "cpu") is None
    with pytest.raises(UserError, match=r"fp16 is not allowed .* -1\.20 points .* fp32, bf16"):
        check_allowed(meta, "fp16", "cpu")
    assert "not measured" in check_allowed(meta, "int8", "cpu")
    assert "never compared" in check_allowed({}, "bf16", "cpu")
    assert "never compared" in check_allowed(meta, "fp16", "cuda")  # measured on the CPU only


def test_the_runtime_refuses_a_precision_marked_not_allowed(tmp_path):
    """main.py with --precision bf16 on a checkpoint whose check found bf16 losing accuracy:
    one line, before the extractors load."""
    net = JCANet(preset("paper", num_classes=4, **SMALL))
    meta = entry(["fp32"], {"bf16": {"delta_points": -0.8, "allowed": False}})
    save_checkpoint(tmp_path / "m.pt", net, ["a", "b", "c", "background"], None, meta=meta)
    opts = AppOptions(source="synthetic", checkpoint=str(tmp_path / "m.pt"), device="cpu",
                      precision="bf16")
    with pytest.raises(UserError, match=r"^precision bf16 is not allowed for this model on cpu"):
        load_runtime(opts)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("precision")
    paths = make_dataset(d / "data", n_clips=40, n_classes=4, seed=1)
    torch.manual_seed(0)
    net = JCANet(preset("paper", num_classes=4, **SMALL)).eval()
    with open_dataset(paths) as data:
        names, recipe = data.class_names, data.recipe
    save_checkpoint(d / "m.pt", net, names, recipe, meta={"train": {"note": "kept"}})
    return d, net


def test_cpu_report_runs_every_cpu_precision_and_is_stored(setup, capsys):
    d, net = setup
    out = d / "checked.pt"
    assert precision.main(["--data", str(d / "data"), "--checkpoint", str(d / "m.pt"),
                           "--out", str(out)]) == 0
    text = capsys.readouterr().out
    ckpt, _ = read_checkpoint(out)
    assert ckpt.meta["train"] == {"note": "kept"}
    cpu = ckpt.meta["precision"]["cpu"]
    with open_dataset(AVEPaths.from_dir(d / "data")) as data:
        probs, labels = predict(net, data, "val")  # fp32 through the training code's path
    assert cpu["reference_accuracy"] == pytest.approx(np.mean(probs.argmax(-1) == labels))
    assert cpu["fitted_on"]["segments"] == labels.size
    for p in ("fp16", "bf16", "int8"):
        r = cpu["results"][p]
        assert "skipped" not in r, r  # all three run on this CPU
        assert 0.9 <= r["agreement"] <= 1.0  # reduced precision rarely flips a label
        assert r["allowed"] == (r["delta_points"] >= -0.5)
        assert (p in cpu["allowed"]) == r["allowed"]
        assert r["accuracy"] == pytest.approx(cpu["reference_accuracy"]
                                              + r["delta_points"] / 100)
        assert r["max_abs_logit_diff"] > 0  # really ran in another precision
    assert "autocast(cpu, bfloat16)" in cpu["results"]["bf16"]["method"]
    assert "torch.ao" in cpu["results"]["int8"]["method"]
    assert cpu["allowed"][0] == "fp32"
    assert f"allowed on cpu: {', '.join(cpu['allowed'])}" in text


def test_subset_and_bad_arguments(setup):
    d, _ = setup
    out = d / "bf16.pt"
    assert precision.main(["--data", str(d / "data"), "--checkpoint", str(d / "m.pt"),
                           "--out", str(out), "--precisions", "bf16", "--lookahead", "0"]) == 0
    cpu = read_checkpoint(out)[0].meta["precision"]["cpu"]
    assert list(cpu["results"]) == ["bf16"] and cpu["fitted_on"]["windows"] == "lookahead 0"
    for extra, message in ((["--precisions", "fp8"], "unknown precision fp8"),
                           (["--device", "cuda"], "no CUDA GPU"),
                           (["--device", "tpu"], "unknown --device")):
        with pytest.raises(UserError, match=message):
            precision.main(["--data", str(d / "data"), "--checkpoint", str(d / "m.pt"),
                            *extra])
