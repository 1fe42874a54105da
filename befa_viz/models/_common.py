"""Shared building blocks of the backbones: losses, regularisers and sparse graph helpers.

Private to :mod:`befa_viz.models`. Graphs are kept either as coalesced ``torch.sparse`` COO
tensors (fixed graphs: multiplied with :func:`torch.sparse.mm`) or as edge lists
``(row, col, value)`` (graphs whose edge weights carry gradients, multiplied with
:func:`edge_mm`). Every graph is built with vectorised tensor code; kNN similarities are
computed in row blocks so that 7,050 items × 4,096-d features need one block of
``chunk × n_items`` floats at a time.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from befa_viz.errors import ConfigError

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
    logits = v1 @ v2.T / temperature  # [B, B]; row b's positive is column b
    return (torch.logsumexp(logits, dim=1) - logits.diagonal()).mean()


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


def propagate_mean(adj: torch.Tensor, x: torch.Tensor, n_layers: int) -> torch.Tensor:
    """LightGCN readout: the mean of [x, Ax, …, A^L x]."""
    total, h = x, x
    for _ in range(n_layers):
        h = torch.sparse.mm(adj, h)
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
