"""One-file checkpoints: exact round trip, atomic write, one clear error per kind of bad file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model.checkpoint import (
    FORMAT,
    VERSION,
    CheckpointError,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from model.config import preset
from model.errors import UserError
from model.network import JCANet
from model.recipe import FeatureRecipe

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"hidden": 8, "embed": 16, "joint_hidden": 8, "joint_embed": 16, "mlp_hidden": 8,
         "attn_hidden": 8, "attn_dim": 4}


pytestmark = pytest.mark.usefixtures("one_thread")


def small_net(**overrides: object) -> JCANet:
    torch.manual_seed(0)
    return JCANet(preset("paper", **{**SMALL, **overrides})).eval()


def names(n: int) -> list[str]:
    return [f"event{i}" for i in range(n - 1)] + ["background"]


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, small_net(num_classes=4), names(4), FeatureRecipe.ave(),
                    meta={"calibration": {"temperature": 1.5}, "random_features": False})
    return path


@pytest.mark.parametrize("overrides", [{}, {"rnn": "gru", "num_classes": 7},
                                       {"fusion": "max", "coattention": "dense"}])
def test_round_trip_is_exact(tmp_path: Path, overrides: dict[str, object]) -> None:
    net = small_net(**overrides)
    with torch.no_grad():  # move weights off their init so a fresh model would not match
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    recipe = FeatureRecipe.ave(frames_per_segment=4, visual_weights="random:seed=3")
    meta = {"calibration": {"temperature": 1.5, "event_threshold": 0.4}, "train": {"epochs": 3},
            "random_features": True}
    path = tmp_path / "sub" / "m.pt"
    save_checkpoint(path, net, names(net.cfg.num_classes), recipe, meta)
    loaded, ckpt = load_checkpoint(path)
    assert not loaded.training
    assert ckpt.config == net.cfg and ckpt.recipe == recipe and ckpt.meta == meta
    assert ckpt.class_names == tuple(names(net.cfg.num_classes)) and ckpt.version == VERSION
    g = torch.Generator().manual_seed(5)
    audio, visual = torch.rand(2, 10, 128, generator=g), torch.rand(2, 10, 7, 7, 512, generator=g)
    with torch.no_grad():
        want, want_attn = net(audio, visual, return_attention=True)
        got, got_attn = loaded(audio, visual, return_attention=True)
    assert torch.equal(got, want) and torch.equal(got_attn, want_attn)
    assert [p.name for p in path.parent.iterdir()] == ["m.pt"]  # no temporary file left behind


def test_recipe_may_be_none_and_float64_survives(tmp_path: Path) -> None:
    net = small_net().double()
    save_checkpoint(tmp_path / "d.pt", net, names(29), None)
    loaded, ckpt = load_checkpoint(tmp_path / "d.pt")
    assert ckpt.recipe is None and ckpt.meta == {}
    assert next(loaded.parameters()).dtype == torch.float64


def test_save_rejects_bad_arguments(tmp_path: Path) -> None:
    net = small_net()
    with pytest.raises(ValueError, match="class names"):
        save_checkpoint(tmp_path / "x.pt", net, names(3), None)
    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(tmp_path / "x.pt", net, names(29), None, meta={"t": torch.ones(1)})
    assert not list(tmp_path.iterdir())


def test_failed_save_keeps_the_old_file(saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = saved.read_bytes()

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(saved, small_net(num_classes=4), names(4), None)
    assert saved.read_bytes() == before
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]


def rewrite(path: Path, **changes: object) -> None:
    data = torch.load(path, weights_only=True)
    for key, value in changes.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    torch.save(data, path)


def bad_files(saved: Path, tmp: Path) -> dict[str, tuple[Path, str]]:
    """name -> (bad file, words the error must contain)."""
    cases: dict[str, tuple[Path, str]] = {}
    text = tmp / "notes.txt"
    text.write_text("hello\n")
    cases["not a checkpoint"] = (text, "not a readable checkpoint")
    cut = tmp / "cut.pt"
    cut.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])
    cases["truncated"] = (cut, "truncated")
    other = tmp / "other.pt"
    torch.save({"weights": torch.ones(2)}, other)
    cases["foreign torch file"] = (other, f"not a {FORMAT} file")
    for name, changes, words in [
        ("wrong version", {"version": VERSION + 1}, f"format version {VERSION + 1}"),
        ("missing key", {"class_names": None}, "missing class_names"),
        ("bad config", {"config": {"rnn": "tcn"}}, "bad config"),
        ("bad names", {"class_names": ["a", "b"]}, "class_names must be 4 strings"),
        ("bad recipe", {"recipe": {"visual_preprocess": "x"}}, "bad feature recipe"),
    ]:
        path = tmp / f"{name.replace(' ', '_')}.pt"
        path.write_bytes(saved.read_bytes())
        rewrite(path, **changes)
        cases[name] = (path, words)
    data = torch.load(saved, weights_only=True)
    data["state_dict"].pop(next(iter(data["state_dict"])))
    missing = tmp / "missing_weight.pt"
    torch.save(data, missing)
    cases["missing weight"] = (missing, "missing weights")
    for name, value in (("nan", float("nan")), ("inf", float("inf"))):
        data = torch.load(saved, weights_only=True)
        first = next(k for k, v in data["state_dict"].items() if v.is_floating_point())
        data["state_dict"][first].view(-1)[0] = value
        diverged = tmp / f"{name}_weights.pt"
        torch.save(data, diverged)
        cases[f"{name} weights"] = (diverged, "NaN or infinite values")
    cases["no file"] = (tmp / "absent.pt", "no such file")
    return cases


def test_bad_files_raise_one_line_errors(saved: Path, tmp_path: Path) -> None:
    for case, (path, words) in bad_files(saved, tmp_path).items():
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        message = str(info.value)
        assert isinstance(info.value, UserError), case
        assert "\n" not in message, case
        assert str(path) in message and words in message, (case, message)


def test_read_checkpoint_does_not_build(saved: Path) -> None:
    ckpt, state = read_checkpoint(saved)
    assert ckpt.class_names[-1] == "background"
    assert set(state) == set(small_net(num_classes=4).state_dict())


def run_info(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "model", "--info", "--checkpoint", str(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_cli_on_good_and_bad_checkpoints(saved: Path, tmp_path: Path) -> None:
    good = run_info(saved)
    assert good.returncode == 0, good.stderr
    assert "event0, event1, event2, background" in good.stdout
    cut = tmp_path / "cut.pt"
    cut.write_bytes(saved.read_bytes()[:100])
    bad = run_info(cut)
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("error: checkpoint") and str(cut) in bad.stderr
