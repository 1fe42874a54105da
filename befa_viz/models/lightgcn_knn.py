"""LightGCN + fixed kNN item graphs: the backbone of the official BeFA code."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from befa_viz.models._common import (
    bipartite_values,
    bpr_loss,
    check_train_graph,
    knn_graph,
    l2_reg,
    propagate_mean,
    sparse,
    train_edges,
    ui_adjacency,
)
from befa_viz.models.base import MODELS, Recommender

__all__ = ["LightGCNkNN"]


@MODELS.register("lightgcn_knn")
class LightGCNkNN(Recommender):
    """LightGCN on IDs plus per-modality content views over fixed kNN item graphs.

    The backbone the BeFA paper's official code trains the adapter on (its class is called
    ``LATTICE_BeFA`` there; Fan et al., AAAI 2025, arXiv:2406.00323). It is MGCN
    (arXiv:2308.03588) without the behaviour-guided purifier, the behaviour-aware fuser and
    the contrastive loss:

    - *ID view*: LightGCN (mean of [E, ÂE, …, Â^L E], ``n_ui_layers``) over the symmetric
      normalised user-item graph gives b;
    - *content views*: per modality a cosine kNN graph on the encoder output (``knn_k`` per
      item, itself included, similarity-weighted, D^-½ A D^-½ with row degrees as MMRec's
      ``build_knn_normalized_graph``; fixed, built once), propagating x_m =
      ``item_content(m)`` (ċ_m without the adapter, g_m ⊙ e_i with ``adapter="befa"``)
      ``n_layers`` times; users get R̂ x_m with R̂ the symmetric-normalised user × item block;
    - final = b + mean_m(content view m); loss = BPR + ``reg_weight`` · Σ‖·‖²/2 / batch on the
      batch's final user, positive and negative embeddings.

    The official grid: lr {1e-4, 5e-4, 1e-3, 5e-3} × reg {1e-5, 1e-3, 1e-1} × layer_times
    (``adapter_layers``) {1, 2, 4, 8} × dropout (``adapter_dropout``) {0.1, 0.3, 0.5, 0.7},
    patience 10 (``befa_viz/configs/lightgcn_knn.yaml``). The official code fine-tunes the raw
    feature tables (``train_features=True``). :meth:`content_user_vectors` is a local
    approximation, as MGCN's: the content representation reaches an item's score through its
    kNN neighbours, and is attributed as if it were added to the item representation.

    Args:
        n_users: Number of users.
        n_items: Number of items.
        train_graph: Binary user × item training matrix (``scipy.sparse``).
        dim: Embedding size d.
        knn_k: Neighbours per item in the item-item graphs.
        n_layers: Item-item graph convolutions.
        n_ui_layers: User-item LightGCN layers.
        reg_weight: Weight of the L2 penalty on the final batch embeddings.
        knn_chunk: Rows per similarity block when building the kNN graphs.
        **kwargs: Passed to :class:`Recommender` (``features``, ``adapter``, ...).

    Example:
        >>> from befa_viz.testing import toy_dataset
        >>> it = toy_dataset().interactions
        >>> feats = {"image": torch.randn(12, 16), "text": torch.randn(12, 8)}
        >>> m = LightGCNkNN(it.n_users, it.n_items, train_graph=it.train().csr(), dim=8,
        ...                 features=feats, knn_k=3, adapter="befa")
        >>> m.score_users(torch.tensor([0, 1])).shape
        torch.Size([2, 12])
    """

    supports_train_features = True  # the official code: from_pretrained(freeze=False)

    adj: torch.Tensor  # buffer: normalised user-item adjacency (sparse)
    r_norm: torch.Tensor  # buffer: normalised user × item matrix R̂ (sparse)

    def __init__(self, n_users: int, n_items: int, *, train_graph: Any = None, dim: int = 64,
                 knn_k: int = 10, n_layers: int = 1, n_ui_layers: int = 2,
                 reg_weight: float = 1e-3, knn_chunk: int = 1024, **kwargs: Any) -> None:
        super().__init__(n_users, n_items, dim=dim, train_graph=train_graph, **kwargs)
        graph = check_train_graph(train_graph, self.n_users, self.n_items, "LightGCNkNN")
        self.knn_k, self.n_layers, self.n_ui_layers = int(knn_k), int(n_layers), int(n_ui_layers)
        self.reg_weight = float(reg_weight)
        self.user_emb = nn.Embedding(self.n_users, self.dim)
        self.item_emb = nn.Embedding(self.n_items, self.dim)
        nn.init.xavier_uniform_(self.user_emb.weight)
        nn.init.xavier_uniform_(self.item_emb.weight)
        users, items = train_edges(graph)
        values = bipartite_values(users, items, self.n_users, self.n_items)
        self.register_buffer("adj", ui_adjacency(users, items, self.n_users, self.n_items,
                                                 values=values), persistent=False)
        r_norm = sparse(torch.stack([users, items]), values, (self.n_users, self.n_items))
        self.register_buffer("r_norm", r_norm, persistent=False)  # R̂ [U, I]
        for m in self.modalities:  # built from the encoder output, before any fine-tuning
            self.register_buffer(
                f"item_graph_{m}",
                knn_graph(self.encoder_features(m), self.knn_k, weighted=True, chunk=knn_chunk),
                persistent=False,
            )

    def views(self) -> tuple[torch.Tensor, torch.Tensor]:
        """ID view b and the mean content view, both ``[n_users + n_items, d]``."""
        ego = torch.cat([self.user_emb.weight, self.item_emb.weight])
        behaviour = propagate_mean(self.adj, ego, self.n_ui_layers)
        side = torch.zeros_like(behaviour)
        for m in self.modalities:
            x = self.item_content(m)  # [I, d]
            graph = getattr(self, f"item_graph_{m}")
            for _ in range(self.n_layers):
                x = torch.sparse.mm(graph, x)
            side = side + torch.cat([torch.sparse.mm(self.r_norm, x), x])  # [U+I, d]
        return behaviour, side / len(self.modalities)

    def compute_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        behaviour, side = self.views()
        out = behaviour + side
        return out[: self.n_users], out[self.n_users :]

    def content_user_vectors(self, modality: str) -> torch.Tensor:
        """Final user embeddings (a local approximation; see the class docstring)."""
        self.raw_features(modality)  # validates the name
        return self.user_embeddings()

    def backbone_loss(
        self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor
    ) -> torch.Tensor:
        user_e, item_e = self.compute_embeddings()
        u, p, n = user_e[users], item_e[pos], item_e[neg]
        return bpr_loss((u * p).sum(-1), (u * n).sum(-1)) + self.reg_weight * l2_reg(u, p, n)
