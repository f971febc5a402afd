"""The one config that builds a JCA network, saved inside every checkpoint.

    >>> cfg = preset("paper")                                  # the paper's equations
    >>> cfg = preset("reference", ablation="gru")              # reference shapes, Table 2 row
    >>> cfg = preset("paper", num_classes=5)                   # custom dataset, 4 events + bg
    >>> JCAConfig.from_dict(cfg.to_dict()) == cfg
    True

Two presets:
  reference  the shapes and hyperparameters of the public reference implementation (FACTS
             section 2): 2-layer Bi-LSTMs of 256 per direction, 512-d embeddings, attention
             projections of 512 -> 49, 4 layers of the reference's dense joint co-attention with
             separate weights per layer, head 512 -> 128 -> C. About 22.8 M parameters.
             Its early fusion adds the audio guide as the reference does (`guide_by_position`):
             affine_g(a) has shape (B*T, 49, 1), so the guide's unit j is added at position j to
             all 49 attention units (the paper's equations add unit j to attention unit j at
             every position). Checkpoints saved before this field existed load with it False,
             the fusion they were trained with.
  paper      the paper's JCA equations (FACTS section 1). The paper gives no hidden sizes, k or L;
             they are chosen here for a live detector that must label a 10-segment window in at
             most 5 ms on 2 CPU cores at batch 1 (see benchmarks/RESULTS.md):
               - Bi-LSTMs of 1 layer, 128 units per direction (a step of a 256-unit 2-layer
                 Bi-LSTM at batch 1 is latency-bound; three of them dominate the window);
               - embeddings d_a = d_v = 128 (d = 256): the JCA affinity C_a is d_a x d, so its
                 cost grows with the square of the width (at 256 the four layers' affinities,
                 their tanh and the products around them, took about a third of the window in
                 a profile); joint embedding 256, MLP 256 -> 128 -> C. About 2.0 M parameters;
               - early fusion projects each of the 49 positions 512 -> 64 instead of 512 -> 512
                 (the reference's per-position Linear(512, 512) alone is ~250 MFLOP per window),
                 then 64 -> 49 -> 1 as in the reference;
               - k = 10 (= N: H_a keeps one row per segment, no temporal bottleneck);
               - L = 4 layers with separate weights per layer (Eq. 1 indexes W_h by layer and the
                 reference stacks 4); `shared_weights=True` gives Eq. 2-3's single W_h.
             The paper's JCA layer has no biases: every weight is one of its matrices.

Every row of Table 2 (and Table 1's single-modality baselines) is an entry of ABLATIONS, applied
on top of a preset; TABLE2 holds the accuracy the paper reports for each, for "ours vs paper".
Dropouts act only in training. Inputs are L2-normalised on the feature axis, as the reference does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

RNNS = ("lstm", "gru")
FUSIONS = ("attention", "avg", "max")  # audio-guided attention over 7x7, or global pooling
COATTENTIONS = ("jca", "dense", "dual", "none")  # paper JCA, reference dense, plain co-attention
MODALITIES = ("av", "audio", "visual")


@dataclass(frozen=True)
class JCAConfig:
    num_classes: int = 29  # C, background is always the last class
    segments: int = 10  # N, the window length the co-attention is built for
    audio_dim: int = 128  # VGGish embedding
    visual_dim: int = 512  # VGG19 pool5 channels
    visual_hw: int = 7  # pool5 is visual_hw x visual_hw positions
    modality: str = "av"  # "audio" / "visual": Table 1's single-modality baselines
    # sequence re-representation (uni-modal encoders)
    rnn: str = "lstm"  # "gru" for Table 2's GRU row (applies to every recurrent layer)
    unimodal_rnn: bool = True
    rnn_layers: int = 1  # stacked layers in every Bi-RNN
    hidden: int = 128  # per direction, uni-modal Bi-RNNs
    embed: int = 128  # d_a = d_v, the encoders' output width
    residual: bool = True  # residual embedding: Linear([x ; rnn(x)]) instead of Linear(rnn(x))
    learnable_init_state: bool = True  # learned h0 (and c0) instead of zeros
    # early fusion
    fusion: str = "attention"
    attn_hidden: int = 64  # width of the per-position visual and audio-guide projections
    attn_dim: int = 49  # width of the additive attention (W_v, W_g: attn_hidden -> attn_dim)
    guide_by_position: bool = False  # the reference's guide: unit p added at position p
    # co-attention
    coattention: str = "jca"
    layers: int = 4  # L
    shared_weights: bool = False  # one set of weights recursed L times (Eq. 2-3) or one per layer
    k: int = 10  # rows of H_a / H_v in the paper's JCA
    # category prediction
    joint_rnn: bool = True
    joint_hidden: int = 128  # per direction
    joint_embed: int = 256
    mlp_hidden: int = 128
    # dropouts (training only)
    dropout_embed: float = 0.1  # before every residual-embedding Linear
    dropout_coattention: float = 0.3  # inside the dense co-attention (reference)
    dropout_head: float = 0.3  # between the two MLP layers

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def choose(name: str, options: tuple[str, ...]) -> None:
            if getattr(self, name) not in options:
                raise ValueError(f"{name} must be one of {options}, got {getattr(self, name)!r}")

        choose("rnn", RNNS)
        choose("fusion", FUSIONS)
        choose("coattention", COATTENTIONS)
        choose("modality", MODALITIES)
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "int" and (not isinstance(value, int) or isinstance(value, bool)):
                raise ValueError(f"{f.name} must be an int, got {value!r}")
            if f.type == "bool" and not isinstance(value, bool):
                raise ValueError(f"{f.name} must be a bool, got {value!r}")
            if f.type == "float" and not (isinstance(value, int | float) and 0 <= value < 1):
                raise ValueError(f"{f.name} must be a probability in [0, 1), got {value!r}")
        positive = ("segments", "audio_dim", "visual_dim", "visual_hw", "rnn_layers", "hidden",
                    "embed", "attn_hidden", "attn_dim", "layers", "k", "joint_hidden",
                    "joint_embed", "mlp_hidden")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (events + background), "
                             f"got {self.num_classes}")
        if self.modality != "av" and self.coattention != "none":
            raise ValueError(f"modality={self.modality!r} has nothing to co-attend: "
                             f"set coattention='none'")
        positions = self.visual_hw * self.visual_hw
        if self.guide_by_position and self.attn_dim != positions:
            raise ValueError(f"guide_by_position adds guide unit p at position p: attn_dim must "
                             f"be the {positions} positions, got {self.attn_dim}")
        if self.modality == "visual" and self.fusion == "attention":
            raise ValueError("modality='visual' has no audio to guide the attention: "
                             "set fusion='avg' or 'max'")

    @property
    def d(self) -> int:
        """Width of the joint representation fed to the prediction head."""
        return self.embed * (2 if self.modality == "av" else 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JCAConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config fields: {sorted(unknown)}")
        return cls(**d)


PRESETS: dict[str, JCAConfig] = {
    "paper": JCAConfig(),
    "reference": JCAConfig(
        rnn_layers=2, hidden=256, embed=512, attn_hidden=512, attn_dim=49, guide_by_position=True,
        coattention="dense",
        layers=4, shared_weights=False, joint_hidden=256, joint_embed=512, mlp_hidden=128),
}

# Table 2's rows (and Table 1's single-modality baselines), as overrides on a preset.
ABLATIONS: dict[str, dict[str, Any]] = {
    "no-unimodal-rnn": {"unimodal_rnn": False},
    "no-joint-rnn": {"joint_rnn": False},
    "no-residual": {"residual": False},
    "gru": {"rnn": "gru"},
    "avg-pool": {"fusion": "avg"},
    "max-pool": {"fusion": "max"},
    "coattention": {"coattention": "dual"},
    "audio-only": {"modality": "audio", "coattention": "none"},
    "visual-only": {"modality": "visual", "coattention": "none", "fusion": "avg"},
}

# Segment accuracy (%) the paper reports on AVE: Table 2 per ablation, Table 1 baselines,
# and the full model under the key None.
TABLE2: dict[str | None, float] = {
    None: 76.2,
    "no-unimodal-rnn": 74.5,
    "no-joint-rnn": 74.9,
    "no-residual": 75.2,
    "gru": 75.3,
    "avg-pool": 75.1,
    "max-pool": 75.0,
    "coattention": 75.4,
    "audio-only": 59.5,
    "visual-only": 55.3,
}

# How the paper names each row, for printing beside our numbers.
ROW_NAMES: dict[str | None, str] = {
    None: "Ours w/ Joint Co-Attention",
    "no-unimodal-rnn": "Ours w/o Uni-modal Bi-LSTM",
    "no-joint-rnn": "Ours w/o Joint Bi-LSTM",
    "no-residual": "Ours w/o Residual Embedding",
    "gru": "Ours w/ GRU",
    "avg-pool": "Ours w/ Average Pooling",
    "max-pool": "Ours w/ Max Pooling",
    "coattention": "Ours w/ Co-Attention",
    "audio-only": "Audio_Only (Vggish)",
    "visual-only": "Visual_Only (Vgg19)",
}


def preset(name: str, ablation: str | None = None, **overrides: Any) -> JCAConfig:
    """A preset, optionally with one ablation and field overrides (applied in that order)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}, choose one of {sorted(PRESETS)}")
    if ablation is not None and ablation not in ABLATIONS:
        raise ValueError(f"unknown ablation {ablation!r}, choose one of {sorted(ABLATIONS)}")
    cfg = PRESETS[name]
    changes = {**(ABLATIONS[ablation] if ablation else {}), **overrides}
    return replace(cfg, **changes) if changes else cfg
