"""Ground truth of a dataset: relevant-pixel masks and relevant-word labels per item.

Two kinds of dataset have it, stored the same way under ``<dataset>/ground_truth/``:

- a **synthetic shop** (:func:`befa_viz.data.synth.generate_shop`): planted product, prop,
  decoy, ... masks and planted attribute words; described by ``<dataset>/generator.json``;
- a dataset of **real packshots** with **garment masks** (:func:`make_garment_truth`, CLI
  ``befa-viz data masks``): one foreground mask per item from the light packshot background
  (:mod:`befa_viz.data.garment`), a ``usable`` flag with a reason per item, and *weak* token
  labels (words of the item's colour / product-type / pattern attributes that occur in its
  text); described by ``ground_truth/truth.json``.

Files (both kinds): ``masks.npz`` (``name → bool [n_items, H, W]``, row = item index; the
relevant region is ``"product"``), ``tokens.json`` (``item_id → field → {tokens, spans,
labels}``), ``attributes.csv``. Garment truth adds ``masks.csv`` (``item_id, usable, reason,
area, ...``). Masks keep the photo's own aspect (H×W of the photos, e.g. 540×360): they are
resampled to an attribution map's size only when scored.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from befa_viz.errors import DataError, StaleArtifactError

__all__ = [
    "GroundTruth",
    "TRUTH_FORMAT_VERSION",
    "attribute_word_labels",
    "has_ground_truth",
    "load_ground_truth",
    "load_shop_truth",
    "make_garment_truth",
]

log = logging.getLogger(__name__)

TRUTH_FORMAT_VERSION = 1
#: Words of attribute values that say nothing about the item (``"All over pattern"``).
_STOP_WORDS = frozenset({"all", "over", "other", "and", "with", "in", "of", "a", "the", "for",
                         "s", "n", "no", "details", "detail", "unknown", "undefined", "light",
                         "dark", "medium"})


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """Relevant pixels and words of a dataset's items.

    Attributes:
        masks: ``name → bool [n_items, H, W]``; ``"product"`` is the relevant region (the
            planted product, or the garment).
        tokens: ``item_id → field ("title"/"text") → {"tokens", "spans", "labels"}``.
        attributes: One row per item (``item_id`` and its attribute values).
        tastes: ``[n_users, n_values]`` planted taste weights (synthetic shop only).
        taste_columns: ``"kind=shirt"``, ... in column order (synthetic shop only).
        knobs: The generator's knobs (synthetic shop) or the mask maker's parameters.
        usable: ``bool [n_items]``: items whose mask may be scored (``None``: all).
        reasons: Per item, ``"ok"`` or why its mask is unusable (``None``: all ok).
        kind: ``"synthetic"`` (planted truth) or ``"garment-masks"`` (made from photos).
    """

    masks: dict[str, np.ndarray]
    tokens: dict[str, dict[str, dict[str, list]]]
    attributes: pd.DataFrame
    tastes: np.ndarray | None = None
    taste_columns: list[str] = field(default_factory=list)
    knobs: dict[str, Any] = field(default_factory=dict)
    usable: np.ndarray | None = None
    reasons: list[str] | None = None
    kind: str = "synthetic"

    @property
    def relevant(self) -> np.ndarray:
        """``bool [n_items, H, W]``: the relevant pixels (product or garment)."""
        return self.masks["product"]

    @property
    def irrelevant(self) -> np.ndarray:
        """``bool [n_items, H, W]``: everything else (background included)."""
        return ~self.masks["product"]

    @property
    def planted(self) -> bool:
        """Whether the truth was planted by a generator (else: derived, e.g. garment masks)."""
        return self.kind == "synthetic"

    def is_usable(self, item_idx: int) -> bool:
        """Whether item ``item_idx``'s mask may be scored."""
        return True if self.usable is None else bool(self.usable[item_idx])

    def token_labels(self, item_id: str, field: str = "text") -> list[int]:
        """Relevance labels (1/0) of ``item_id``'s word tokens in ``field``."""
        return list(self.tokens[item_id][field]["labels"])


