"""FREEDOM: a frozen item-item graph and a denoised (pruned) user-item graph."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from befa_viz.errors import ConfigError
from befa_viz.models._common import (
    bipartite_values,
    bpr_loss,
    check_train_graph,
    csr_pair,
    graph_mm,
    knn_graph,
    propagate_mean,
    sparse,
    train_edges,
    ui_adjacency,
)
from befa_viz.models.base import MODELS, Recommender

__all__ = ["FREEDOM"]


@MODELS.register("freedom")
class FREEDOM(Recommender):
    """FREEDOM: freezing the item-item graph and denoising the user-item graph.

    Zhou & Shen, "A Tale of Two Graphs: Freezing and Denoising Graph Structures for
    Multimodal Recommendation", ACM MM 2023 (arXiv:2211.06924). Reproduces MMRec's
    ``FREEDOM``:

    - *frozen item graph*: per modality an unweighted cosine kNN graph (``knn_k`` per item,
      itself included) on the raw features, normalised D^-½ A D^-½ with row degrees, mixed
      with ``image_weight`` for ``"image"`` and the rest shared equally by the other
      modalities (MMRec: ``mm_image_weight`` 0.1 image / 0.9 text); uniform without an image;
    - *denoised user-item graph*: degree-sensitive edge pruning — each epoch keeps
      (1 − ``dropout``) of the training edges, sampled without replacement with probability
      ∝ 1/√(d_u d_i), and re-normalises the kept graph; evaluation uses the full graph;
    - h = (item graph)^L · item ID embeddings; item = LightGCN item + h, user = LightGCN user;
    - loss = BPR on the final embeddings + ``aux_weight`` · Σ_m BPR(user, content_m) where
      content_m = ``item_content(m)`` (MMRec's ``reg_weight`` weighting ``mf_v_loss`` and
      ``mf_t_loss`` on ``image_trs``/``text_trs`` of the features).

    Content pathway: as in the paper and MMRec, the content representation reaches the model
    only through this auxiliary BPR term, which trains the user embeddings to rank items by
    their content too; the item graph itself comes from the raw features and the item score
    never contains content directly. With ``adapter="befa"`` the auxiliary term scores
    g_m ⊙ e_i instead of the projection. :meth:`content_user_vectors` is therefore exact for
    the auxiliary term: the final user embeddings (from the full graph). Differences from
    MMRec: the raw features stay frozen by default (MMRec stores them as trainable
    ``nn.Embedding``, fine-tuned through the auxiliary term; ``train_features=True`` does the
    same), the graph is not cached on disk, any number of modalities.

    The pruned graph is resampled in :meth:`on_epoch_start` (and on ``train()``), from torch's
    global random generator, so a seeded trainer reproduces it.

    Args:
        n_users: Number of users.
        n_items: Number of items.
        features: Raw content features per modality, ``[n_items, D_m]`` each.
        train_graph: Binary user × item training matrix (``scipy.sparse``).
        dim: Embedding size d.
        knn_k: Neighbours per item in the frozen graph.
        n_mm_layers: Item-graph convolutions.
        n_ui_layers: User-item LightGCN layers.
        dropout: Share of user-item edges pruned each epoch (0 disables pruning).
        image_weight: Mixing weight of the ``"image"`` graph when other modalities exist.
        aux_weight: Weight of the per-modality auxiliary BPR terms (MMRec's ``reg_weight``).
        knn_chunk: Rows per similarity block when building the kNN graph.
        **kwargs: Passed to :class:`Recommender` (``adapter``, ``adapter_kwargs``, ...).

    Example:
        >>> from befa_viz.testing import toy_dataset
        >>> it = toy_dataset().interactions
        >>> m = FREEDOM(it.n_users, it.n_items, train_graph=it.train().csr(), dim=8,
        ...             features={"image": torch.randn(12, 16)}, knn_k=3)
        >>> m.score_users(torch.tensor([0, 1])).shape
        torch.Size([2, 12])
    """

    supports_train_features = True  # MMRec: from_pretrained(freeze=False)

    # Buffers: the training graph's edges and adjacency, the frozen item-item graph (and its
    # transpose) and the pruned adjacency of the current epoch (None until first sampled).
    # The graphs are sparse CSR.
    edge_users: torch.Tensor
    edge_items: torch.Tensor
    edge_values: torch.Tensor
    adj: torch.Tensor
    mm_adj: torch.Tensor
    mm_adj_t: torch.Tensor
    masked_adj: torch.Tensor | None

    def __init__(self, n_users: int, n_items: int, *, train_graph: Any = None, dim: int = 64,
                 knn_k: int = 10, n_mm_layers: int = 1, n_ui_layers: int = 2,
                 dropout: float = 0.8, image_weight: float = 0.1, aux_weight: float = 1e-4,
                 knn_chunk: int = 1024, **kwargs: Any) -> None:
        super().__init__(n_users, n_items, dim=dim, train_graph=train_graph, **kwargs)
        graph = check_train_graph(train_graph, self.n_users, self.n_items, "FREEDOM")
        if not 0 <= dropout < 1:
            raise ConfigError(f"FREEDOM dropout (share of pruned edges) must be in [0, 1); "
                              f"got {dropout}.")
        if not 0 <= image_weight <= 1:
            raise ConfigError(f"FREEDOM image_weight must be in [0, 1]; got {image_weight}.")
        self.knn_k, self.n_mm_layers, self.n_ui_layers = int(knn_k), int(n_mm_layers), int(
            n_ui_layers)
        self.dropout, self.aux_weight = float(dropout), float(aux_weight)
        self.image_weight = float(image_weight)
        self.user_emb = nn.Embedding(self.n_users, self.dim)
        self.item_emb = nn.Embedding(self.n_items, self.dim)
        nn.init.xavier_uniform_(self.user_emb.weight)
        nn.init.xavier_uniform_(self.item_emb.weight)

        users, items = train_edges(graph)
        self.register_buffer("edge_users", users, persistent=False)
        self.register_buffer("edge_items", items, persistent=False)
        self.register_buffer("edge_values", bipartite_values(users, items, self.n_users,
                                                             self.n_items), persistent=False)
        adj, _ = csr_pair(ui_adjacency(users, items, self.n_users, self.n_items), symmetric=True)
        self.register_buffer("adj", adj, persistent=False)
        self.register_buffer("masked_adj", None, persistent=False)
        weights = self.modality_weights()
        parts = [knn_graph(self.raw_features(m), self.knn_k, weighted=False, chunk=knn_chunk)
                 for m in self.modalities]
        values = [weights[m] * g.values() for m, g in zip(self.modalities, parts, strict=True)]
        mm_adj, mm_adj_t = csr_pair(sparse(torch.cat([g.indices() for g in parts], dim=1),
                                           torch.cat(values), (self.n_items, self.n_items)))
        self.register_buffer("mm_adj", mm_adj, persistent=False)
        self.register_buffer("mm_adj_t", mm_adj_t, persistent=False)
        self._graph_stale = True

    def modality_weights(self) -> dict[str, float]:
        """Mixing weight of each modality's frozen kNN graph (they sum to 1)."""
        ms = self.modalities
        if "image" in ms and len(ms) > 1:
            rest = (1.0 - self.image_weight) / (len(ms) - 1)
            return {m: self.image_weight if m == "image" else rest for m in ms}
        return {m: 1.0 / len(ms) for m in ms}

    def on_epoch_start(self) -> None:
        self._graph_stale = True

    def train(self, mode: bool = True) -> FREEDOM:
        super().train(mode)
        if mode:
            self._graph_stale = True
        return self

    def prune(self) -> torch.Tensor:
        """Sample the degree-sensitive pruned, re-normalised user-item graph."""
        if self.dropout <= 0:
            return self.adj
        n_keep = int(self.edge_values.shape[0] * (1.0 - self.dropout))
        keep = torch.multinomial(self.edge_values, n_keep, replacement=False)
        users, items = self.edge_users[keep], self.edge_items[keep]
        values = bipartite_values(users, items, self.n_users, self.n_items)
        graph = ui_adjacency(users, items, self.n_users, self.n_items, values=values)
        return csr_pair(graph, symmetric=True)[0]

    def _ui_graph(self) -> torch.Tensor:
        if not self.training:
            return self.adj
        if self._graph_stale or self.masked_adj is None:
            self.masked_adj = self.prune()
            self._graph_stale = False
        return self.masked_adj

    def compute_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.item_emb.weight
        for _ in range(self.n_mm_layers):
            h = graph_mm(self.mm_adj, self.mm_adj_t, h)
        ego = torch.cat([self.user_emb.weight, self.item_emb.weight])
        ui = self._ui_graph()  # symmetric: its own transpose
        out = propagate_mean(ui, ego, self.n_ui_layers, adj_t=ui)
        return out[: self.n_users], out[self.n_users :] + h

    def content_user_vectors(self, modality: str) -> torch.Tensor:
        """Final user embeddings: what the auxiliary term scores ``item_content(m)`` against."""
        self.raw_features(modality)  # validates the name
        return self.user_embeddings()

    def backbone_loss(
        self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor
    ) -> torch.Tensor:
        user_e, item_e = self.compute_embeddings()
        u = user_e[users]
        loss = bpr_loss((u * item_e[pos]).sum(-1), (u * item_e[neg]).sum(-1))
        if self.aux_weight:
            both = torch.cat([pos, neg])  # one projection (one table gradient) per modality
            for m in self.modalities:
                cp, cn = self.batch_content(m, both).split([pos.shape[0], neg.shape[0]])
                loss = loss + self.aux_weight * bpr_loss((u * cp).sum(-1), (u * cn).sum(-1))
        return loss
