"""The BeFA Behavior-driven Feature Adapter.

Fan et al., "BeFA: A General Behavior-driven Feature Adapter for Multimedia Recommendation",
AAAI 2025 (arXiv:2406.00323). The content feature is first *decoupled* by the backbone's own
projection (ċ = W₁c + b₁, D_m → d); the adapter *filters* ċ through a small MLP ending in a
sigmoid, giving a gate g ∈ (0,1)^d, and *reconstructs* the content representation as g ⊙ e,
where e is the item's behavioural (ID) embedding: content picks which behavioural dimensions
matter, behaviour supplies the values.

The filter MLP follows the official code's layer order by default (``layout="befa"``); the
layout befa-viz used before (Tanh after the second Linear, no second ReLU) is kept as
``layout="befa-viz-v1"`` so that runs and figures made with it can be reproduced.
"""

from __future__ import annotations

from typing import Literal, Protocol, cast

import torch
from torch import nn

from befa_viz.errors import ConfigError
from befa_viz.registry import Registry

__all__ = ["ADAPTERS", "ADAPTER_LAYOUTS", "BehaviorAdapter", "GatedAdapter"]

ADAPTERS: Registry[nn.Module] = Registry("adapter")

AdapterLayout = Literal["befa", "befa-viz-v1"]
#: Filter-MLP layer orders: the official code's and befa-viz's earlier one.
ADAPTER_LAYOUTS: tuple[str, ...] = ("befa", "befa-viz-v1")


class GatedAdapter(Protocol):
    """What :class:`~befa_viz.models.base.Recommender` calls on a module from ``ADAPTERS``.

    ``penalty`` is only called when the adapter has a ``gate_reg`` attribute > 0.
    """

    def __call__(self, content: torch.Tensor, behaviour: torch.Tensor) -> torch.Tensor: ...

    def gate(self, content: torch.Tensor) -> torch.Tensor: ...

    def penalty(self, gate: torch.Tensor) -> torch.Tensor: ...


@ADAPTERS.register("befa")
class BehaviorAdapter(nn.Module):
    """Filter a projected content feature into a gate and apply it to the behaviour embedding.

    Args:
        dim: Size d of the projected content and of the behaviour embedding.
        n_layers: Width multiplier L of the hidden layers (d → L·d → L·d → d).
        dropout: Dropout between the hidden layers.
        layout: ``"befa"`` (default): the official code's filter, Linear(d→L·d) → ReLU →
            Dropout → Tanh → Linear(L·d→L·d) → ReLU → Dropout → Linear(L·d→d) → Sigmoid.
            ``"befa-viz-v1"``: befa-viz's earlier order, Linear → ReLU → Dropout → Linear →
            Tanh → Dropout → Linear → Sigmoid (kept to reproduce runs made with it).
        gate_bias: Initial bias of the last layer. ``None`` keeps PyTorch's default
            initialisation (as the paper's code); a number sets it, e.g. 0 starts every gate
            near 0.5 and a negative value starts it closed. A gate pinned near 1 makes the
            adapter a no-op.
        temperature: Divides the pre-sigmoid logits; < 1 sharpens the gate, > 1 softens it.
        gate_reg: Weight of a gate penalty the backbone adds to its loss
            (:meth:`~befa_viz.models.base.Recommender.gate_penalty`); 0 (the paper's setting)
            disables it. Use it against gate collapse towards 1.
        gate_target: ``None``: the penalty is L1, the batch's mean gate. A number t in
            (0, 1): the penalty is (mean gate − t)², a budget that keeps a share t of the
            dimensions open on average and leaves the adapter to choose which. Because the
            backbone can rescale its other embeddings, plain L1 tends to close every gate
            at once; the budget form avoids that.

    Example:
        >>> a = BehaviorAdapter(dim=4)
        >>> out = a(torch.randn(3, 4), torch.randn(3, 4))
        >>> out.shape, bool(((a.gate(torch.randn(3, 4)) > 0) & (a.gate(torch.randn(3, 4)) < 1)).all())
        (torch.Size([3, 4]), True)
    """

    def __init__(self, dim: int = 64, n_layers: int = 1, dropout: float = 0.1,
                 layout: AdapterLayout = "befa", gate_bias: float | None = None, temperature: float = 1.0,
                 gate_reg: float = 0.0, gate_target: float | None = None) -> None:
        super().__init__()
        if n_layers < 1:
            raise ConfigError(f"Adapter n_layers must be >= 1, got {n_layers}.")
        if not 0 <= dropout < 1:
            raise ConfigError(f"Adapter dropout must be in [0, 1), got {dropout}.")
        if temperature <= 0:
            raise ConfigError(f"Adapter temperature must be > 0, got {temperature}.")
        if gate_reg < 0:
            raise ConfigError(f"Adapter gate_reg must be >= 0, got {gate_reg}.")
        if gate_target is not None and not 0 < gate_target < 1:
            raise ConfigError(f"Adapter gate_target must be in (0, 1) or None, got {gate_target}.")
        if layout not in ADAPTER_LAYOUTS:
            raise ConfigError(
                f"Adapter layout must be one of {', '.join(ADAPTER_LAYOUTS)}; got {layout!r}. "
                "'befa' is the official code's layer order."
            )
        hidden = n_layers * dim
        self.layout = layout
        self.temperature, self.gate_reg = float(temperature), float(gate_reg)
        self.gate_target = None if gate_target is None else float(gate_target)
        if layout == "befa":  # the official code (BeFA's repository, ``self.mlp``)
            layers: list[nn.Module] = [
                nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Tanh(),
                nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
                nn.Linear(hidden, dim),
            ]
        else:
            layers = [
                nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                nn.Linear(hidden, hidden), nn.Tanh(), nn.Dropout(dropout),
                nn.Linear(hidden, dim),
            ]
        # The sigmoid is applied in gate(), after the temperature.
        self.mlp = nn.Sequential(*layers)
        if gate_bias is not None:
            nn.init.constant_(cast(nn.Linear, self.mlp[-1]).bias, gate_bias)

    def penalty(self, gate: torch.Tensor) -> torch.Tensor:
        """The weighted gate penalty for gate values ``[B, d]`` (0 when ``gate_reg`` is 0)."""
        if self.gate_target is None:
            return self.gate_reg * gate.mean()
        return self.gate_reg * (gate.mean() - self.gate_target) ** 2

    def gate(self, content: torch.Tensor) -> torch.Tensor:
        """Gate g(ċ) ∈ (0,1)^d for projected content ``[B, d]``."""
        return torch.sigmoid(self.mlp(content) / self.temperature)

    def forward(self, content: torch.Tensor, behaviour: torch.Tensor) -> torch.Tensor:
        """Adapted representation g(ċ) ⊙ e, ``[B, d]``."""
        return self.gate(content) * behaviour
