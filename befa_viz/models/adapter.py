"""The BeFA Behavior-driven Feature Adapter.

Fan et al., "BeFA: A General Behavior-driven Feature Adapter for Multimedia Recommendation",
AAAI 2025 (arXiv:2406.00323). The content feature is first *decoupled* by the backbone's own
projection (ċ = W₁c + b₁, D_m → d); the adapter *filters* ċ through a small MLP ending in a
sigmoid, giving a gate g ∈ (0,1)^d, and *reconstructs* the content representation as g ⊙ e,
where e is the item's behavioural (ID) embedding: content picks which behavioural dimensions
matter, behaviour supplies the values.
"""

from __future__ import annotations

from typing import Protocol, cast

import torch
from torch import nn

from befa_viz.errors import ConfigError
from befa_viz.registry import Registry

__all__ = ["ADAPTERS", "BehaviorAdapter", "GatedAdapter"]

ADAPTERS: Registry[nn.Module] = Registry("adapter")


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
                 gate_bias: float | None = None, temperature: float = 1.0,
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
        hidden = n_layers * dim
        self.temperature, self.gate_reg = float(temperature), float(gate_reg)
        self.gate_target = None if gate_target is None else float(gate_target)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.Tanh(), nn.Dropout(dropout),
            nn.Linear(hidden, dim),
        )
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
