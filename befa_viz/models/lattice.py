"""LATTICE: learned item-item structure from content, mixed with a frozen kNN graph."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from befa_viz.models._common import (
    bpr_loss,
    check_train_graph,
    cosine_values,
    csr_pair,
    edge_mm,
    frozen_knn_topk,
    knn_indices,
    l2_reg,
    propagate_mean,
    sym_norm_values,
    train_edges,
    ui_adjacency,
)
from befa_viz.models.base import MODELS, Recommender

__all__ = ["LATTICE"]


@MODELS.register("lattice")
class LATTICE(Recommender):
    """LATTICE with a LightGCN user-item encoder (MMRec's ``cf_model: lightgcn``).

    Zhang et al., "Mining Latent Structures for Multimedia Recommendation", ACM MM 2021
    (arXiv:2104.09036). Reproduces MMRec's ``LATTICE``:

    - *frozen graph* per modality: cosine kNN (``knn_k`` per item, itself included) on the raw
      features, weighted by the similarity, normalised D^-½ A D^-½ with row degrees;
    - *learned graph* per modality: the same construction on the content representation
      ``item_content(m)``, with gradients through the edge weights; modalities are mixed with
      softmax(``modal_weight``) and the mixture is normalised;
    - item graph = (1 − λ)·learned + λ·Σ_m w_m·frozen_m; h = (item graph)^L · item ID
      embeddings; item = LightGCN item + normalize(h), user = LightGCN user, where the
      user-item graph is D^-1 (A + I) as in MMRec's ``get_adj_mat``;
    - BPR + ``reg_weight`` · Σ‖·‖²/2 / batch on the final batch embeddings.

    The learned graph is rebuilt with gradients on the first training batch after
    :meth:`on_epoch_start` (or after ``train()``), then reused detached for the rest of the
    epoch, as MMRec's ``build_item_graph`` flag; in eval mode it is rebuilt once per
    evaluation. Edge lists are kept instead of MMRec's dense n × n matrices.

    Content pathway: MMRec builds the learned graph from the *projected* features
    (``image_trs(v_feat)``). We build it from ``item_content(m)``, which is exactly that
    projection without an adapter and g_m ⊙ e_i with ``adapter="befa"``. Differences from
    MMRec: the raw features stay frozen unless ``train_features=True`` (MMRec fine-tunes them
    as ``nn.Embedding``), the frozen
    graph is not cached on disk, and any number of modalities is supported.
    :meth:`content_user_vectors` is a local approximation: the content representation reaches
    the score only through the edge weights of the item graph, and is attributed as if it
    were added to the item representation (scored against the final user embeddings).

    Args:
        n_users: Number of users.
        n_items: Number of items.
        features: Raw content features per modality, ``[n_items, D_m]`` each.
        train_graph: Binary user × item training matrix (``scipy.sparse``).
        dim: Embedding size d (also MMRec's ``feat_embed_dim``).
        knn_k: Neighbours per item in the kNN graphs.
        lambda_coeff: Weight λ of the frozen graph.
        n_layers: Item-graph convolutions.
        n_ui_layers: User-item LightGCN layers (MMRec: ``len(weight_size)``).
        reg_weight: Weight of the L2 penalty on the final batch embeddings.
        knn_chunk: Rows per similarity block when building kNN graphs.
        **kwargs: Passed to :class:`Recommender` (``adapter``, ``adapter_kwargs``, ...).

    Example:
        >>> from befa_viz.testing import toy_dataset
        >>> it = toy_dataset().interactions
        >>> m = LATTICE(it.n_users, it.n_items, train_graph=it.train().csr(), dim=8,
        ...             features={"image": torch.randn(12, 16)}, knn_k=3)
        >>> m.score_users(torch.tensor([0, 1])).shape
        torch.Size([2, 12])
    """

    supports_train_features = True  # MMRec: from_pretrained(freeze=False)

    adj: torch.Tensor  # buffer: normalised user-item adjacency (sparse CSR)
    adj_t: torch.Tensor  # buffer: its transpose (CSR)
    # Buffers: the learned item graph of the current epoch, None until first built.
    graph_row: torch.Tensor | None
    graph_col: torch.Tensor | None
    graph_val: torch.Tensor | None

    def __init__(self, n_users: int, n_items: int, *, train_graph: Any = None, dim: int = 64,
                 knn_k: int = 10, lambda_coeff: float = 0.9, n_layers: int = 1,
                 n_ui_layers: int = 2, reg_weight: float = 1e-4, knn_chunk: int = 1024,
                 **kwargs: Any) -> None:
        super().__init__(n_users, n_items, dim=dim, train_graph=train_graph, **kwargs)
        graph = check_train_graph(train_graph, self.n_users, self.n_items, "LATTICE")
        self.knn_k, self.lambda_coeff = int(knn_k), float(lambda_coeff)
        self.n_layers, self.n_ui_layers = int(n_layers), int(n_ui_layers)
        self.reg_weight, self.knn_chunk = float(reg_weight), int(knn_chunk)
        self.user_emb = nn.Embedding(self.n_users, self.dim)
        self.item_emb = nn.Embedding(self.n_items, self.dim)
        nn.init.xavier_uniform_(self.user_emb.weight)
        nn.init.xavier_uniform_(self.item_emb.weight)
        n_mod = len(self.modalities)
        self.modal_weight = nn.Parameter(torch.full((n_mod,), 1.0 / n_mod))  # MMRec: [.5, .5]
        users, items = train_edges(graph)
        adj, adj_t = csr_pair(  # D^-1 (A + I) is not symmetric
            ui_adjacency(users, items, self.n_users, self.n_items, norm="left_loop"))
        self.register_buffer("adj", adj, persistent=False)
        self.register_buffer("adj_t", adj_t, persistent=False)
        for m in self.modalities:  # frozen graphs: edge lists of the normalised kNN graph
            row, col, sim = frozen_knn_topk(self.raw_features(m), self.knn_k, self.knn_chunk)
            val = sym_norm_values(row, col, sim, self.n_items)
            self.register_buffer(f"frozen_row_{m}", row, persistent=False)
            self.register_buffer(f"frozen_col_{m}", col, persistent=False)
            self.register_buffer(f"frozen_val_{m}", val, persistent=False)
        # The learned item graph of the current epoch (detached), rebuilt when stale.
        self.register_buffer("graph_row", None, persistent=False)
        self.register_buffer("graph_col", None, persistent=False)
        self.register_buffer("graph_val", None, persistent=False)
        self._graph_stale = True

    def on_epoch_start(self) -> None:
        self._graph_stale = True

    def train(self, mode: bool = True) -> LATTICE:
        super().train(mode)
        if mode:
            self._graph_stale = True
        return self

    def item_graph(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The mixed item-item graph (1 − λ)·learned + λ·frozen as an edge list.

        Edge weights carry gradients to the content pathway and ``modal_weight``.
        """
        w = torch.softmax(self.modal_weight, dim=0)
        rows, cols, learned, frozen = [], [], [], []
        for k, m in enumerate(self.modalities):
            content = self.item_content(m)  # [I, d]
            row, col = knn_indices(content.detach(), self.knn_k, self.knn_chunk)
            rows.append(row)
            cols.append(col)
            learned.append(w[k] * cosine_values(content, row, col))
        row, col = torch.cat(rows), torch.cat(cols)
        learned_val = sym_norm_values(row, col, torch.cat(learned), self.n_items)
        for k, m in enumerate(self.modalities):
            rows.append(getattr(self, f"frozen_row_{m}"))
            cols.append(getattr(self, f"frozen_col_{m}"))
            frozen.append(w[k] * getattr(self, f"frozen_val_{m}"))
        val = torch.cat([(1 - self.lambda_coeff) * learned_val,
                         self.lambda_coeff * torch.cat(frozen)])
        return torch.cat(rows), torch.cat(cols), val

    def _current_graph(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not self.training:  # MMRec rebuilds the graph for every full-sort prediction
            return self.item_graph()
        if self._graph_stale or self.graph_val is None:
            row, col, val = self.item_graph()  # with gradients, once per epoch
            self.graph_row, self.graph_col, self.graph_val = row, col, val.detach()
            self._graph_stale = False
            return row, col, val
        g_row, g_col = self.graph_row, self.graph_col
        assert g_row is not None and g_col is not None  # set together with graph_val
        return g_row, g_col, self.graph_val

    def compute_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        row, col, val = self._current_graph()
        h = self.item_emb.weight
        for _ in range(self.n_layers):
            h = edge_mm(row, col, val, h)
        ego = torch.cat([self.user_emb.weight, self.item_emb.weight])
        out = propagate_mean(self.adj, ego, self.n_ui_layers, adj_t=self.adj_t)
        return out[: self.n_users], out[self.n_users :] + F.normalize(h, dim=1)

    def content_user_vectors(self, modality: str) -> torch.Tensor:
        """Final user embeddings (a local approximation; see the class docstring)."""
        self.raw_features(modality)  # validates the name
        return self.user_embeddings()

    def backbone_loss(
        self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor
    ) -> torch.Tensor:
        user_e, item_e = self.compute_embeddings()
        u, p, n = user_e[users], item_e[pos], item_e[neg]
        loss = bpr_loss((u * p).sum(-1), (u * n).sum(-1))
        return loss + self.reg_weight * l2_reg(u, p, n)
