"""The JCA network (paper Fig. 2): sequence re-representation, joint co-attention, prediction.

    >>> net = JCANet(preset("paper")).eval()
    >>> logits = net(audio, visual)                              # (B, T, C)
    >>> logits, attn = net(audio, visual, return_attention=True)  # attn (B, T, 7, 7)
    >>> count_parameters(net)["total"]

Exporting it for TensorRT is model.backends.export's job.

Inputs: audio (B, T, 128) VGGish embeddings and visual (B, T, 7, 7, 512) VGG19 pool5 maps, both
L2-normalised on the feature axis first (as the reference does). The model returns raw logits;
softmax over the last axis gives per-segment class probabilities (background is the last class).

The attention map is the early fusion's distribution over the 7x7 positions of each segment.
With pooling instead of attention it is what the pooling weighed: uniform for `avg`, and for
`max` the fraction of the 512 channels whose maximum sits at each position. Audio-only models
return None.

T is free for the parts that allow it (encoders, fusion, head); the paper's co-attention weights
act on the time axis (W_ja is N x N), so with co-attention T must equal `cfg.segments`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.config import JCAConfig
from model.jca import build_coattention


def l2_normalize(x: Tensor, eps: float = 1e-12) -> Tensor:
    """x / max(||x||, eps) on the last axis, written with ops every backend converts. The norm is
    taken in float32 even in a half-precision model (in fp16 the squares of VGG19 features
    overflow), and the floor keeps 1 / norm finite in x's dtype (an all-zero feature, such as a
    silent segment, would otherwise give 0 * inf = NaN in fp16)."""
    if x.dtype == torch.float32:  # decided while tracing: an fp32 graph gets no casts
        return x * torch.rsqrt(torch.clamp_min((x * x).sum(-1, keepdim=True), eps * eps))
    x32 = x.float()
    floor = max(eps * eps, torch.finfo(x.dtype).max ** -2)
    return x * torch.rsqrt(torch.clamp_min((x32 * x32).sum(-1, keepdim=True), floor)).to(x.dtype)


class BiRNN(nn.Module):
    """Bidirectional LSTM or GRU, batch first, with optionally learned initial states."""

    def __init__(self, kind: str, in_dim: int, hidden: int, layers: int, learn_init: bool) -> None:
        super().__init__()
        rnn_cls = nn.LSTM if kind == "lstm" else nn.GRU
        self.rnn = rnn_cls(in_dim, hidden, num_layers=layers, batch_first=True,
                           bidirectional=True)
        self.lstm = kind == "lstm"
        shape = (2 * layers, 1, hidden)
        self.h0 = nn.Parameter(torch.zeros(shape)) if learn_init else None
        self.c0 = nn.Parameter(torch.zeros(shape)) if learn_init and self.lstm else None

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # oneDNN has no bf16/fp16 RNN kernel on CPUs without AVX-512 (it cannot create the
            # primitive): under CPU autocast the recurrence runs in fp32 on every machine alike
            with torch.autocast("cpu", enabled=False):
                return self._recur(x.float())
        return self._recur(x)

    def _recur(self, x: Tensor) -> Tensor:
        if self.h0 is None:
            return self.rnn(x)[0]  # (B, T, 2H)
        b = x.shape[0]
        h0 = self.h0.expand(-1, b, -1).contiguous()  # (2 layers, B, H)
        if self.lstm:
            c0 = self.c0.expand(-1, b, -1).contiguous()  # (2 layers, B, H)
            return self.rnn(x, (h0, c0))[0]  # (B, T, 2H)
        return self.rnn(x, h0)[0]  # (B, T, 2H)


class SequenceEncoder(nn.Module):
    """Bi-RNN with the residual embedding: L2(Linear(Dropout([x ; rnn(x)]))).

    Without the RNN it is L2(Linear(x)); without the residual it is L2(Linear(rnn(x))).
    """

    def __init__(self, cfg: JCAConfig, in_dim: int, hidden: int, out_dim: int,
                 use_rnn: bool) -> None:
        super().__init__()
        self.rnn = (BiRNN(cfg.rnn, in_dim, hidden, cfg.rnn_layers, cfg.learnable_init_state)
                    if use_rnn else None)
        self.residual = cfg.residual or not use_rnn
        width = (in_dim if self.residual else 0) + (2 * hidden if use_rnn else 0)
        self.drop = nn.Dropout(cfg.dropout_embed)
        self.proj = nn.Linear(width, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        if self.rnn is not None:
            y = self.rnn(x)  # (B, T, 2H)
            x = torch.cat([x, y], dim=-1) if self.residual else y  # (B, T, width)
        return l2_normalize(self.proj(self.drop(x)))  # (B, T, out_dim)


class AudioGuidedAttention(nn.Module):
    """Early fusion: encoded audio picks where to look among the 7x7 positions of a segment.

    z_p = w_h . tanh(W_v ReLU(P_v v_p) + W_g ReLU(P_g a)), alpha = softmax_p(z),
    fused = Linear(sum_p alpha_p v_p).

    by_position (the reference implementation): the guide g = W_g ReLU(P_g a) has one unit per
    position (attn_dim = P) and its unit p is added to every attention unit of position p,
    z_p = w_h . tanh(W_v ReLU(P_v v_p) + g_p 1); the paper's equations add unit j of g to unit j
    at every position.
    """

    def __init__(self, visual_dim: int, guide_dim: int, hidden: int, attn_dim: int,
                 by_position: bool = False) -> None:
        super().__init__()
        self.by_position = by_position
        self.visual_proj = nn.Linear(visual_dim, hidden)
        self.guide_proj = nn.Linear(guide_dim, hidden)
        self.w_v = nn.Linear(hidden, attn_dim, bias=False)
        self.w_g = nn.Linear(hidden, attn_dim, bias=False)
        self.w_h = nn.Linear(attn_dim, 1, bias=False)  # a bias would cancel in the softmax
        self.out = nn.Linear(visual_dim, visual_dim)

    def forward(self, visual: Tensor, guide: Tensor) -> tuple[Tensor, Tensor]:
        v = self.w_v(F.relu(self.visual_proj(visual)))  # (B, T, P, attn)
        g = self.w_g(F.relu(self.guide_proj(guide)))  # (B, T, attn)
        g = g.unsqueeze(-1) if self.by_position else g.unsqueeze(2)  # (B,T,P,1) | (B,T,1,attn)
        z = self.w_h(torch.tanh(v + g)).squeeze(-1)  # (B, T, P)
        alpha = torch.softmax(z, dim=-1)  # (B, T, P)
        pooled = (alpha.unsqueeze(2) @ visual).squeeze(2)  # (B, T, Dv)
        return self.out(pooled), alpha


class PredictionHead(nn.Module):
    """Joint Bi-RNN with residual embedding, then MLP -> logits per segment."""

    def __init__(self, cfg: JCAConfig) -> None:
        super().__init__()
        self.encoder = SequenceEncoder(cfg, cfg.d, cfg.joint_hidden, cfg.joint_embed,
                                       cfg.joint_rnn)
        self.mlp = nn.Sequential(nn.Linear(cfg.joint_embed, cfg.mlp_hidden), nn.ReLU(),
                                 nn.Dropout(cfg.dropout_head),
                                 nn.Linear(cfg.mlp_hidden, cfg.num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(self.encoder(x))  # (B, T, C)


class JCANet(nn.Module):
    """Audio encoder -> audio-guided early fusion -> visual encoder -> L co-attention layers ->
    joint Bi-RNN + MLP; each part switched by the config (Table 2's rows)."""

    def __init__(self, cfg: JCAConfig) -> None:
        super().__init__()
        self.cfg = cfg
        use_audio, use_visual = cfg.modality != "visual", cfg.modality != "audio"
        self.audio_encoder = (SequenceEncoder(cfg, cfg.audio_dim, cfg.hidden, cfg.embed,
                                              cfg.unimodal_rnn) if use_audio else None)
        self.fusion = (AudioGuidedAttention(cfg.visual_dim, cfg.embed, cfg.attn_hidden,
                                            cfg.attn_dim, cfg.guide_by_position)
                       if use_visual and cfg.fusion == "attention" else None)
        self.visual_encoder = (SequenceEncoder(cfg, cfg.visual_dim, cfg.hidden, cfg.embed,
                                               cfg.unimodal_rnn) if use_visual else None)
        self.coattention = build_coattention(cfg)
        self.head = PredictionHead(cfg)
        if use_visual and self.fusion is None:  # constants of the pooling attention maps
            positions = cfg.visual_hw * cfg.visual_hw
            self.register_buffer("uniform", torch.full((positions,), 1.0 / positions),
                                 persistent=False)
            self.register_buffer("one", torch.ones(()), persistent=False)
            self.register_buffer("zero", torch.zeros(()), persistent=False)
        for m in self.modules():  # the reference's init for every Linear
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def _check(self, audio: Tensor | None, visual: Tensor | None) -> None:
        cfg = self.cfg
        hw, dv = cfg.visual_hw, cfg.visual_dim
        if self.audio_encoder is not None and (audio is None or audio.dim() != 3
                                               or audio.shape[-1] != cfg.audio_dim):
            got = None if audio is None else tuple(audio.shape)
            raise ValueError(f"audio must be (B, T, {cfg.audio_dim}), got {got}")
        if self.visual_encoder is not None and (visual is None or visual.dim() != 5
                                                or tuple(visual.shape[2:]) != (hw, hw, dv)):
            got = None if visual is None else tuple(visual.shape)
            raise ValueError(f"visual must be (B, T, {hw}, {hw}, {dv}), got {got}")
        if audio is not None and visual is not None and audio.shape[:2] != visual.shape[:2]:
            raise ValueError(f"audio {tuple(audio.shape)} and visual {tuple(visual.shape)} "
                             "disagree on (B, T)")
        t = (audio if audio is not None else visual).shape[1]
        if self.coattention is not None and t != cfg.segments:
            raise ValueError(f"this model's co-attention is built for windows of "
                             f"{cfg.segments} segments, got T={t}")

    def forward(self, audio: Tensor | None, visual: Tensor | None,
                return_attention: bool = False) -> Tensor | tuple[Tensor, Tensor | None]:
        self._check(audio, visual)
        cfg = self.cfg
        a = v = attn = None
        if self.audio_encoder is not None:
            a = self.audio_encoder(l2_normalize(audio))  # (B, T, E)
        if self.visual_encoder is not None:
            x = l2_normalize(visual).flatten(2, 3)  # (B, T, P, Dv)
            if self.fusion is not None:
                fused, attn = self.fusion(x, a)  # (B, T, Dv), (B, T, P)
            elif cfg.fusion == "avg":
                fused = x.mean(dim=2)  # (B, T, Dv)
                if return_attention:
                    attn = self.uniform.expand(x.shape[:3])  # (B, T, P)
            else:
                fused = x.amax(dim=2)  # (B, T, Dv)
                if return_attention:
                    top = x == fused.unsqueeze(2)  # (B, T, P, Dv)
                    hits = torch.where(top, self.one, self.zero)  # (B, T, P, Dv)
                    attn = hits.sum(-1) / hits.sum((-2, -1)).unsqueeze(-1)  # (B, T, P)
            v = self.visual_encoder(fused)  # (B, T, E)
        if self.coattention is not None:
            a, v = self.coattention(a, v)  # (B, T, E), (B, T, E)
        parts = [f for f in (a, v) if f is not None]
        joint = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)  # (B, T, d)
        logits = self.head(joint)  # (B, T, C)
        if not return_attention:
            return logits
        if attn is not None:
            attn = attn.unflatten(-1, (cfg.visual_hw, cfg.visual_hw))  # (B, T, 7, 7)
        return logits, attn


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Parameters per top-level submodule, plus "total"."""
    counts = {name: sum(p.numel() for p in child.parameters())
              for name, child in model.named_children()}
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts
