"""Checks and summary statistics of a loaded dataset (``befa-viz data validate|stats``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from befa_viz.data.tabular import check_image_files
from befa_viz.data.types import RecDataset
from befa_viz.errors import DataError

__all__ = ["ValidationReport", "check_dataset", "dataset_summary"]


@dataclass
class ValidationReport:
    """Outcome of :func:`check_dataset`.

    Attributes:
        dataset: Dataset name.
        problems: Errors that make the dataset unusable for training/evaluation.
        warnings: Suspicious but usable properties (cold items, empty texts, ...).
        checks: Names of the checks that ran, with their counts.
    """

    dataset: str
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_for_problems(self) -> None:
        """Raise one :class:`DataError` listing every problem (no-op when ``ok``)."""
        if self.problems:
            raise DataError(
                f"Dataset {self.dataset!r} has {len(self.problems)} problem(s): "
                + "; ".join(self.problems)
            )


def _ids(ids: list[str], idx: np.ndarray, limit: int = 5) -> str:
    shown = ", ".join(repr(ids[int(i)]) for i in idx[:limit])
    return shown + (f" and {len(idx) - limit} more" if len(idx) > limit else "")


def check_dataset(
    dataset: RecDataset,
    *,
    features: Mapping[str, np.ndarray] | None = None,
    check_images: bool = False,
) -> ValidationReport:
    """Check that a dataset is usable: splits, ids, images, texts and feature arrays.

    Args:
        dataset: The dataset.
        features: ``{modality: [n_items, dim]}`` arrays to check against the catalog.
        check_images: Also decode every image with PIL (else only existence is checked).

    Returns:
        The report; call ``raise_for_problems()`` to turn problems into a ``DataError``.

    Example:
        >>> from befa_viz.testing import toy_dataset
        >>> check_dataset(toy_dataset()).ok
        True
    """
    it, cat = dataset.interactions, dataset.catalog
    rep = ValidationReport(dataset.name)
    user_ids, item_ids = dataset.user_ids, cat.item_ids

    if dataset.items_only:
        rep.warnings.append("items only: no interactions (encode and model-free heatmaps "
                            "work; training needs interactions)")
        return _check_content(rep, dataset, features, check_images)
    train_per_user = np.bincount(it.user_idx[it.split == 0], minlength=it.n_users)
    no_train = np.flatnonzero(train_per_user == 0)
    if len(no_train):
        rep.problems.append(
            f"{len(no_train)} user(s) have no training interaction: {_ids(user_ids, no_train)}"
        )
    pairs = it.user_idx.astype(np.int64) * max(it.n_items, 1) + it.item_idx
    _, counts = np.unique(pairs, return_counts=True)
    n_dup = int((counts > 1).sum())
    if n_dup:
        rep.problems.append(
            f"{n_dup} (user, item) pair(s) occur more than once (possibly across splits: "
            "a leak between train and test)"
        )
    per_item = np.bincount(it.item_idx, minlength=it.n_items)
    train_item = np.bincount(it.item_idx[it.split == 0], minlength=it.n_items)
    if (per_item == 0).any():
        rep.warnings.append(
            f"{int((per_item == 0).sum())} item(s) have no interaction: "
            f"{_ids(item_ids, np.flatnonzero(per_item == 0))}"
        )
    cold = np.flatnonzero((train_item == 0) & (per_item > 0))
    if len(cold):
        rep.warnings.append(
            f"{len(cold)} item(s) appear only in valid/test (cold in training): "
            f"{_ids(item_ids, cold)}"
        )
    for code, name in ((1, "valid"), (2, "test")):
        if not (it.split == code).any():
            rep.warnings.append(f"the {name} split is empty")
    return _check_content(rep, dataset, features, check_images)


def _check_content(rep: ValidationReport, dataset: RecDataset,
                   features: Mapping[str, np.ndarray] | None,
                   check_images: bool) -> ValidationReport:
    """The catalog half of :func:`check_dataset`: image files, texts, feature arrays."""
    it, cat = dataset.interactions, dataset.catalog
    item_ids = cat.item_ids
    paths = [str(cat.image_path(i)) if cat.has_image(i) else "" for i in range(len(cat))]
    with_image = np.array([bool(p) for p in paths])
    if with_image.any():
        status = check_image_files([p for p in paths if p], decode=check_images)
        idx = np.flatnonzero(with_image)
        for code, what in ((1, "missing"), (2, "unreadable")):
            bad = idx[status == code]
            if len(bad):
                examples = ", ".join(f"{item_ids[b]!r} ({paths[b]})" for b in bad[:5])
                rep.problems.append(f"{len(bad)} image file(s) {what}: {examples}")
    no_image = int((~with_image).sum())
    if with_image.any() and no_image:
        rep.warnings.append(f"{no_image} item(s) have no image")
    empty_text = int(sum(not t.strip() for t in cat.texts))
    if empty_text:
        rep.warnings.append(f"{empty_text} item(s) have empty text")

    for modality, arr in sorted((features or {}).items()):
        arr = np.asarray(arr)
        if arr.ndim != 2 or arr.shape[0] != len(cat):
            rep.problems.append(
                f"features {modality!r} have shape {arr.shape}; expected [{len(cat)}, dim]"
            )
            continue
        bad_rows = np.flatnonzero(~np.isfinite(arr).all(axis=1))
        if len(bad_rows):
            rep.problems.append(
                f"features {modality!r} have NaN/inf in {len(bad_rows)} row(s): items "
                f"{_ids(item_ids, bad_rows)}"
            )
    rep.checks = {
        "users": it.n_users, "items": it.n_items, "interactions": it.n_interactions,
        "images_checked": int(with_image.sum()), "images_decoded": bool(check_images),
        "features_checked": sorted(features or {}),
    }
    return rep


def dataset_summary(dataset: RecDataset) -> dict[str, Any]:
    """Counts a user wants to see first: sizes, density, splits, content coverage.

    Example:
        >>> from befa_viz.testing import toy_dataset
        >>> s = dataset_summary(toy_dataset())
        >>> s["users"], s["items"], s["split"]["train"] + s["split"]["valid"] + s["split"]["test"]
        (8, 12, 40)
    """
    it, cat = dataset.interactions, dataset.catalog
    per_user = np.bincount(it.user_idx, minlength=it.n_users)
    per_item = np.bincount(it.item_idx, minlength=it.n_items)
    density = it.n_interactions / max(1, it.n_users * it.n_items)

    def spread(a: np.ndarray) -> dict[str, float]:
        if len(a) == 0:
            return {"min": 0, "median": 0, "max": 0}
        return {"min": int(a.min()), "median": float(np.median(a)), "max": int(a.max())}

    has_text = np.array([bool(t.strip()) for t in cat.texts], dtype=bool)
    has_image = np.array([cat.has_image(i) for i in range(len(cat))], dtype=bool)
    return {
        "name": dataset.name,
        "path": str(dataset.path) if dataset.path else None,
        "fingerprint": dataset.fingerprint(),
        "source": (dataset.info.get("source") or {}).get("kind")
        if isinstance(dataset.info.get("source"), dict) else dataset.info.get("source"),
        "users": it.n_users,
        "items": it.n_items,
        "interactions": it.n_interactions,
        "density": density,
        "split": {name: int((it.split == code).sum())
                  for code, name in enumerate(("train", "valid", "test"))},
        "users_with_test": int(len(np.unique(it.user_idx[it.split == 2]))),
        "interactions_per_user": spread(per_user),
        "interactions_per_item": spread(per_item),
        "items_with_image": int(has_image.sum()),
        "items_with_text": int(has_text.sum()),
        "text_coverage": float(has_text.mean()) if len(cat) else 0.0,
        "image_only_items": int((has_image & ~has_text).sum()),
        "text_only_items": int((has_text & ~has_image).sum()),
        "has_timestamps": it.timestamp is not None,
        "has_ratings": it.rating is not None,
    }
