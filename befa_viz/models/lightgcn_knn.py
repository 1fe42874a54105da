"""LightGCN + fixed kNN item graphs: the backbone of the official BeFA code."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from befa_viz.models._common import (
    TwoViewMixin,
    bpr_loss,
    check_train_graph,
    l2_reg,
    train_edges,
)
from befa_viz.models.base import MODELS, Recommender

__all__ = ["LightGCNkNN"]


@MODELS.register("lightgcn_knn")
class LightGCNkNN(TwoViewMixin, Recommender):
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
        # the kNN graphs come from the encoder output, before any fine-tuning
        self.register_view_graphs(users, items,
                                  {m: self.encoder_features(m) for m in self.modalities},
                                  self.knn_k, knn_chunk)

    def views(self) -> tuple[torch.Tensor, torch.Tensor]:
        """ID view b and the mean content view, both ``[n_users + n_items, d]``."""
        behaviour = self.behaviour_view()
        side = torch.zeros_like(behaviour)
        for m in self.modalities:
            side = side + self.side_view(m, self.item_content(m))  # [U+I, d]
        return behaviour, side / len(self.modalities)

    def backbone_loss(
        self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor
    ) -> torch.Tensor:
        user_e, item_e = self.compute_embeddings()
        u, p, n = user_e[users], item_e[pos], item_e[neg]
        return bpr_loss((u * p).sum(-1), (u * n).sum(-1)) + self.reg_weight * l2_reg(u, p, n)
