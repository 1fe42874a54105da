"""BPR-MF: matrix factorisation trained with Bayesian Personalised Ranking (behaviour only)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from befa_viz.models._common import bpr_loss, emb_loss
from befa_viz.models.base import MODELS, Recommender

__all__ = ["BPRMF"]


@MODELS.register("bprmf")
class BPRMF(Recommender):
    """Matrix factorisation with the BPR loss, s(u, i) = ⟨p_u, q_i⟩.

    Rendle et al., "BPR: Bayesian Personalized Ranking from Implicit Feedback", UAI 2009
    (arXiv:1205.2618). The behaviour-only floor; it has no content pathway, so asking for an
    adapter raises :class:`~befa_viz.errors.ConfigError`.

    Args:
        n_users: Number of users.
        n_items: Number of items.
        dim: Embedding size.
        reg_weight: Weight of MMRec's ``EmbLoss`` (Σ‖·‖_F over the batch's user, positive
            and negative embeddings, divided by the batch size).
        **kwargs: Passed to :class:`Recommender` (``features`` are ignored).

    Example:
        >>> m = BPRMF(n_users=3, n_items=5, dim=4)
        >>> m.score_users(torch.tensor([0, 2])).shape
        torch.Size([2, 5])
    """

    multimodal = False

    def __init__(self, n_users: int, n_items: int, *, dim: int = 64, reg_weight: float = 1e-3,
                 **kwargs: Any) -> None:
        super().__init__(n_users, n_items, dim=dim, **kwargs)
        self.reg_weight = float(reg_weight)
        self.user_emb = nn.Embedding(self.n_users, self.dim)
        self.item_emb = nn.Embedding(self.n_items, self.dim)
        nn.init.xavier_normal_(self.user_emb.weight)  # as MMRec's xavier_normal_initialization
        nn.init.xavier_normal_(self.item_emb.weight)

    def compute_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user_emb.weight, self.item_emb.weight

    def backbone_loss(
        self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor
    ) -> torch.Tensor:
        u, p, n = self.user_emb(users), self.item_emb(pos), self.item_emb(neg)
        loss = bpr_loss((u * p).sum(-1), (u * n).sum(-1))
        return loss + self.reg_weight * emb_loss(u, p, n)
