"""The co-attention layers and the audio-guided early fusion against independent NumPy float64
implementations of their equations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.config import JCAConfig, preset
from model.jca import CoAttentionLayer, CoAttentionStack, DenseCoAttentionLayer, build_coattention
from model.network import AudioGuidedAttention, JCANet, count_parameters

pytestmark = pytest.mark.usefixtures("one_thread")


def jca_numpy(a: np.ndarray, v: np.ndarray, weights: list[dict[str, np.ndarray]],
              depth: int, joint: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The paper's equations, one clip at a time: weights[l] (or weights[0] if shared)."""
    outs_a, outs_v = [], []
    for A, V in zip(a, v, strict=True):  # A (N, d_a), V (N, d_v)
        for layer in range(depth):
            w = weights[layer if len(weights) > 1 else 0]
            J = np.concatenate([A, V], axis=1)  # (N, d)
            ctx_a, ctx_v = (J, J) if joint else (V, A)
            C_a = np.tanh(A.T @ w["W_ja"] @ ctx_a / np.sqrt(ctx_a.shape[1]))  # (d_a, d)
            C_v = np.tanh(V.T @ w["W_jv"] @ ctx_v / np.sqrt(ctx_v.shape[1]))  # (d_v, d)
            H_a = np.maximum(w["W_a"] @ A + w["W_ca"] @ C_a.T, 0)  # (k, d_a)
            H_v = np.maximum(w["W_v"] @ V + w["W_cv"] @ C_v.T, 0)  # (k, d_v)
            A, V = A + w["W_ha"].T @ H_a, V + w["W_hv"].T @ H_v
        outs_a.append(A)
        outs_v.append(V)
    return np.stack(outs_a), np.stack(outs_v)


def paper_weights(layer: CoAttentionLayer) -> dict[str, np.ndarray]:
    """The paper's names for the stacked [audio, visual] parameters."""
    p = {name: t.detach().numpy() for name, t in layer.named_parameters()}
    return {"W_ja": p["w_j"][0], "W_jv": p["w_j"][1], "W_a": p["w_x"][0], "W_v": p["w_x"][1],
            "W_ca": p["w_c"][0], "W_cv": p["w_c"][1], "W_ha": p["w_h"][0], "W_hv": p["w_h"][1]}


def randomize(module: torch.nn.Module, gen: torch.Generator, scale: float = 0.5) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale)


def rel_err(got: torch.Tensor, want: np.ndarray) -> float:
    return float(np.abs(got.detach().numpy() - want).max() / np.abs(want).max())


@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("joint", [True, False], ids=["jca", "dual"])
def test_layer_matches_numpy(depth: int, shared: bool, joint: bool) -> None:
    gen = torch.Generator().manual_seed(1000 * depth + 10 * shared + joint)
    n, dim, k, batch = 10, 24, 7, 3
    stack = CoAttentionStack(lambda: CoAttentionLayer(n, dim, k, joint=joint), depth, shared)
    stack = stack.double()
    randomize(stack, gen)
    a = torch.randn(batch, n, dim, generator=gen, dtype=torch.float64)
    v = torch.randn(batch, n, dim, generator=gen, dtype=torch.float64)
    got_a, got_v = stack(a, v)
    weights = [paper_weights(layer) for layer in stack.layers]
    assert len(weights) == (1 if shared else depth)
    want_a, want_v = jca_numpy(a.numpy(), v.numpy(), weights, depth, joint)
    assert rel_err(got_a, want_a) < 1e-6
    assert rel_err(got_v, want_v) < 1e-6
    # the residual update did change the features (the test is not trivially passing)
    assert np.abs(want_a - a.numpy()).max() > 0.1


def test_shared_weights_apply_one_layer_l_times() -> None:
    cfg = preset("paper", layers=3, shared_weights=True)
    stack = build_coattention(cfg)
    assert len(stack.layers) == 1 and stack.depth == 3
    a, v = torch.randn(2, 10, cfg.embed), torch.randn(2, 10, cfg.embed)
    once = stack.layers[0]
    want = once(*once(*once(a, v)))
    got = stack(a, v)
    torch.testing.assert_close(got[0], want[0])
    torch.testing.assert_close(got[1], want[1])


def dense_numpy(a: np.ndarray, v: np.ndarray, p: dict[str, np.ndarray]
                ) -> tuple[np.ndarray, np.ndarray]:
    """The reference implementation's dense co-attention layer as FACTS section 2 reads it."""
    def lin(x: np.ndarray, name: str) -> np.ndarray:
        return x @ p[f"{name}.weight"].T + p[f"{name}.bias"]

    J = lin(np.concatenate([a, v], axis=-1), "joint")  # (B, N, d)
    out = []
    for x, m in ((a, "a"), (v, "v")):
        K = lin(np.swapaxes(x, 1, 2), f"time_{m}")  # (B, dx, N)
        S = np.tanh(K @ J / np.sqrt(J.shape[-1]))  # (B, dx, d)
        W = np.maximum(np.tanh(lin(x, f"query_{m}") @ S), 0)  # (B, N, d)
        out.append(x + np.maximum(lin(W, f"out_{m}"), 0))
    return out[0], out[1]


