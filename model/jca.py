"""Joint co-attention: the paper's JCA layer, its recursion, and the two alternatives behind the
same switch (`JCAConfig.coattention`).

    >>> stack = build_coattention(preset("paper"))
    >>> a2, v2 = stack(a, v)         # a (B, N, d_a), v (B, N, d_v) -> same shapes

  jca    the paper (FACTS section 1), per layer, with J = [A ; V] (N x d):
             C_a = tanh(A^T W_ja J / sqrt(d))            (d_a x d),  W_ja (N x N)
             H_a = ReLU(W_a A + W_ca C_a^T)              (k x d_a),  W_a (k x N), W_ca (k x d)
             A'  = A + W_ha^T H_a                        (N x d_a),  W_ha (k x N)   (g = sum)
         and the same for V with W_jv, W_v, W_cv, W_hv. No biases.
  dual   plain co-attention (Table 2's "w/ Co-Attention"): the same equations with J replaced by
         the other modality, so A is attended by V only and V by A only (C_a is d_a x d_v).
  dense  the public reference implementation's dense joint co-attention (FACTS section 2).

Every kind is recursed L times, with one set of weights (Eq. 2-3) or one per layer (Eq. 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.config import JCAConfig


def _matrices(rows: int, cols: int) -> nn.Parameter:
    """One (rows x cols) matrix per modality, stacked: [audio, visual]."""
    w = torch.empty(2, rows, cols)
    for m in w:
        nn.init.xavier_uniform_(m)
    return nn.Parameter(w)


class CoAttentionLayer(nn.Module):
    """One layer of the paper's joint co-attention (joint=True) or of plain co-attention.

    Both modalities run through one batched computation, so d_a = d_v = dim. The weights are
    stacked per modality, index 0 audio and 1 visual: w_j = [W_ja, W_jv], w_x = [W_a, W_v],
    w_c = [W_ca, W_cv], w_h = [W_ha, W_hv].
    """

    def __init__(self, n: int, dim: int, k: int, joint: bool = True) -> None:
        super().__init__()
        self.joint = joint
        ctx = 2 * dim if joint else dim  # width of what attends: J = [A ; V], or the other one
        self.w_j = _matrices(n, n)  # (2, N, N)
        self.w_x = _matrices(k, n)  # (2, k, N)
        self.w_c = _matrices(k, ctx)  # (2, k, ctx)
        self.w_h = _matrices(k, n)  # (2, k, N)

    def step(self, x: Tensor) -> Tensor:
        """x = stack([A, V], 1) (B, 2, N, dim) -> the next layer's stack, same shape."""
        # J = [A ; V] (B, 1, N, 2 dim) attends to both, or each is attended by the other
        ctx = x.transpose(1, 2).flatten(2).unsqueeze(1) if self.joint else x.flip(1)
        wj_ctx = (self.w_j @ ctx) * ctx.shape[-1] ** -0.5  # (B, 2, N, ctx), scaled while small
        c_t = torch.tanh(wj_ctx.transpose(-1, -2) @ x)  # (B, 2, ctx, dim) = C^T
        h = F.relu(self.w_x @ x + self.w_c @ c_t)  # (B, 2, k, dim)
        return x + self.w_h.transpose(-1, -2) @ h  # (B, 2, N, dim)

    def forward(self, a: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        a2, v2 = self.step(torch.stack([a, v], dim=1)).unbind(1)  # (B, N, dim) each
        return a2, v2


class DenseCoAttentionLayer(nn.Module):
    """One layer of the reference implementation's dense joint co-attention (FACTS section 2)."""

    def __init__(self, n: int, d_a: int, d_v: int, dropout: float) -> None:
        super().__init__()
        d = d_a + d_v
        self.joint = nn.Linear(d, d)
        self.time_a, self.time_v = nn.Linear(n, n), nn.Linear(n, n)  # over the time axis
        self.query_a, self.query_v = nn.Linear(d_a, d_a), nn.Linear(d_v, d_v)
        self.out_a, self.out_v = nn.Linear(d, d_a), nn.Linear(d, d_v)
        self.drop = nn.Dropout(dropout)

    def _attend(self, x: Tensor, j: Tensor, time: nn.Linear, query: nn.Linear,
                out: nn.Linear) -> Tensor:
        keys = time(x.transpose(1, 2))  # (B, dx, N)
        s = self.drop(torch.tanh(keys @ j / math.sqrt(j.shape[-1])))  # (B, dx, d)
        w = F.relu(torch.tanh(query(x) @ s))  # (B, N, d)
        return x + self.drop(F.relu(out(w)))  # (B, N, dx)

    def forward(self, a: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        j = self.joint(torch.cat([a, v], dim=-1))  # (B, N, d)
        a2 = self._attend(a, j, self.time_a, self.query_a, self.out_a)  # (B, N, d_a)
        v2 = self._attend(v, j, self.time_v, self.query_v, self.out_v)  # (B, N, d_v)
        return a2, v2


class CoAttentionStack(nn.Module):
    """L layers; with shared weights one layer is applied L times."""

    def __init__(self, make_layer: Callable[[], nn.Module], layers: int, shared: bool) -> None:
        super().__init__()
        self.depth = layers
        self.shared = shared
        self.layers = nn.ModuleList([make_layer() for _ in range(1 if shared else layers)])

    def forward(self, a: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        if isinstance(self.layers[0], CoAttentionLayer):  # stay stacked between layers
            x = torch.stack([a, v], dim=1)  # (B, 2, N, dim)
            for i in range(self.depth):
                x = self.layers[0 if self.shared else i].step(x)  # (B, 2, N, dim)
            a, v = x.unbind(1)
            return a, v
        for i in range(self.depth):
            a, v = self.layers[0 if self.shared else i](a, v)  # (B, N, d_a), (B, N, d_v)
        return a, v


def build_coattention(cfg: JCAConfig) -> CoAttentionStack | None:
    """The co-attention stack a config asks for, or None for coattention='none'."""
    n, d = cfg.segments, cfg.embed
    makers = {
        "jca": lambda: CoAttentionLayer(n, d, cfg.k, joint=True),
        "dual": lambda: CoAttentionLayer(n, d, cfg.k, joint=False),
        "dense": lambda: DenseCoAttentionLayer(n, d, d, cfg.dropout_coattention),
    }
    if cfg.coattention == "none":
        return None
    return CoAttentionStack(makers[cfg.coattention], cfg.layers, cfg.shared_weights)
