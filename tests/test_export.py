"""torch.export of one window: no RNN op left after decomposition, only ops TensorRT converts,
and the exported program matches eager (FACTS section 7)."""

from __future__ import annotations

import pytest
import torch

from model.backends.export import RNN_OPS, TRT_CONVERTIBLE_OPS, export_window, graph_ops
from model.config import preset
from model.network import JCANet

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", ["paper", "reference"])
def test_export_window(name: str) -> None:
    torch.manual_seed(0)
    net = JCANet(preset(name)).train()  # export must not depend on the caller's mode
    ep = export_window(net, attention=True)
    assert net.training  # restored
    net.eval()

    ops = graph_ops(ep)
    assert not set(ops) & RNN_OPS
    assert not [op for op in ops if "lstm" in op or "gru" in op or "rnn" in op]
    assert ops["aten.sigmoid.default"] > 0  # the LSTMs really were unrolled into the graph
    assert sorted(set(ops) - TRT_CONVERTIBLE_OPS) == []

    g = torch.Generator().manual_seed(1)
    audio = torch.rand(1, 10, 128, generator=g)
    visual = torch.rand(1, 10, 7, 7, 512, generator=g)
    got_logits, got_attn = ep.module()(audio, visual)
    with torch.no_grad():
        want_logits, want_attn = net(audio, visual, return_attention=True)
    torch.testing.assert_close(got_logits, want_logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(got_attn, want_attn, rtol=0, atol=1e-5)


def test_export_gru_variant_has_no_rnn_op() -> None:
    net = JCANet(preset("paper", "gru", hidden=16, joint_hidden=16, embed=32, joint_embed=32))
    ep = export_window(net)
    ops = graph_ops(ep)
    assert not set(ops) & RNN_OPS
    assert sorted(set(ops) - TRT_CONVERTIBLE_OPS) == []
    g = torch.Generator().manual_seed(2)
    audio, visual = torch.rand(1, 10, 128, generator=g), torch.rand(1, 10, 7, 7, 512, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(audio, visual), net.eval()(audio, visual),
                                   rtol=0, atol=1e-5)