def has_ground_truth(dataset_dir: str | os.PathLike[str]) -> bool:
    """Whether a dataset folder has ground truth (a synthetic shop, or garment masks)."""
    folder = Path(dataset_dir)
    return (folder / "generator.json").is_file() or \
        (folder / "ground_truth" / "truth.json").is_file()


def load_shop_truth(dataset_dir: str | os.PathLike[str]) -> GroundTruth:
    """Read the planted ground truth written by :func:`befa_viz.data.synth.generate_shop`.

    Raises:
        DataError: If ``dataset_dir`` has no synthetic-shop ground truth.

    Example:
        >>> import tempfile
        >>> from befa_viz.data.synth import generate_shop
        >>> d = tempfile.mkdtemp() + "/s"
        >>> _ = generate_shop(d, n_items=6, n_users=3, image_size=32, interactions_per_user=(3, 4))
        >>> load_shop_truth(d).masks["product"].shape
        (6, 32, 32)
    """
    folder = Path(dataset_dir)
    gen = folder / "generator.json"
    if not gen.is_file():
        raise DataError(
            f"{folder} has no generator.json: it is not a synthetic shop made by "
            "'befa-viz data synth' (only those have planted ground truth)."
        )
    meta = json.loads(gen.read_text())
    gt = folder / "ground_truth"
    try:
        with np.load(gt / "masks.npz", allow_pickle=False) as z:
            masks = {name: z[name] for name in meta["masks"]["names"]}
        tokens = json.loads((gt / "tokens.json").read_text())["items"]
        attributes = pd.read_csv(gt / "attributes.csv", dtype={"item_id": str})
        tastes = np.load(gt / "tastes.npy", allow_pickle=False)
    except FileNotFoundError as e:
        raise DataError(f"Ground truth of {folder} is incomplete: {e.filename} is missing; "
                        "regenerate it with 'befa-viz data synth'.") from None
    return GroundTruth(masks, tokens, attributes, tastes, list(meta["taste_columns"]),
                       dict(meta["knobs"]))


def load_ground_truth(dataset_dir: str | os.PathLike[str]) -> GroundTruth:
    """Read a dataset's ground truth: a synthetic shop's, or garment masks.

    Raises:
        DataError: If the dataset has none (naming the command that makes it), or its files
            are incomplete.
        StaleArtifactError: If the garment masks were made for other items (re-imported data).

    Example:
        >>> import tempfile
        >>> from befa_viz.data.synth import generate_shop
        >>> d = tempfile.mkdtemp() + "/s"
        >>> _ = generate_shop(d, n_items=6, n_users=3, image_size=32, interactions_per_user=(3, 4))
        >>> load_ground_truth(d).masks["product"].shape
        (6, 32, 32)
    """
    folder = Path(dataset_dir)
    if (folder / "generator.json").is_file():
        return load_shop_truth(folder)
    meta_path = folder / "ground_truth" / "truth.json"
    if not meta_path.is_file():
        raise DataError(
            f"{folder} has no ground truth: it is neither a synthetic shop ('befa-viz data "
            "synth') nor a dataset with garment masks. For product photos on a light "
            f"background, make them with 'befa-viz data masks --dataset {folder.name}'."
        )
    meta = json.loads(meta_path.read_text())
    gt = folder / "ground_truth"
    try:
        table = pd.read_csv(gt / "masks.csv", dtype={"item_id": str, "reason": str},
                            keep_default_na=False)
        with np.load(gt / "masks.npz", allow_pickle=False) as z:
            masks = {name: z[name] for name in meta["masks"]["names"]}
        tokens = json.loads((gt / "tokens.json").read_text())["items"]
        attributes = pd.read_csv(gt / "attributes.csv", dtype=str, keep_default_na=False)
    except FileNotFoundError as e:
        raise DataError(f"Garment masks of {folder} are incomplete: {e.filename} is missing; "
                        f"remake them with 'befa-viz data masks --dataset {folder.name} "
                        "--overwrite'.") from None
    ds_meta = folder / "dataset.json"
    if ds_meta.is_file():
        fp = json.loads(ds_meta.read_text()).get("fingerprint")
        if fp and fp != meta.get("dataset_fingerprint"):
            raise StaleArtifactError(
                f"The garment masks in {gt} were made for another version of dataset "
                f"{folder.name!r} (fingerprint {meta.get('dataset_fingerprint')} vs {fp}); "
                f"remake them with 'befa-viz data masks --dataset {folder.name} --overwrite'.")
    return GroundTruth(masks, tokens, attributes, knobs=dict(meta.get("params", {})),
                       usable=table["usable"].to_numpy().astype(bool),
                       reasons=table["reason"].tolist(), kind=str(meta["kind"]))


