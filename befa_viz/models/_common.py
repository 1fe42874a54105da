"""Shared building blocks of the backbones: losses, regularisers and sparse graph helpers.

Private to :mod:`befa_viz.models`. Graphs are built as coalesced ``torch.sparse`` COO
tensors; fixed graphs that a model multiplies on every batch are kept as CSR pairs (the
matrix and its transpose, :func:`csr_pair`) and multiplied with :func:`graph_mm`, whose
backward pass reuses the stored transpose instead of transposing the matrix again on every
batch. Graphs whose edge weights carry gradients are edge lists ``(row, col, value)``,
multiplied with :func:`edge_mm`. Every graph is built with vectorised tensor code; kNN similarities are
computed in row blocks so that 7,050 items × 4,096-d features need one block of
``chunk × n_items`` floats at a time.
"""

from __future__ import annotations

import hashlib
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from befa_viz.errors import ConfigError

if TYPE_CHECKING:  # the mixin below is typed as the Recommender it is mixed into
    from befa_viz.models.base import Recommender

    _MixinBase = Recommender
else:
    _MixinBase = object

# -- losses -----------------------------------------------------------------------------------


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """Mean BPR loss −log σ(s⁺ − s⁻), computed stably as softplus(s⁻ − s⁺)."""
    return F.softplus(neg_scores - pos_scores).mean()


def l2_reg(*tensors: torch.Tensor) -> torch.Tensor:
    """Σ‖t‖²/2 over the tensors, divided by the batch size (rows of the first tensor).

    The convention of LATTICE's and MGCN's ``bpr_loss`` regulariser in MMRec.
    """
    batch = max(int(tensors[0].shape[0]), 1)
    total = tensors[0].pow(2).sum()
    for t in tensors[1:]:
        total = total + t.pow(2).sum()
    return total / (2.0 * batch)


def emb_loss(*tensors: torch.Tensor) -> torch.Tensor:
    """Σ‖t‖_F (not squared) divided by the rows of the last tensor: MMRec's ``EmbLoss``.

    Used where MMRec uses ``EmbLoss`` (BPR, VBPR, LightGCN, BM3), so that MMRec's
    ``reg_weight`` grids keep their meaning.
    """
    total = torch.linalg.vector_norm(tensors[0])
    for t in tensors[1:]:
        total = total + torch.linalg.vector_norm(t)
    return total / max(int(tensors[-1].shape[0]), 1)


