"""JCANet: every preset and Table 1/2 row builds, runs forward and backward; the presets have the
sizes counted by hand and each Table 2 row switches off what it names and nothing else; config
round trips and validation; the --info CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from model.config import ABLATIONS, PRESETS, ROW_NAMES, TABLE2, JCAConfig, preset
from model.network import JCANet, count_parameters

ROOT = Path(__file__).resolve().parents[1]
CASES = [(p, a) for p in PRESETS for a in (None, *ABLATIONS)]


pytestmark = pytest.mark.usefixtures("one_thread")


def inputs(b: int = 2, t: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, t, 128, generator=g),  # VGGish embeddings are >= 0
            torch.rand(b, t, 7, 7, 512, generator=g))


# ---- parameter counts ----------------------------------------------------------------------

# What each Table 2 row does to the parts of the full model: "<" the part shrinks, None it is
# gone; every part not named keeps its exact size.
ROW_EFFECTS: dict[str, dict[str, str | None]] = {
    "no-unimodal-rnn": {"audio_encoder": "<", "visual_encoder": "<"},
    "no-joint-rnn": {"head": "<"},
    "no-residual": {"audio_encoder": "<", "visual_encoder": "<", "head": "<"},
    "gru": {"audio_encoder": "<", "visual_encoder": "<", "head": "<"},
    "avg-pool": {"fusion": None},
    "max-pool": {"fusion": None},
    "coattention": {"coattention": "<"},
    "audio-only": {"fusion": None, "visual_encoder": None, "coattention": None, "head": "<"},
    "visual-only": {"audio_encoder": None, "fusion": None, "coattention": None, "head": "<"},
}


def test_every_ablation_row_is_described() -> None:
    assert set(ROW_EFFECTS) == set(ABLATIONS)


@pytest.mark.parametrize(("name", "ablation"), [c for c in CASES if c[1] is not None])
def test_ablation_changes_only_the_parts_it_names(name: str, ablation: str) -> None:
    full = count_parameters(JCANet(preset(name)))
    row = count_parameters(JCANet(preset(name, ablation)))
    effects = ROW_EFFECTS[ablation]
    for part, n in full.items():
        if part == "total":
            continue
        effect = effects.get(part, "=")
        if effect is None:
            assert part not in row, part
        elif effect == "<":
            assert 0 < row[part] < n, part
        else:
            assert row[part] == n, part
    assert set(row) <= set(full)
    assert row["total"] < full["total"]


@pytest.mark.parametrize(("name", "ablation"), CASES)
def test_parts_add_up_to_the_total(name: str, ablation: str | None) -> None:
    net = JCANet(preset(name, ablation, num_classes=6))
    counts = count_parameters(net)
    # every parameter belongs to one of the named parts: none hides at the top level
    assert sum(n for part, n in counts.items() if part != "total") == counts["total"]


def test_pinned_totals() -> None:
    # reference: counted by hand from FACTS section 2 ("about 22.8 M parameters")
    assert count_parameters(JCANet(preset("reference")))["total"] == 22_776_510
    # paper, by hand: encoders 313,984 (audio) + 756,352 (visual), fusion 310,065,
    # four JCA layers 22,880, head 563,741
    assert count_parameters(JCANet(preset("paper")))["total"] == 1_967_022


# ---- forward / backward -----------------------------------------------------------------------

@pytest.mark.parametrize(("name", "ablation"), CASES)
def test_forward_backward(name: str, ablation: str | None) -> None:
    cfg = preset(name, ablation, num_classes=6)
    net = JCANet(cfg)
    audio, visual = inputs()
    logits, attn = net(audio, visual, return_attention=True)
    assert logits.shape == (2, 10, 6)
    assert torch.isfinite(logits).all()
    if cfg.modality == "audio":
        assert attn is None
    else:
        assert attn.shape == (2, 10, 7, 7)
        torch.testing.assert_close(attn.sum((-2, -1)), torch.ones(2, 10))
    logits.logsumexp(-1).sum().backward()
    unused = [n for n, p in net.named_parameters() if p.grad is None]
    assert unused == []


def test_gru_variant_has_no_lstm() -> None:
    net = JCANet(preset("paper", "gru"))
    kinds = {type(m) for m in net.modules()}
    assert nn.GRU in kinds and nn.LSTM not in kinds


def test_eval_is_deterministic_and_batch_independent() -> None:
    net = JCANet(preset("paper")).eval()
    audio, visual = inputs(b=3)
    with torch.no_grad():
        full = net(audio, visual)
        one = net(audio[1:2], visual[1:2])
        torch.testing.assert_close(net(audio, visual), full, rtol=0, atol=0)
    torch.testing.assert_close(one, full[1:2], rtol=1e-5, atol=1e-5)


def test_inputs_are_l2_normalised_first() -> None:
    net = JCANet(preset("paper")).eval()
    audio, visual = inputs()
    with torch.no_grad():
        torch.testing.assert_close(net(audio * 7.0, visual * 0.1), net(audio, visual))


def test_avg_and_max_attention_maps() -> None:
    audio, visual = inputs(b=1)
    _, uniform = JCANet(preset("paper", "avg-pool"))(audio, visual, return_attention=True)
    torch.testing.assert_close(uniform, torch.full((1, 10, 7, 7), 1 / 49))
    _, attn = JCANet(preset("paper", "max-pool"))(audio, visual, return_attention=True)
    v = visual.numpy().reshape(1, 10, 49, 512)
    v = v / np.linalg.norm(v, axis=-1, keepdims=True)
    winners = v.argmax(axis=2)  # (1, 10, 512): the position each channel's max comes from
    want = np.stack([np.bincount(w, minlength=49) / 512 for w in winners[0]])
    np.testing.assert_allclose(attn.detach().numpy().reshape(10, 49), want, atol=1e-6)


def test_window_length() -> None:
    free = JCANet(preset("paper", "audio-only")).eval()
    audio, visual = inputs(t=7)
    assert free(audio, None).shape == (2, 7, 29)
    net = JCANet(preset("paper"))
    with pytest.raises(ValueError, match="windows of 10 segments, got T=7"):
        net(audio, visual)
    with pytest.raises(ValueError, match="visual must be"):
        net(audio, visual[..., :256])


# ---- config --------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "ablation"), CASES)
def test_config_round_trip(name: str, ablation: str | None) -> None:
    cfg = preset(name, ablation)
    assert JCAConfig.from_dict(cfg.to_dict()) == cfg
    for key, value in (ABLATIONS[ablation] if ablation else {}).items():
        assert getattr(cfg, key) == value


@pytest.mark.parametrize("bad", [
    {"rnn": "transformer"}, {"fusion": "sum"}, {"coattention": "self"}, {"layers": 0},
    {"num_classes": 1}, {"modality": "audio"}, {"modality": "visual", "coattention": "none"},
    {"hidden": 1.5}, {"residual": "yes"}, {"dropout_head": 1.0},
])
def test_config_validation(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        preset("paper", **bad)


def test_tables_cover_every_ablation() -> None:
    assert set(TABLE2) == set(ROW_NAMES) == {None, *ABLATIONS}
    assert TABLE2[None] == 76.2 and TABLE2["audio-only"] == 59.5
    assert all(TABLE2[a] < TABLE2[None] for a in ABLATIONS)
    with pytest.raises(ValueError, match="unknown ablation"):
        preset("paper", "no-such-row")
    with pytest.raises(ValueError, match="unknown config fields"):
        JCAConfig.from_dict({**preset("paper").to_dict(), "extra": 1})


def test_info_cli_reports_counts() -> None:
    out = subprocess.run([sys.executable, "-m", "model", "--info", "paper", "--ablation",
                          "gru", "--classes", "5"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    want = count_parameters(JCANet(preset("paper", "gru", num_classes=5)))["total"]
    assert ["total", f"{want:,}"] in [line.split() for line in out.stdout.splitlines()]
    bad = subprocess.run([sys.executable, "-m", "model", "--info", "huge"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
