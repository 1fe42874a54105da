"""BM3: bootstrapped latent representations, self-supervised, without negative sampling."""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from befa_viz.errors import ConfigError
from befa_viz.models._common import (
    check_train_graph,
    csr_pair,
    emb_loss,
    propagate_mean,
    train_edges,
    ui_adjacency,
)
from befa_viz.models.base import MODELS, Recommender

__all__ = ["BM3"]


def _misalignment(online: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 − mean cosine similarity between an online view and a (detached) target view."""
    return 1.0 - F.cosine_similarity(online, target.detach(), dim=-1).mean()


@MODELS.register("bm3")
class BM3(Recommender):
    """BM3: bootstrap the online representations against dropout-perturbed targets.

    Zhou et al., "Bootstrap Latent Representations for Multi-modal Recommendation", WWW 2023
    (arXiv:2207.05969). Reproduces MMRec's ``BM3``:

    - online user/item = LightGCN over D^-½ A D^-½ (``n_layers``), plus the item ID embedding
      for items; a shared linear predictor P maps every online view into the latent space;
    - targets are the detached online representations with dropout (``dropout``);
    - loss = (1 − cos(P(u), ĩ)) + (1 − cos(P(i), ũ)) + ``reg_weight`` · ``EmbLoss``(online
      users, online items) + ``cl_weight`` · Σ_m [(1 − cos(P(c_m), ĩ)) + (1 − cos(P(c_m),
      c̃_m))], where c_m = ``item_content(m)`` of the positive items and ~ marks targets;
    - scores are ⟨P(u), P(i)⟩.

    The loss only uses ``users`` and ``pos``: BM3 needs no negative sampling, and the
    ``neg`` argument of the common interface is ignored. Content reaches the model only
    through the alignment terms (the score is content-free), as in the paper and MMRec.
    :meth:`content_user_vectors` gives W_Pᵀ P(u) (W_P the predictor's weight): the content
    representation c, scored as if it were an item's online representation,
    ⟨P(u), P(c)⟩ = ⟨W_Pᵀ P(u), c⟩ + a term independent of c — exact up to that constant.
    Differences from MMRec: MMRec keeps the raw features in trainable embedding tables
    (``from_pretrained(..., freeze=False)``), so its alignment losses also fine-tune them; here
    they stay frozen by default (``train_features=True`` fine-tunes them as MMRec), so that the content pathway remains a function of the encoder output,
    which attribution differentiates (on MovieLens-100k trainable tables changed test
    Recall@20 by +0.003). Dropout on the targets is drawn for the batch rows only (same
    distribution), and any number of modalities is supported.

    Collapse: nothing in this objective pushes different items apart. On small or dense data
    the online representations drift towards one direction: on MovieLens-100k, with MMRec's
    settings, the mean pairwise item cosine jumps from 0.65 to 0.95 within 15 epochs and only
    partly recovers (0.83–0.85 at the best epoch; ≤ 0.16 for every BPR-trained backbone;
    ``benches/collapse.py`` plots it), on the synthetic shop it climbs 0.35 → 0.96 within 60 epochs. Validation Recall
    is unstable and the model stays below LightGCN on both. An independent transcription of
    MMRec's code behaves the same. Every run records the spread of its representations
    (``metrics.json`` → ``representations``, and per evaluation in the history) and warns when
    they have collapsed. A weak alignment (``cl_weight`` 0.1) and strong target dropout (0.9)
    help most there (test Recall@20 0.141 → 0.177; LightGCN 0.191).

    Args:
        n_users: Number of users.
        n_items: Number of items.
        features: Raw content features per modality, ``[n_items, D_m]`` each.
        train_graph: Binary user × item training matrix (``scipy.sparse``).
        dim: Embedding size d (also MMRec's ``feat_embed_dim``).
        n_layers: User-item LightGCN layers.
        dropout: Dropout rate creating the target views.
        reg_weight: Weight of ``EmbLoss`` on all online representations.
        cl_weight: Weight of the content alignment terms.
        **kwargs: Passed to :class:`Recommender` (``adapter``, ``adapter_kwargs``, ...).

    Example:
        >>> from befa_viz.testing import toy_dataset
        >>> it = toy_dataset().interactions
        >>> m = BM3(it.n_users, it.n_items, train_graph=it.train().csr(), dim=8,
        ...         features={"text": torch.randn(12, 16)})
        >>> m.score_users(torch.tensor([0, 1])).shape
        torch.Size([2, 12])
    """

    supports_train_features = True  # MMRec: from_pretrained(freeze=False)

    adj: torch.Tensor  # buffer: normalised user-item adjacency (sparse CSR, symmetric)

    def __init__(self, n_users: int, n_items: int, *, train_graph: Any = None, dim: int = 64,
                 n_layers: int = 1, dropout: float = 0.5, reg_weight: float = 0.1,
                 cl_weight: float = 2.0, **kwargs: Any) -> None:
        super().__init__(n_users, n_items, dim=dim, train_graph=train_graph, **kwargs)
        graph = check_train_graph(train_graph, self.n_users, self.n_items, "BM3")
        if not 0 <= dropout < 1:
            raise ConfigError(f"BM3 dropout must be in [0, 1); got {dropout}.")
        self.n_layers, self.dropout = int(n_layers), float(dropout)
        self.reg_weight, self.cl_weight = float(reg_weight), float(cl_weight)
        self.user_emb = nn.Embedding(self.n_users, self.dim)
        self.item_emb = nn.Embedding(self.n_items, self.dim)
        nn.init.xavier_uniform_(self.user_emb.weight)
        nn.init.xavier_uniform_(self.item_emb.weight)
        self.predictor = nn.Linear(self.dim, self.dim)
        nn.init.xavier_normal_(self.predictor.weight)
        for proj in self.projections.values():  # MMRec: xavier_normal_ on image_trs/text_trs
            nn.init.xavier_normal_(cast(nn.Linear, proj).weight)
        users, items = train_edges(graph)
        adj, _ = csr_pair(ui_adjacency(users, items, self.n_users, self.n_items), symmetric=True)
        self.register_buffer("adj", adj, persistent=False)

    def online(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Online user and item representations before the predictor."""
        ego = torch.cat([self.user_emb.weight, self.item_emb.weight])
        out = propagate_mean(self.adj, ego, self.n_layers, adj_t=self.adj)
        return out[: self.n_users], out[self.n_users :] + self.item_emb.weight

    def compute_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        users, items = self.online()
        return self.predictor(users), self.predictor(items)

    def content_user_vectors(self, modality: str) -> torch.Tensor:
        """W_Pᵀ P(u): exact up to a content-independent constant (see the class docstring)."""
        self.raw_features(modality)  # validates the name
        return self.user_embeddings() @ self.predictor.weight  # [U, d]

    def backbone_loss(
        self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor
    ) -> torch.Tensor:
        user_on, item_on = self.online()
        with torch.no_grad():
            user_t = F.dropout(user_on[users], self.dropout)
            item_t = F.dropout(item_on[pos], self.dropout)
        loss = _misalignment(self.predictor(user_on[users]), item_t)
        loss = loss + _misalignment(self.predictor(item_on[pos]), user_t)
        loss = loss + self.reg_weight * emb_loss(user_on, item_on)
        for m in self.modalities:
            content = self.batch_content(m, pos)
            with torch.no_grad():
                content_t = F.dropout(content, self.dropout)
            content_on = self.predictor(content)
            loss = loss + self.cl_weight * (
                _misalignment(content_on, item_t) + _misalignment(content_on, content_t)
            )
        return loss
