"""MGCN: multi-view graph convolution with behaviour-purified modality features."""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from befa_viz.models._common import (
    TwoViewMixin,
    bpr_loss,
    check_train_graph,
    info_nce,
    l2_reg,
    train_edges,
)
from befa_viz.models.base import MODELS, Recommender

__all__ = ["MGCN"]


@MODELS.register("mgcn")
class MGCN(TwoViewMixin, Recommender):
    """MGCN: user-item view, per-modality item-item views, and a behaviour-aware fuser.

    Yu et al., "Multi-View Graph Convolutional Network for Multimedia Recommendation",
    ACM MM 2023 (arXiv:2308.03588). Reproduces MMRec's ``MGCN`` for any number M of
    modalities:

    - *behaviour-guided purifier*: x_m = e_i ⊙ σ(W_m c_m + b_m) with c_m = ``item_content(m)``
      and e_i the item ID embedding;
    - *item-item view*: per modality a cosine kNN graph (``knn_k`` per item, itself included)
      on the raw features, similarity-weighted, normalised D^-½ A D^-½ with row degrees
      (``build_knn_normalized_graph(..., norm_type='sym')``); x_m is propagated ``n_layers``
      times and users get R̂ x_m, with R̂ the symmetric-normalised user-item block;
    - *user-item view*: LightGCN over D^-½ A D^-½ (``n_ui_layers``) gives the behaviour
      representation b (MMRec calls it ``content_embeds``);
    - *behaviour-aware fuser*: attention α = softmax_m(q(v_m)) with a shared query MLP q gives
      the common part Σ_m α_m v_m; the modality-specific parts v_m − common are gated by
      σ(W'_m b); side = (Σ_m gated_m + common) / (M + 1) (MMRec's /3 for two modalities);
    - final = b + side; loss = BPR + ``reg_weight`` · Σ‖·‖²/2 / batch on the batch's final
      embeddings + ``cl_weight`` · [InfoNCE(side, b) over the batch's positive items +
      InfoNCE(side, b) over its users], temperature ``temperature``.

    Content pathway: with ``adapter="befa"`` the purifier receives g_m ⊙ e_i instead of the
    projection (the adapter replaces the projected feature wherever the backbone used it), so
    the two gates stack: e_i ⊙ σ(W_m (g_m ⊙ e_i) + b_m). :meth:`content_user_vectors` is a
    local approximation: the content representation enters the score non-linearly (through
    the purifier gate and the fuser), and is attributed as if it were added to the item
    representation, i.e. scored against the final user embeddings. Differences from MMRec:
    the raw features stay frozen unless ``train_features=True`` (MMRec fine-tunes them) and
    the graphs are not cached on disk.

    Args:
        n_users: Number of users.
        n_items: Number of items.
        features: Raw content features per modality, ``[n_items, D_m]`` each.
        train_graph: Binary user × item training matrix (``scipy.sparse``).
        dim: Embedding size d.
        knn_k: Neighbours per item in the item-item graphs.
        n_layers: Item-item graph convolutions.
        n_ui_layers: User-item LightGCN layers.
        reg_weight: Weight of the L2 penalty on the final batch embeddings.
        cl_weight: Weight of the contrastive terms (MMRec's ``cl_loss``).
        temperature: InfoNCE temperature.
        knn_chunk: Rows per similarity block when building the kNN graphs.
        **kwargs: Passed to :class:`Recommender` (``adapter``, ``adapter_kwargs``, ...).

    Example:
        >>> from befa_viz.testing import toy_dataset
        >>> it = toy_dataset().interactions
        >>> feats = {"image": torch.randn(12, 16), "text": torch.randn(12, 8)}
        >>> m = MGCN(it.n_users, it.n_items, train_graph=it.train().csr(), dim=8,
        ...          features=feats, knn_k=3)
        >>> m.score_users(torch.tensor([0, 1])).shape
        torch.Size([2, 12])
    """

    supports_train_features = True  # MMRec: from_pretrained(freeze=False)

    def __init__(self, n_users: int, n_items: int, *, train_graph: Any = None, dim: int = 64,
                 knn_k: int = 10, n_layers: int = 1, n_ui_layers: int = 2,
                 reg_weight: float = 1e-4, cl_weight: float = 0.01, temperature: float = 0.2,
                 knn_chunk: int = 1024, **kwargs: Any) -> None:
        super().__init__(n_users, n_items, dim=dim, train_graph=train_graph, **kwargs)
        graph = check_train_graph(train_graph, self.n_users, self.n_items, "MGCN")
        self.knn_k, self.n_layers, self.n_ui_layers = int(knn_k), int(n_layers), int(n_ui_layers)
        self.reg_weight, self.cl_weight = float(reg_weight), float(cl_weight)
        self.temperature = float(temperature)
        self.user_emb = nn.Embedding(self.n_users, self.dim)
        self.item_emb = nn.Embedding(self.n_items, self.dim)
        nn.init.xavier_uniform_(self.user_emb.weight)
        nn.init.xavier_uniform_(self.item_emb.weight)
        d = self.dim
        self.purifiers = nn.ModuleDict(
            {m: nn.Sequential(nn.Linear(d, d), nn.Sigmoid()) for m in self.modalities}
        )
        self.preferences = nn.ModuleDict(
            {m: nn.Sequential(nn.Linear(d, d), nn.Sigmoid()) for m in self.modalities}
        )
        self.query_common = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, 1, bias=False))

        users, items = train_edges(graph)
        self.register_view_graphs(users, items, {m: self.raw_features(m) for m in self.modalities},
                                  self.knn_k, knn_chunk)

    def views(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Behaviour view b and fused side view, both ``[n_users + n_items, d]``."""
        behaviour = self.behaviour_view()
        modal = [  # [U+I, d] each
            self.side_view(m, self.item_emb.weight * self.purifiers[m](self.item_content(m)))
            for m in self.modalities
        ]
        att = torch.softmax(torch.cat([self.query_common(v) for v in modal], dim=-1), dim=-1)
        # [U+I, d]; sum() starts from 0, so typeshed types it `Tensor | Literal[0]`
        common = cast(torch.Tensor, sum(att[:, k : k + 1] * v for k, v in enumerate(modal)))
        side = common
        for m, v in zip(self.modalities, modal, strict=True):
            side = side + self.preferences[m](behaviour) * (v - common)
        return behaviour, side / (len(modal) + 1)

    def backbone_loss(
        self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor
    ) -> torch.Tensor:
        behaviour, side = self.views()
        out = behaviour + side
        u = out[users]
        p, n = out[self.n_users + pos], out[self.n_users + neg]
        loss = bpr_loss((u * p).sum(-1), (u * n).sum(-1)) + self.reg_weight * l2_reg(u, p, n)
        cl = info_nce(side[self.n_users + pos], behaviour[self.n_users + pos], self.temperature)
        cl = cl + info_nce(side[users], behaviour[users], self.temperature)
        return loss + self.cl_weight * cl
