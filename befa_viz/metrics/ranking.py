"""Top-k ranking metrics (Recall, NDCG, Precision, MAP) and a most-popular baseline scorer.

Definitions follow MMRec (``src/utils/metrics.py``), averaged over the evaluated users, for a
user with ``n_rel`` relevant items and a top-k hit vector ``h_1..h_k`` (1 where the item at
rank j is relevant):

* ``Recall@k    = sum_j h_j / n_rel``
* ``Precision@k = sum_j h_j / k``
* ``NDCG@k      = sum_j h_j / log2(j + 1)  /  sum_{j <= min(n_rel, k)} 1 / log2(j + 1)``
* ``MAP@k       = sum_j P@j * h_j / min(n_rel, k)``  (MMRec's normalisation)

Unlike MMRec we do not round to four decimals. Everything is vectorised over users: the
evaluators compute ``hits`` (``[U, K]`` booleans, from ``torch.topk`` over masked scores) batch
by batch and call :func:`metrics_from_hits`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "DEFAULT_KS",
    "METRIC_NAMES",
    "MostPopular",
    "metric_keys",
    "metrics_from_hits",
    "rank_metrics",
    "topk_hits",
]

DEFAULT_KS: tuple[int, ...] = (5, 10, 20, 50)
METRIC_NAMES: tuple[str, ...] = ("Recall", "NDCG", "Precision", "MAP")


def metric_keys(ks: Sequence[int] = DEFAULT_KS) -> list[str]:
    """Names of the reported metrics, e.g. ``['Recall@5', ..., 'MAP@50']``.

    Example:
        >>> metric_keys((10,))
        ['Recall@10', 'NDCG@10', 'Precision@10', 'MAP@10']
    """
    return [f"{m}@{k}" for m in METRIC_NAMES for k in ks]


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    out = tuple(int(k) for k in ks)
    if not out or any(k < 1 for k in out):
        raise ValueError(f"Cut-offs k must be positive integers; got {list(ks)}.")
    return out


def metrics_from_hits(
    hits: np.ndarray | torch.Tensor,
    n_relevant: np.ndarray | torch.Tensor,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, np.ndarray]:
    """Per-user metrics from a top-K hit matrix.

    Args:
        hits: ``[U, K]`` booleans; ``hits[u, j]`` is true when the item ranked ``j + 1`` for
            user ``u`` is relevant. ``K`` may be smaller than ``max(ks)`` (fewer items than
            the cut-off): missing ranks count as misses.
        n_relevant: ``[U]`` number of relevant items of each user (all ≥ 1).
        ks: Cut-offs.

    Returns:
        ``{"Recall@k": [U] float64, ...}`` for every metric and cut-off.

    Example:
        >>> out = metrics_from_hits(np.array([[1, 0, 1]], bool), np.array([2]), ks=(3,))
        >>> round(float(out["NDCG@3"][0]), 4), round(float(out["MAP@3"][0]), 4)
        (0.9197, 0.8333)
    """
    ks = _check_ks(ks)
    h = hits.detach().cpu().numpy() if isinstance(hits, torch.Tensor) else np.asarray(hits)
    n_rel = (n_relevant.detach().cpu().numpy() if isinstance(n_relevant, torch.Tensor)
             else np.asarray(n_relevant)).astype(np.float64)
    if h.ndim != 2 or n_rel.shape != (h.shape[0],):
        raise ValueError(f"hits must be [U, K] and n_relevant [U]; got {h.shape}, {n_rel.shape}.")
    if (n_rel < 1).any():
        raise ValueError("Every evaluated user needs at least one relevant item.")
    kmax = max(ks)
    h = h.astype(np.float64)
    if h.shape[1] < kmax:  # fewer candidate items than the cut-off: the rest are misses
        h = np.pad(h, ((0, 0), (0, kmax - h.shape[1])))
    h = h[:, :kmax]
    ranks = np.arange(1, kmax + 1, dtype=np.float64)  # [K]
    discount = 1.0 / np.log2(ranks + 1.0)
    cum_hits = np.cumsum(h, axis=1)  # [U, K]
    dcg = np.cumsum(h * discount, axis=1)
    ideal = np.cumsum(discount)  # ideal DCG for n_rel >= k
    sum_prec = np.cumsum(cum_hits / ranks * h, axis=1)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        j = k - 1
        cut = np.minimum(n_rel, k)  # [U]
        out[f"Recall@{k}"] = cum_hits[:, j] / n_rel
        out[f"NDCG@{k}"] = dcg[:, j] / ideal[cut.astype(np.int64) - 1]
        out[f"Precision@{k}"] = cum_hits[:, j] / k
        out[f"MAP@{k}"] = sum_prec[:, j] / cut
    return {key: out[key] for key in metric_keys(ks)}


def topk_hits(
    scores: torch.Tensor, relevant: torch.Tensor, k: int, exclude: torch.Tensor | None = None
) -> torch.Tensor:
    """Boolean ``[U, min(k, I)]`` hit matrix of the top-k items of each row.

    Args:
        scores: ``[U, I]`` scores (not modified).
        relevant: ``[U, I]`` booleans, the relevant (held-out) items.
        k: Cut-off.
        exclude: ``[U, I]`` booleans, items never ranked (e.g. training items).
    """
    if exclude is not None:
        scores = scores.masked_fill(exclude, float("-inf"))
    idx = torch.topk(scores, min(int(k), scores.shape[1]), dim=1).indices  # [U, k]
    return torch.gather(relevant, 1, idx)


def rank_metrics(
    scores: np.ndarray | torch.Tensor,
    relevant: np.ndarray | torch.Tensor,
    exclude: np.ndarray | torch.Tensor | None = None,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, float]:
    """Mean metrics of a small dense score matrix (users without relevant items are skipped).

    For large data use :func:`befa_viz.train.evaluate`, which works batch by batch.

    Example:
        >>> s = np.array([[0.9, 0.8, 0.7, 0.1]])
        >>> rank_metrics(s, np.array([[1, 0, 1, 0]], bool), ks=(2,))["Recall@2"]
        0.5
    """
    s = torch.as_tensor(np.asarray(scores) if not isinstance(scores, torch.Tensor) else scores)
    r = torch.as_tensor(np.asarray(relevant) if not isinstance(relevant, torch.Tensor)
                        else relevant).bool()
    e = None if exclude is None else torch.as_tensor(
        np.asarray(exclude) if not isinstance(exclude, torch.Tensor) else exclude).bool()
    if e is not None:
        r = r & ~e
    keep = r.sum(1) > 0
    if not bool(keep.any()):
        raise ValueError("No user has a relevant item; nothing to evaluate.")
    s, r = s[keep].float(), r[keep]
    e = None if e is None else e[keep]
    hits = topk_hits(s, r, max(_check_ks(ks)), e)
    per_user = metrics_from_hits(hits, r.sum(1), ks)
    return {key: float(v.mean()) for key, v in per_user.items()}


class MostPopular:
    """Ranks every item by its number of training interactions (same for every user).

    A non-personalised floor every recommender has to beat. It has the
    ``score_users`` method that :func:`befa_viz.train.evaluate` calls. Scores are popularity
    ranks (``n_items - 1`` for the most popular item), ties broken by item index, so the
    ranking never depends on how ``torch.topk`` orders equal scores.

    Args:
        train_matrix: Binary user × item training matrix (``scipy.sparse``).

    Example:
        >>> import scipy.sparse as sp
        >>> mp = MostPopular(sp.csr_matrix(np.array([[1, 0, 1], [0, 0, 1]])))
        >>> mp.counts.tolist(), mp.score_users(torch.tensor([0])).tolist()
        ([1.0, 0.0, 2.0], [[1.0, 0.0, 2.0]])
    """

    multimodal = False

    def __init__(self, train_matrix: Any) -> None:
        self.counts = np.asarray(train_matrix.sum(axis=0), dtype=np.float64).ravel()  # [I]
        self.n_items = self.counts.shape[0]
        order = np.lexsort((np.arange(self.n_items), -self.counts))  # most popular first
        rank_score = np.empty(self.n_items, dtype=np.float32)
        rank_score[order] = np.arange(self.n_items - 1, -1, -1, dtype=np.float32)
        self.popularity = torch.from_numpy(rank_score)

    def score_users(self, user_idx: torch.Tensor) -> torch.Tensor:
        """Popularity of every item for each user, ``[B, n_items]``."""
        return self.popularity.unsqueeze(0).expand(len(user_idx), -1).clone()
