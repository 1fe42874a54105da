"""The BeFA Behavior-driven Feature Adapter.

Fan et al., "BeFA: A General Behavior-driven Feature Adapter for Multimedia Recommendation",
AAAI 2025 (arXiv:2406.00323). The content feature is first *decoupled* by the backbone's own
projection (ċ = W₁c + b₁, D_m → d); the adapter *filters* ċ through a small MLP ending in a
sigmoid, giving a gate g ∈ (0,1)^d, and *reconstructs* the content representation as g ⊙ e,
where e is the item's behavioural (ID) embedding: content picks which behavioural dimensions
matter, behaviour supplies the values.
"""

from __future__ import annotations

import torch
from torch import nn

from befa_viz.registry import Registry

__all__ = ["ADAPTERS", "BehaviorAdapter"]

ADAPTERS: Registry[nn.Module] = Registry("adapter")


@ADAPTERS.register("befa")
class BehaviorAdapter(nn.Module):
    """Filter a projected content feature into a gate and apply it to the behaviour embedding.

    Args:
        dim: Size d of the projected content and of the behaviour embedding.
        n_layers: Width multiplier L of the hidden layers (d → L·d → L·d → d).
        dropout: Dropout between the hidden layers.
        gate_bias: Initial bias of the last layer; 0 starts the gate at 0.5 instead of near 1,
            leaving room to move (a gate pinned near 1 makes the adapter a no-op).
        temperature: Divides the pre-sigmoid logits; < 1 sharpens the gate.

    Example:
        >>> a = BehaviorAdapter(dim=4)
        >>> out = a(torch.randn(3, 4), torch.randn(3, 4))
        >>> out.shape, bool(((a.gate(torch.randn(3, 4)) > 0) & (a.gate(torch.randn(3, 4)) < 1)).all())
        (torch.Size([3, 4]), True)
    """

    def __init__(self, dim: int = 64, n_layers: int = 1, dropout: float = 0.1,
                 gate_bias: float = 0.0, temperature: float = 1.0) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}.")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        hidden = n_layers * dim
        self.temperature = temperature
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.Tanh(), nn.Dropout(dropout),
            nn.Linear(hidden, dim),
        )
        nn.init.constant_(self.mlp[-1].bias, gate_bias)

    def gate(self, content: torch.Tensor) -> torch.Tensor:
        """Gate g(ċ) ∈ (0,1)^d for projected content ``[B, d]``."""
        return torch.sigmoid(self.mlp(content) / self.temperature)

    def forward(self, content: torch.Tensor, behaviour: torch.Tensor) -> torch.Tensor:
        """Adapted representation g(ċ) ⊙ e, ``[B, d]``."""
        return self.gate(content) * behaviour
