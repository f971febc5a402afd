"""torch.export of the JCA window, decomposed for TensorRT: its own step, apart from the model.

    ep = export_window(net, batch=1, attention=True)   # RNNs unrolled into matmuls
    sorted(set(graph_ops(ep)) - TRT_CONVERTIBLE_OPS)   # [] : every op converts
    logits, attn = ep.module()(audio, visual)

torch is imported when a program is exported; the op lists and `graph_ops` need none.
"""

from __future__ import annotations

import operator
import warnings
from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from model.network import JCANet

# ATen ops (after run_decompositions) that Torch-TensorRT's dynamo frontend converts natively:
# each has a converter registered in pytorch/TensorRT py/torch_tensorrt/dynamo/conversion/
# aten_ops_converters.py (operator.getitem in ops_evaluators.py), as listed on the
# "Operators Supported" page of Torch-TensorRT 2.12. Only what JCA graphs need is listed: an
# export whose graph strays outside this list would fall back to PyTorch inside TensorRT.
TRT_CONVERTIBLE_OPS = frozenset({
    "aten._softmax.default", "aten.add.Tensor", "aten.addmm.default", "aten.amax.default",
    "aten.bmm.default", "aten.cat.default", "aten.clamp.default", "aten.clone.default",
    "aten.div.Tensor", "aten.eq.Tensor", "aten.expand.default", "aten.flip.default",
    "aten.mean.dim", "aten.mm.default", "aten.mul.Tensor", "aten.permute.default",
    "aten.relu.default", "aten.rsqrt.default", "aten.select.int", "aten.sigmoid.default",
    "aten.slice.Tensor", "aten.split_with_sizes.default", "aten.squeeze.dims",
    "aten.sub.Tensor", "aten.sum.dim_IntList", "aten.tanh.default", "aten.unsqueeze.default",
    "aten.view.default", "aten.where.self", "operator.getitem",
    # a half-precision program casts around l2_normalize's float32 norm: _to_copy converts, and
    # the dtype assert that export puts beside it is dropped by Torch-TensorRT's
    # remove_assert_nodes lowering pass
    "aten._to_copy.default", "aten._assert_tensor_metadata.default",
})
RNN_OPS = frozenset({"aten.lstm.input", "aten.gru.input", "aten.rnn_tanh.input",
                     "aten.rnn_relu.input", "aten.lstm.data", "aten.gru.data"})


def export_window(model: JCANet, batch: int = 1,
                  attention: bool = False) -> torch.export.ExportedProgram:
    """torch.export one window (batch, cfg.segments) in eval mode, then run_decompositions().

    The decomposition unrolls every LSTM/GRU into matmuls and elementwise ops (TensorRT has no
    RNN converter). The program returns logits, or (logits, attention) with attention=True.
    Inputs keep the model's dtype; the model's training flag is restored afterwards.
    """
    import torch

    cfg = model.cfg
    if attention and cfg.modality == "audio":
        raise ValueError("an audio-only model has no attention map to export")
    dtype = next(model.parameters()).dtype
    audio = torch.zeros(batch, cfg.segments, cfg.audio_dim, dtype=dtype)  # (B, T, 128)
    visual = torch.zeros(batch, cfg.segments, cfg.visual_hw, cfg.visual_hw, cfg.visual_dim,
                         dtype=dtype)  # (B, T, 7, 7, 512)
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            # nn.LSTM re-assigns its flat weight list while traced; harmless here
            warnings.filterwarnings("ignore", message=".*were assigned during export.*")
            warnings.filterwarnings("ignore", category=FutureWarning)
            module = _with_attention(model) if attention else model
            ep = torch.export.export(module, (audio, visual))
            return ep.run_decompositions()
    finally:
        model.train(was_training)


def _with_attention(model: JCANet) -> torch.nn.Module:
    """`model` behind a forward(audio, visual) that returns (logits, attention)."""
    from torch import nn

    class WithAttention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, audio: torch.Tensor, visual: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
            return self.model(audio, visual, return_attention=True)

    return WithAttention()


def graph_ops(ep: torch.export.ExportedProgram) -> Counter[str]:
    """How often each op is called in an exported graph, by name ("aten.mm.default")."""
    def name(target: object) -> str:
        return "operator.getitem" if target is operator.getitem else str(target)

    return Counter(name(n.target) for n in ep.graph.nodes if n.op == "call_function")
