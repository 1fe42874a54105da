"""The BeFA adapter: the published layer order, the earlier layout, and its defaults."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from befa_viz.errors import ConfigError
from befa_viz.models import BehaviorAdapter
from befa_viz.train import TrainConfig

PUBLISHED = [nn.Linear, nn.ReLU, nn.Dropout, nn.Tanh, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
V1 = [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear, nn.Tanh, nn.Dropout, nn.Linear]


@pytest.mark.parametrize(("layout", "order"), [("befa", PUBLISHED), ("befa-viz-v1", V1)])
def test_layer_order_is_pinned(layout, order):
    a = BehaviorAdapter(dim=4, n_layers=3, dropout=0.3, layout=layout)
    assert [type(m) for m in a.mlp] == order
    linears = [m for m in a.mlp if isinstance(m, nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(4, 12), (12, 12), (12, 4)]
    assert all(m.p == 0.3 for m in a.mlp if isinstance(m, nn.Dropout))


def test_published_gate_is_the_official_forward():
    """σ(W₃ ReLU(W₂ tanh(ReLU(W₁ċ + b₁)) + b₂) + b₃), dropout off in eval mode."""
    torch.manual_seed(0)
    a = BehaviorAdapter(dim=5, n_layers=2).eval()
    l1, l2, l3 = (m for m in a.mlp if isinstance(m, nn.Linear))
    c, e = torch.randn(7, 5), torch.randn(7, 5)
    expected = torch.sigmoid(l3(torch.relu(l2(torch.tanh(torch.relu(l1(c)))))))
    torch.testing.assert_close(a.gate(c), expected)
    torch.testing.assert_close(a(c, e), expected * e)


def test_unknown_layout_is_a_config_error():
    with pytest.raises(ConfigError, match="befa-viz-v1"):
        BehaviorAdapter(dim=4, layout="tanh-last")  # type: ignore[arg-type]


def test_config_defaults_are_the_published_adapter():
    kw = TrainConfig(model="vbpr", adapter="befa").adapter_kwargs()
    assert kw["layout"] == "befa" and kw["gate_bias"] is None
    torch.manual_seed(0)
    a = BehaviorAdapter(dim=8, **kw)
    assert not torch.all(a.mlp[-1].bias == 0)  # PyTorch's default init, as the official code
