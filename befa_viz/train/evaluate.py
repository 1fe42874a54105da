"""Full-ranking evaluation, MMRec protocol, in bounded memory.

Every item is ranked for every user who has at least one interaction in the evaluated split;
the user's training items are masked out (as MMRec's ``EvalDataLoader`` does for both the
validation and the test split: it masks the training items only, so a validation item may be
ranked, and counted as a miss, at test time). Users are processed in batches of
``batch_size``, so at most ``batch_size × n_items`` scores exist at once (2,048 × 7,050 floats,
58 MB, at Amazon-Baby scale) and hits are looked up by binary search instead of a dense
relevance matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from befa_viz._typing import SPLIT_CODES
from befa_viz.data.types import Interactions, RecDataset
from befa_viz.errors import ConfigError, DataError
from befa_viz.metrics.ranking import DEFAULT_KS, metrics_from_hits

__all__ = ["evaluate", "evaluate_per_user"]


def _model_device(model: Any) -> torch.device:
    if isinstance(model, torch.nn.Module):
        for t in (*model.parameters(), *model.buffers()):
            return t.device
    return torch.device("cpu")


def _sorted_keys(users: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    return np.unique(users.astype(np.int64) * n_items + items.astype(np.int64))


def evaluate_per_user(
    model: Any,
    data: Interactions | RecDataset,
    split: str = "valid",
    *,
    batch_size: int = 2048,
    ks: Sequence[int] = DEFAULT_KS,
    mask_valid: bool = False,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per-user full-ranking metrics on ``split``.

    Args:
        model: Anything with ``score_users(LongTensor[B]) -> [B, n_items]`` (a
            :class:`~befa_viz.models.Recommender`, :class:`~befa_viz.metrics.MostPopular`).
            A torch module is put in eval mode (and ``prepare_eval()`` is called) for the
            evaluation; its previous mode is restored afterwards.
        data: Interactions with split labels, or a dataset.
        split: ``"valid"`` or ``"test"``.
        batch_size: Users scored at once.
        ks: Cut-offs.
        mask_valid: Also mask validation items when evaluating ``"test"`` (MMRec does not).

    Returns:
        The evaluated user indices ``[U']`` and ``{"Recall@20": [U'], ...}``.

    Raises:
        DataError: If no user has an interaction in ``split``.
    """
    inter = data.interactions if isinstance(data, RecDataset) else data
    if split not in ("valid", "test"):
        raise ConfigError(f"split must be 'valid' or 'test', got {split!r}.")
    if batch_size < 1:
        raise ConfigError(f"Evaluation batch_size must be >= 1, got {batch_size}.")
    n_items = inter.n_items
    target = inter.split == SPLIT_CODES[split]
    if not target.any():
        raise DataError(
            f"The {split} split is empty (no interaction has split label {SPLIT_CODES[split]}); "
            "split the dataset with 'befa-viz data split' first."
        )
    seen = inter.split == 0
    if mask_valid and split == "test":
        seen = seen | (inter.split == SPLIT_CODES["valid"])
    target_keys = _sorted_keys(inter.user_idx[target], inter.item_idx[target], n_items)
    users = np.unique(target_keys // n_items)  # users with >= 1 item in the split
    n_rel = np.bincount(target_keys // n_items, minlength=inter.n_users)[users]
    seen_keys = _sorted_keys(inter.user_idx[seen], inter.item_idx[seen], n_items)
    seen_users = seen_keys // n_items
    seen_ptr = np.searchsorted(seen_users, np.arange(inter.n_users + 1))  # CSR row pointers

    kmax = min(max(int(k) for k in ks), n_items)
    device = _model_device(model)
    was_training = bool(getattr(model, "training", False))
    if isinstance(model, torch.nn.Module):
        model.eval()
    per_batch: list[np.ndarray] = []
    try:
        with torch.no_grad():
            if hasattr(model, "prepare_eval"):
                model.prepare_eval()
            for start in range(0, len(users), batch_size):
                ub = users[start : start + batch_size]
                scores = model.score_users(torch.from_numpy(ub).to(device)).float()  # [B, I]
                if scores.shape != (len(ub), n_items):
                    raise ConfigError(
                        f"{type(model).__name__}.score_users returned shape "
                        f"{tuple(scores.shape)}; expected ({len(ub)}, {n_items})."
                    )
                lo, hi = seen_ptr[ub], seen_ptr[ub + 1]
                counts = hi - lo
                total = int(counts.sum())
                if total:  # gather the batch's CSR rows without a Python loop over users
                    rows = np.repeat(np.arange(len(ub)), counts)
                    offsets = np.repeat(lo - (np.cumsum(counts) - counts), counts)
                    cols = seen_keys[np.arange(total) + offsets] % n_items
                    index = (torch.from_numpy(rows).to(scores.device),
                             torch.from_numpy(cols).to(scores.device))
                    # out of place: score_users may hand out a view of a cached tensor
                    scores = scores.index_put(index, torch.tensor(float("-inf"),
                                                                  device=scores.device))
                top = torch.topk(scores, kmax, dim=1).indices.cpu().numpy()  # [B, K]
                q = ub[:, None] * n_items + top
                pos = np.minimum(np.searchsorted(target_keys, q), len(target_keys) - 1)
                per_batch.append(target_keys[pos] == q)
    finally:
        if isinstance(model, torch.nn.Module):
            model.train(was_training)
    hits = np.concatenate(per_batch)
    return users, metrics_from_hits(hits, n_rel, ks)


def evaluate(
    model: Any,
    data: Interactions | RecDataset,
    split: str = "valid",
    *,
    batch_size: int = 2048,
    ks: Sequence[int] = DEFAULT_KS,
    mask_valid: bool = False,
) -> dict[str, float]:
    """Mean full-ranking metrics (Recall/NDCG/Precision/MAP @ ks) on ``split``.

    See :func:`evaluate_per_user` for the arguments; this averages over the evaluated users.

    Example:
        >>> from befa_viz.testing import toy_dataset
        >>> from befa_viz.metrics import MostPopular
        >>> ds = toy_dataset()
        >>> m = evaluate(MostPopular(ds.interactions.train().csr()), ds, "test", ks=(5,))
        >>> sorted(m)[:2], 0.0 <= m["Recall@5"] <= 1.0
        (['MAP@5', 'NDCG@5'], True)
    """
    _, per_user = evaluate_per_user(model, data, split, batch_size=batch_size, ks=ks,
                                    mask_valid=mask_valid)
    return {k: float(v.mean()) for k, v in per_user.items()}