def test_dense_layer_matches_numpy() -> None:
    gen = torch.Generator().manual_seed(7)
    layer = DenseCoAttentionLayer(10, 16, 16, dropout=0.3).double().eval()
    randomize(layer, gen, scale=0.3)
    a = torch.randn(2, 10, 16, generator=gen, dtype=torch.float64)
    v = torch.randn(2, 10, 16, generator=gen, dtype=torch.float64)
    got_a, got_v = layer(a, v)
    params = {k: t.detach().numpy() for k, t in layer.named_parameters()}
    want_a, want_v = dense_numpy(a.numpy(), v.numpy(), params)
    assert rel_err(got_a, want_a) < 1e-6
    assert rel_err(got_v, want_v) < 1e-6


def test_paper_layer_has_exactly_the_paper_matrices() -> None:
    n, dim, k = 10, 32, 5
    layer = CoAttentionLayer(n, dim, k, joint=True)
    shapes = {name: tuple(p.shape) for name, p in layer.named_parameters()}
    assert shapes == {"w_j": (2, n, n), "w_x": (2, k, n), "w_c": (2, k, 2 * dim),
                      "w_h": (2, k, n)}


# ---- the audio-guided early fusion ----------------------------------------------------------

def fusion_numpy(visual: np.ndarray, guide: np.ndarray, p: dict[str, np.ndarray],
                 by_position: bool) -> tuple[np.ndarray, np.ndarray]:
    """Early fusion one segment at a time. visual (B, T, P, Dv), guide (B, T, E).

    by_position, the reference implementation: content = affine_v(ReLU(affine_video(V)))
    (P positions x 49 units) + affine_g(ReLU(affine_audio(a))) as a (49, 1) column, so guide
    unit j lands on row (position) j. Else the paper: guide unit j meets attention unit j at
    every position (a (1, attn) row)."""
    fused, alphas = [], []
    for V, a in zip(visual.reshape(-1, *visual.shape[2:]), guide.reshape(-1, guide.shape[-1]),
                    strict=True):  # V (P, Dv), a (E,)
        hv = np.maximum(V @ p["visual_proj.weight"].T + p["visual_proj.bias"], 0)  # (P, H)
        ha = np.maximum(p["guide_proj.weight"] @ a + p["guide_proj.bias"], 0)  # (H,)
        g = p["w_g.weight"] @ ha  # (attn,)
        content = hv @ p["w_v.weight"].T + (g[:, None] if by_position else g[None, :])
        z = np.tanh(content) @ p["w_h.weight"][0]  # (P,)
        alpha = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        fused.append(p["out.weight"] @ (alpha @ V) + p["out.bias"])
        alphas.append(alpha)
    lead = visual.shape[:2]
    return np.reshape(fused, (*lead, -1)), np.reshape(alphas, (*lead, -1))


@pytest.mark.parametrize("by_position", [True, False], ids=["reference", "paper"])
def test_fusion_matches_numpy(by_position: bool) -> None:
    gen = torch.Generator().manual_seed(11 + by_position)
    positions, dv, e, hidden = 49, 24, 16, 20
    fusion = AudioGuidedAttention(dv, e, hidden, positions, by_position).double().eval()
    randomize(fusion, gen, scale=0.4)
    visual = torch.randn(2, 3, positions, dv, generator=gen, dtype=torch.float64)
    guide = torch.randn(2, 3, e, generator=gen, dtype=torch.float64)
    fused, alpha = fusion(visual, guide)
    params = {k: t.detach().numpy() for k, t in fusion.named_parameters()}
    want_fused, want_alpha = fusion_numpy(visual.numpy(), guide.numpy(), params, by_position)
    assert rel_err(fused, want_fused) < 1e-12
    assert rel_err(alpha, want_alpha) < 1e-12
    # the other rule gives other numbers: the test tells the two apart
    other_fused, _ = fusion_numpy(visual.numpy(), guide.numpy(), params, not by_position)
    assert rel_err(fused, other_fused) > 1e-3


def test_reference_preset_fuses_as_the_reference_and_paper_as_the_paper() -> None:
    reference, paper = JCANet(preset("reference")), JCANet(preset("paper"))
    assert reference.fusion.by_position and not paper.fusion.by_position
    assert count_parameters(reference)["total"] == 22_776_510  # the guide adds no weights
    old = {k: v for k, v in preset("reference").to_dict().items() if k != "guide_by_position"}
    assert JCAConfig.from_dict(old).guide_by_position is False  # older checkpoints keep theirs
    with pytest.raises(ValueError, match="attn_dim"):
        preset("reference", attn_dim=32)