def info_nce(view1: torch.Tensor, view2: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE between row-aligned views (in-batch negatives), as MGCN's ``InfoNCE``."""
    v1, v2 = F.normalize(view1, dim=1), F.normalize(view2, dim=1)
    logits = (v1 / temperature) @ v2.T  # [B, B]; row b's positive is column b
    # mean over rows of logsumexp(row) − its diagonal entry, in one fused kernel
    return F.cross_entropy(logits, torch.arange(logits.shape[0], device=logits.device))


# -- the user-item graph ----------------------------------------------------------------------


def sparse(indices: torch.Tensor, values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A coalesced sparse COO tensor (indices are built by our own code, so not re-checked)."""
    return torch.sparse_coo_tensor(indices, values, size, check_invariants=False).coalesce()



def check_train_graph(train_graph: Any, n_users: int, n_items: int, model: str) -> Any:
    """Validate a user × item ``scipy.sparse`` training matrix and return it as binary CSR."""
    import scipy.sparse as sp

    if train_graph is None:
        raise ConfigError(
            f"{model} is a graph model and needs train_graph, the user × item training matrix "
            "(e.g. dataset.interactions.train().csr())."
        )
    if not sp.issparse(train_graph):
        raise ConfigError(
            f"{model}: train_graph must be a scipy.sparse matrix; got {type(train_graph).__name__}."
        )
    if tuple(train_graph.shape) != (n_users, n_items):
        raise ConfigError(
            f"{model}: train_graph has shape {tuple(train_graph.shape)}; expected "
            f"({n_users}, {n_items}) = (n_users, n_items) of the model."
        )
    g = sp.csr_matrix(train_graph, dtype=np.float32, copy=True)
    g.sum_duplicates()
    g.eliminate_zeros()
    g.data[:] = 1.0
    return g


def train_edges(train_graph: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """User and item index of every training edge of a binary CSR matrix."""
    coo = train_graph.tocoo()
    return torch.from_numpy(coo.row.astype(np.int64)), torch.from_numpy(coo.col.astype(np.int64))


def bipartite_values(
    users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int
) -> torch.Tensor:
    """1/√(d_u d_i) for each user-item edge: the bipartite graph's symmetric normalisation."""
    w = torch.ones(users.shape[0], device=users.device)
    du = torch.zeros(n_users, device=users.device).index_add_(0, users, w)
    di = torch.zeros(n_items, device=users.device).index_add_(0, items, w)
    return (du[users] * di[items]).clamp_min(1e-12).rsqrt()


def ui_adjacency(
    users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int,
    values: torch.Tensor | None = None, norm: str = "sym",
) -> torch.Tensor:
    """The (U+I) × (U+I) user-item adjacency as a coalesced sparse tensor.

    Args:
        users: User index of each edge.
        items: Item index of each edge.
        n_users: Number of users U.
        n_items: Number of items I.
        values: Already normalised edge values (used as given, both directions); ``None``
            normalises according to ``norm``.
        norm: ``"sym"`` for D^-½ A D^-½ (LightGCN, FREEDOM, BM3, MGCN) or ``"left_loop"`` for
            D^-1 (A + I) (LATTICE's ``get_adj_mat`` in MMRec).

    Returns:
        Sparse COO tensor ``[U+I, U+I]``.
    """
    n = n_users + n_items
    rows = torch.cat([users, items + n_users])
    cols = torch.cat([items + n_users, users])
    if values is not None:
        vals = torch.cat([values, values])
    elif norm == "sym":
        v = bipartite_values(users, items, n_users, n_items)
        vals = torch.cat([v, v])
    elif norm == "left_loop":
        loop = torch.arange(n, device=users.device)
        rows, cols = torch.cat([rows, loop]), torch.cat([cols, loop])
        ones = torch.ones(rows.shape[0], device=users.device)
        deg = torch.zeros(n, device=users.device).index_add_(0, rows, ones)
        vals = 1.0 / deg[rows]
    else:
        raise ValueError(f"Unknown normalisation {norm!r}; use 'sym' or 'left_loop'.")
    return sparse(torch.stack([rows, cols]), vals, (n, n))


def csr_pair(graph: torch.Tensor, symmetric: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed sparse matrix and its transpose in CSR, for :func:`graph_mm`.

    ``symmetric=True`` (the user-item adjacency) returns the same tensor twice instead of
    building the transpose; only pass it for a matrix that is symmetric.
    """
    with warnings.catch_warnings():  # CSR is "beta"; we only build it and multiply with it
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        csr = graph.coalesce().to_sparse_csr() if graph.layout == torch.sparse_coo else graph
        if symmetric:
            return csr, csr
        return csr, graph.t().coalesce().to_sparse_csr()


class _FixedGraphMM(torch.autograd.Function):
    """A @ x for a constant sparse A whose transpose is given: dL/dx = Aᵀ (dL/dy)."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, a_t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.a_t = a_t
        return torch.sparse.mm(a, x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, None, torch.Tensor]:
        return None, None, torch.sparse.mm(ctx.a_t, grad)


def graph_mm(a: torch.Tensor, a_t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A @ x for a fixed (no-gradient) sparse matrix A and its transpose ``a_t`` (CSR pairs
    from :func:`csr_pair`).

    The same product and gradient as ``torch.sparse.mm(A, x)``, but the backward pass
    multiplies by the stored transpose: autograd's own backward of a sparse product builds
    Aᵀ again on every call, which on the Baby-scale user-item graph costs ~10× the product.
    """
    if a.requires_grad or a_t.requires_grad:
        raise ValueError("graph_mm is for fixed graphs; use edge_mm for learned edge weights.")
    if x.requires_grad and torch.is_grad_enabled():
        return cast(torch.Tensor, _FixedGraphMM.apply(a, a_t, x))
    return torch.sparse.mm(a, x)


def propagate_mean(adj: torch.Tensor, x: torch.Tensor, n_layers: int,
                   adj_t: torch.Tensor | None = None) -> torch.Tensor:
    """LightGCN readout: the mean of [x, Ax, …, A^L x].

    With ``adj_t`` (Aᵀ; ``adj`` itself for the symmetric user-item graph of a
    :func:`csr_pair`) the products go through :func:`graph_mm`; without it through
    :func:`torch.sparse.mm` (any sparse layout, autograd's own backward).
    """
    total, h = x, x
    for _ in range(n_layers):
        h = torch.sparse.mm(adj, h) if adj_t is None else graph_mm(adj, adj_t, h)
        total = total + h
    return total / (n_layers + 1)


# -- item-item kNN graphs ---------------------------------------------------------------------


@torch.no_grad()
def knn_topk(
    x: torch.Tensor, k: int, chunk: int = 1024
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each item's ``k`` most cosine-similar items (itself included), without gradients.

    As MMRec's ``build_sim`` + ``topk``: every item keeps exactly ``k`` out-edges, the item
    itself (similarity 1) among them. Computed in blocks of ``chunk`` rows, so only
    ``chunk × n_items`` similarities exist at a time.

    Returns:
        ``(row, col, similarity)``, each ``[n_items · k]``.
    """
    n = x.shape[0]
    k = min(int(k), n)
    xn = F.normalize(x.detach().float(), dim=1)
    vals, cols = [], []
    for s in range(0, n, chunk):
        top = (xn[s : s + chunk] @ xn.T).topk(k, dim=1)  # [chunk, k]
        vals.append(top.values)
        cols.append(top.indices)
    row = torch.arange(n, device=x.device).repeat_interleave(k)
    return row, torch.cat(cols).reshape(-1), torch.cat(vals).reshape(-1)


_KnnEdges = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # row, col, similarity
_FROZEN_KNN: OrderedDict[tuple[Any, ...], _KnnEdges] = OrderedDict()
_FROZEN_KNN_SIZE = 8


def frozen_knn_topk(
    x: torch.Tensor, k: int, chunk: int = 1024
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`knn_topk` of fixed raw features, memoised in-process by the features' content.

    Building the kNN graph of 7,050 × 4,096-d features costs ~10–25 s on two CPU cores; a
    comparison over seeds or a sweep builds the same graph many times. The key is a hash of
    the feature bytes (plus ``k`` and the device), so changed features never hit a stale entry.
    """
    arr = np.ascontiguousarray(x.detach().cpu().float().numpy())
    digest = hashlib.blake2b(arr.data.cast("B"), digest_size=16).hexdigest()
    key = (digest, tuple(arr.shape), int(k), str(x.device))
    if key not in _FROZEN_KNN:
        _FROZEN_KNN[key] = knn_topk(x, k, chunk)
        while len(_FROZEN_KNN) > _FROZEN_KNN_SIZE:
            _FROZEN_KNN.popitem(last=False)
    _FROZEN_KNN.move_to_end(key)
    row, col, sim = _FROZEN_KNN[key]
    return row.clone(), col.clone(), sim.clone()


def knn_indices(x: torch.Tensor, k: int, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column indices of :func:`knn_topk` (each ``[n_items · k]``)."""
    row, col, _ = knn_topk(x, k, chunk)
    return row, col


def cosine_values(x: torch.Tensor, row: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each edge's endpoints (differentiable in ``x``)."""
    xn = F.normalize(x, dim=1)
    return (xn[row] * xn[col]).sum(-1)


def sym_norm_values(
    row: torch.Tensor, col: torch.Tensor, val: torch.Tensor, n: int
) -> torch.Tensor:
    """Edge values of D^-½ A D^-½ with the *row* degrees of A, MMRec's normalised Laplacian.

    Duplicate edges count once per occurrence, which equals summing them first. Negative
    weights (rare: a kNN row with fewer than ``k`` positively similar items) are clipped to 0
    so that degrees stay positive. Differentiable in ``val``.
    """
    val = val.clamp_min(0.0)
    deg = torch.zeros(n, device=val.device, dtype=val.dtype).index_add_(0, row, val)
    dinv = deg.clamp_min(1e-12).rsqrt()
    return dinv[row] * val * dinv[col]


def knn_graph(x: torch.Tensor, k: int, weighted: bool, chunk: int = 1024) -> torch.Tensor:
    """A fixed, symmetric-normalised kNN graph of items as a coalesced sparse tensor.

    The neighbour search is memoised (:func:`frozen_knn_topk`).

    Args:
        x: Item representations ``[n_items, D]`` (raw features for the frozen graphs).
        k: Neighbours per item.
        weighted: Keep the cosine similarity as the edge weight (LATTICE, MGCN:
            ``build_knn_neighbourhood`` / ``build_knn_normalized_graph``) or use 1
            (FREEDOM: ``get_knn_adj_mat``).
        chunk: Rows per similarity block.
    """
    n = x.shape[0]
    row, col, sim = frozen_knn_topk(x, k, chunk)
    val = sim if weighted else torch.ones_like(sim)
    return sparse(torch.stack([row, col]), sym_norm_values(row, col, val, n), (n, n))


def edge_mm(row: torch.Tensor, col: torch.Tensor, val: torch.Tensor, x: torch.Tensor
            ) -> torch.Tensor:
    """A @ x for A given as an edge list; differentiable in both ``val`` and ``x``."""
    out = torch.zeros(x.shape[0], x.shape[1], device=x.device, dtype=x.dtype)
    return out.index_add(0, row, val.unsqueeze(1) * x[col])


# -- the two-view backbones -------------------------------------------------------------------


class TwoViewMixin(_MixinBase):
    """An ID view plus a content side view over fixed graphs, final = ID view + side view.

    Shared by MGCN and LightGCNkNN (mixed in before :class:`~befa_viz.models.base.Recommender`):
    the subclass defines :meth:`views`; the mixin builds the fixed graphs both use
    (:meth:`register_view_graphs`), propagates a modality's item representation into the side
    view (:meth:`side_view`) and gives the final embeddings and the content user vectors.
    """

    user_emb: nn.Embedding
    item_emb: nn.Embedding
    n_layers: int  # item-item graph convolutions
    n_ui_layers: int  # user-item LightGCN layers
    adj: torch.Tensor  # buffer: normalised user-item adjacency (sparse CSR, symmetric)
    r_norm: torch.Tensor  # buffer: normalised user × item matrix R̂ (sparse CSR)
    r_norm_t: torch.Tensor  # buffer: R̂ᵀ (sparse CSR)

    def register_view_graphs(self, users: torch.Tensor, items: torch.Tensor,
                             knn_sources: Mapping[str, torch.Tensor], knn_k: int,
                             chunk: int) -> None:
        """Register the user-item graph, R̂ and per modality the weighted kNN graph of
        ``knn_sources[m]`` (``item_graph_{m}``, with its transpose ``item_graph_{m}_t``)."""
        values = bipartite_values(users, items, self.n_users, self.n_items)
        adj, _ = csr_pair(ui_adjacency(users, items, self.n_users, self.n_items, values=values),
                          symmetric=True)
        self.register_buffer("adj", adj, persistent=False)
        r_norm, r_norm_t = csr_pair(sparse(torch.stack([users, items]), values,
                                           (self.n_users, self.n_items)))
        self.register_buffer("r_norm", r_norm, persistent=False)  # R̂ [U, I]
        self.register_buffer("r_norm_t", r_norm_t, persistent=False)
        for m, source in knn_sources.items():
            graph, graph_t = csr_pair(knn_graph(source, knn_k, weighted=True, chunk=chunk))
            self.register_buffer(f"item_graph_{m}", graph, persistent=False)
            self.register_buffer(f"item_graph_{m}_t", graph_t, persistent=False)

    def behaviour_view(self) -> torch.Tensor:
        """LightGCN over the user-item graph on the ID embeddings, ``[n_users + n_items, d]``."""
        ego = torch.cat([self.user_emb.weight, self.item_emb.weight])
        return propagate_mean(self.adj, ego, self.n_ui_layers, adj_t=self.adj)

    def side_view(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        """Item representations ``x`` ``[I, d]`` propagated ``n_layers`` times over the
        modality's kNN graph; users get R̂ x. Returns ``[n_users + n_items, d]``."""
        graph = getattr(self, f"item_graph_{modality}")
        graph_t = getattr(self, f"item_graph_{modality}_t")
        for _ in range(self.n_layers):
            x = graph_mm(graph, graph_t, x)
        return torch.cat([graph_mm(self.r_norm, self.r_norm_t, x), x])

    def views(self) -> tuple[torch.Tensor, torch.Tensor]:
        """ID view and side view, both ``[n_users + n_items, d]`` (implemented by the model)."""
        raise NotImplementedError

    def compute_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        behaviour, side = self.views()
        out = behaviour + side
        return out[: self.n_users], out[self.n_users :]

    def content_user_vectors(self, modality: str) -> torch.Tensor:
        """Final user embeddings (a local approximation; see the model's docstring)."""
        self.raw_features(modality)  # validates the name
        return self.user_embeddings()