# ---- weak token truth ------------------------------------------------------------------------
def _attribute_words(values: Sequence[str]) -> set[str]:
    words: set[str] = set()
    for v in values:
        for w in re.findall(r"[a-z0-9]+", str(v).lower()):
            if w not in _STOP_WORDS and len(w) > 1:
                words.add(w)
    return words


def _stem(word: str) -> str:
    w = word.lower()
    return w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w


def attribute_word_labels(text: str, values: Sequence[str]) -> dict[str, list]:
    """Word tokens of ``text`` labelled 1 where they name one of the attribute ``values``.

    Weak labels: a word is relevant when it (or its singular, by a trailing ``s``) is a word of
    an attribute value (e.g. ``"Leggings/Tights"``, ``"Black"``, ``"Stripe"``); generic words
    of attribute values (``"all"``, ``"over"``, ``"light"``, ...) are left out.

    Example:
        >>> attribute_word_labels("Black striped tights", ["Black", "Leggings/Tights"])["labels"]
        [1, 0, 1]
    """
    from befa_viz.data.synth_text import word_tokens

    words = {_stem(w) for w in _attribute_words(values)}
    toks = word_tokens(text)
    return {"tokens": [t for t, _, _ in toks], "spans": [[a, b] for _, a, b in toks],
            "labels": [int(_stem(t) in words) for t, _, _ in toks]}


