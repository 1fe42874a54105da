"""LightGCN: linear propagation of ID embeddings over the user-item graph (behaviour only)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from befa_viz.models._common import (
    bpr_loss,
    check_train_graph,
    csr_pair,
    emb_loss,
    propagate_mean,
    train_edges,
    ui_adjacency,
)
from befa_viz.models.base import MODELS, Recommender

__all__ = ["LightGCN"]


@MODELS.register("lightgcn")
class LightGCN(Recommender):
    """LightGCN: the mean of [E, ÂE, …, Â^L E] over the normalised user-item graph.

    He et al., "LightGCN: Simplifying and Powering Graph Convolution Network for
    Recommendation", SIGIR 2020 (arXiv:2002.02126). Â = D^-½ A D^-½ is built once from
    ``train_graph`` as a sparse buffer (not saved in the state dict; it moves with
    ``.to(device)``). As MMRec's ``LightGCN``: Xavier-uniform embeddings, BPR on the propagated
    embeddings and ``EmbLoss`` on the layer-0 (ego) embeddings of the batch.

    Args:
        n_users: Number of users.
        n_items: Number of items.
        train_graph: Binary user × item training matrix (``scipy.sparse``).
        dim: Embedding size.
        n_layers: Propagation layers L.
        reg_weight: Weight of ``EmbLoss`` on the batch's ego embeddings.
        **kwargs: Passed to :class:`Recommender` (``features`` are ignored).

    Example:
        >>> from befa_viz.testing import toy_dataset
        >>> it = toy_dataset().interactions
        >>> m = LightGCN(it.n_users, it.n_items, train_graph=it.train().csr(), dim=8)
        >>> m.score_users(torch.tensor([0, 1])).shape
        torch.Size([2, 12])
    """

    multimodal = False
    adj: torch.Tensor  # buffer: normalised user-item adjacency (sparse CSR, symmetric)

    def __init__(self, n_users: int, n_items: int, *, train_graph: Any = None, dim: int = 64,
                 n_layers: int = 2, reg_weight: float = 1e-4, **kwargs: Any) -> None:
        super().__init__(n_users, n_items, dim=dim, train_graph=train_graph, **kwargs)
        graph = check_train_graph(train_graph, self.n_users, self.n_items, "LightGCN")
        self.n_layers, self.reg_weight = int(n_layers), float(reg_weight)
        self.user_emb = nn.Embedding(self.n_users, self.dim)
        self.item_emb = nn.Embedding(self.n_items, self.dim)
        nn.init.xavier_uniform_(self.user_emb.weight)
        nn.init.xavier_uniform_(self.item_emb.weight)
        users, items = train_edges(graph)
        adj, _ = csr_pair(ui_adjacency(users, items, self.n_users, self.n_items), symmetric=True)
        self.register_buffer("adj", adj, persistent=False)

    def compute_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        ego = torch.cat([self.user_emb.weight, self.item_emb.weight])  # [U+I, d]
        out = propagate_mean(self.adj, ego, self.n_layers, adj_t=self.adj)
        return out[: self.n_users], out[self.n_users :]

    def backbone_loss(
        self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor
    ) -> torch.Tensor:
        user_e, item_e = self.compute_embeddings()
        u = user_e[users]
        loss = bpr_loss((u * item_e[pos]).sum(-1), (u * item_e[neg]).sum(-1))
        reg = emb_loss(self.user_emb(users), self.item_emb(pos), self.item_emb(neg))
        return loss + self.reg_weight * reg