# ---- garment truth ---------------------------------------------------------------------------
def make_garment_truth(
    dataset_dir: str | os.PathLike[str],
    *,
    attribute_columns: Sequence[str] = ("colour_group_name", "product_type_name",
                                        "graphical_appearance_name"),
    params: Any = None,
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Make garment masks and weak token labels for a dataset of packshots (atomic write).

    Args:
        dataset_dir: A workspace dataset folder (``<workspace>/datasets/<name>``).
        attribute_columns: Item metadata columns whose words are the relevant tokens (those
            that exist are used; none: no token truth).
        params: :class:`~befa_viz.data.garment.MaskParams` (default knobs when ``None``).
        overwrite: Replace existing garment masks.
        progress: Show a progress bar over the photos.

    Returns:
        The summary written to ``truth.json`` (counts of usable / low-contrast / unusable
        masks and of the reasons).

    Raises:
        DataError: If the dataset is a synthetic shop, has no photo, a photo cannot be read
            (naming the item and the fix), or masks exist and ``overwrite`` is false.
    """
    from PIL import Image

    from befa_viz.cache import atomic_dir
    from befa_viz.data.garment import MaskParams, garment_mask
    from befa_viz.data.types import RecDataset

    folder = Path(dataset_dir)
    if (folder / "generator.json").is_file():
        raise DataError(f"{folder} is a synthetic shop: its masks are planted already.")
    gt_dir = folder / "ground_truth"
    if gt_dir.exists() and not overwrite:
        raise DataError(f"{gt_dir} exists; pass overwrite=True (--overwrite) to remake it.")
    ds = RecDataset.load(folder)
    cat = ds.catalog
    p = params or MaskParams()
    with_image = [i for i in range(len(cat)) if cat.has_image(i)]
    if not with_image:
        raise DataError(f"Dataset {ds.name!r} has no photo: there is nothing to mask.")
    with Image.open(cat.image_path(with_image[0])) as im:  # type: ignore[arg-type]
        width, height = im.size
    masks = np.zeros((len(cat), height, width), dtype=bool)
    usable = np.zeros(len(cat), dtype=bool)
    rows: list[dict[str, Any]] = []
    resized = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(cat), desc="garment masks", unit="photo")
    for i in range(len(cat)):
        row: dict[str, Any] = {"item_id": cat.item_ids[i]}
        if not cat.has_image(i):
            row.update(usable=0, reason="no photo")
        else:
            try:
                img = cat.image(i)
            except DataError as e:
                raise DataError(f"{e} Fix the photo, or re-import the dataset with "
                                "--missing-image skip --check-images to leave it out.") from None
            m = garment_mask(img, p)
            mask = m.mask
            if mask.shape != (height, width):
                resized += 1
                mask = np.asarray(Image.fromarray(mask).resize((width, height), Image.Resampling.NEAREST))
            masks[i], usable[i] = mask, m.usable
            row.update(usable=int(m.usable), reason=m.reason,
                       **{k: round(float(v), 4) for k, v in m.stats.items()})
        rows.append(row)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()

    meta = cat.meta if cat.meta is not None else pd.DataFrame(index=range(len(cat)))
    cols = [c for c in attribute_columns if c in meta.columns]
    tokens: dict[str, dict[str, dict[str, list]]] = {}
    if cols:
        for i in range(len(cat)):
            values = [str(meta[c].iloc[i]) for c in cols if str(meta[c].iloc[i]).strip()]
            if not values:
                continue
            entry = {f: attribute_word_labels(s, values)
                     for f, s in (("title", cat.titles[i]), ("text", cat.texts[i]))
                     if str(s).strip()}
            if entry:
                tokens[cat.item_ids[i]] = entry
    table = pd.DataFrame(rows)
    n_img = len(with_image)
    low = int(((table["reason"] == "low_contrast") & (table["usable"] == 1)).sum())
    unusable = table.loc[(table["usable"] == 0) & (table["reason"] != "no photo"), "reason"]
    kinds = Counter(re.sub(r"\s*\(.*?\)", "", r).split(":")[0] for r in unusable)
    summary = {
        "items": len(cat), "items_with_photo": n_img, "usable": int(usable.sum()),
        "usable_share": float(usable.sum() / n_img), "low_contrast": low,
        "unusable": int(len(unusable)), "unusable_share": float(len(unusable) / n_img),
        "unusable_reasons": dict(kinds.most_common()), "resized_to_common_size": resized,
        "items_with_token_truth": len(tokens),
    }
    with atomic_dir(gt_dir) as tmp:
        tmp = Path(tmp)
        np.savez_compressed(tmp / "masks.npz", product=masks)
        table.to_csv(tmp / "masks.csv", index=False, lineterminator="\n")
        (tmp / "tokens.json").write_text(json.dumps({
            "tokenizer": "befa_viz.data.synth_text.word_tokens", "weak": True,
            "rule": "words of the item's attributes " + ", ".join(cols) + " found in its text",
            "items": tokens}) + "\n")
        pd.DataFrame({"item_id": cat.item_ids, **{c: meta[c].astype(str).tolist()
                                                  for c in cols}}).to_csv(
            tmp / "attributes.csv", index=False, lineterminator="\n")
        (tmp / "truth.json").write_text(json.dumps({
            "kind": "garment-masks", "version": TRUTH_FORMAT_VERSION,
            "maker": "befa_viz.data.garment.garment_mask", "params": asdict(p),
            "dataset": ds.name, "dataset_fingerprint": ds.fingerprint(),
            "masks": {"file": "ground_truth/masks.npz", "names": ["product"],
                      "relevant": ["product"], "shape": [height, width]},
            "tokens": {"file": "ground_truth/tokens.json", "weak": True, "attributes": cols},
            "summary": summary}, indent=2) + "\n")
    log.info("garment masks of %r: %d of %d photos usable (%d low-contrast), %d unusable",
             ds.name, summary["usable"], n_img, low, summary["unusable"])
    return summary
