"""Loading item feature files for training, with their provenance.

The feature store writes one folder per (dataset, encoder) holding ``<modality>_feat.npy``
(MMRec's ``image_feat.npy`` / ``text_feat.npy`` names) and a ``manifest.json``. Training only
needs the array and the manifest, so this module reads them with numpy and JSON and stays
independent of the encoders: any ``.npy`` of shape ``[n_items, D]`` works, e.g. features an
MMRec user already has.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from befa_viz.errors import DataError, StaleArtifactError

__all__ = ["FeatureFile", "load_feature_file", "array_fingerprint"]


def array_fingerprint(values: np.ndarray) -> str:
    """Short SHA-256 of an array's dtype, shape and bytes."""
    a = np.ascontiguousarray(values)
    h = hashlib.sha256(f"{a.dtype}{a.shape}".encode())
    h.update(a.data.cast("B"))  # a.data: memoryview(a), typed
    return h.hexdigest()[:16]


@dataclass(frozen=True, eq=False)
class FeatureFile:
    """A loaded feature matrix with where it came from.

    Attributes:
        values: ``[n_items, D]`` float32, row i = item i.
        path: The ``.npy`` file read.
        manifest: The feature folder's ``manifest.json`` (empty when there is none).
        modality: Content modality (``image``, ``text``, ...).
        fingerprint: Hash of the array itself; a run records it and refuses changed features.
    """

    values: np.ndarray
    path: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    modality: str = ""
    fingerprint: str = ""

    @property
    def encoder(self) -> str | None:
        """The encoder key recorded in the manifest, if any."""
        for key in ("encoder", "encoder_key", "encoder_id"):
            if self.manifest.get(key):
                return str(self.manifest[key])
        return None

    # the same names as the feature store's FeatureTable
    @property
    def encoder_key(self) -> str:
        return self.encoder or ""

    @property
    def encoder_fingerprint(self) -> str:
        return str(self.manifest.get("encoder_fingerprint", ""))

    @property
    def n_items(self) -> int:
        return int(self.values.shape[0])

    @property
    def dim(self) -> int:
        return int(self.values.shape[1])

    def provenance(self) -> dict[str, Any]:
        """What a run records about these features (JSON-able)."""
        return {
            "path": str(self.path),
            "modality": self.modality,
            "shape": list(self.values.shape),
            "fingerprint": self.fingerprint,
            "encoder": self.encoder,
            "manifest_fingerprint": self.manifest.get("fingerprint"),
        }


def _pick_npy(folder: Path, modality: str | None) -> Path:
    if modality is not None and (folder / f"{modality}_feat.npy").is_file():
        return folder / f"{modality}_feat.npy"
    found = sorted(folder.glob("*_feat.npy")) or sorted(folder.glob("*.npy"))
    if modality is not None:
        named = [p for p in found if p.name.startswith(modality)]
        found = named or found
    if len(found) == 1:
        return found[0]
    want = f"{modality}_feat.npy" if modality else "<modality>_feat.npy"
    if not found:
        raise DataError(
            f"Feature folder {folder} holds no .npy file; expected {want}. Create features with "
            "'befa-viz encode' or pass the .npy file itself."
        )
    raise DataError(
        f"Feature folder {folder} holds several .npy files ({', '.join(p.name for p in found)}); "
        f"expected {want}. Pass the .npy file itself."
    )


def load_feature_file(
    path: str | os.PathLike[str],
    modality: str | None = None,
    n_items: int | None = None,
    *,
    dataset_fingerprint: str | None = None,
) -> FeatureFile:
    """Read a feature matrix (a ``.npy`` file or a feature folder) and its manifest.

    Args:
        path: A ``.npy`` file, or a folder with ``<modality>_feat.npy`` and ``manifest.json``.
        modality: Modality the caller wants; picks the file inside a folder and is recorded.
        n_items: Expected number of rows (the dataset's item count); checked when given.
        dataset_fingerprint: When given and the manifest records the fingerprint of the dataset
            the features were computed from, the two must match.

    Returns:
        The features as float32 with their manifest and fingerprint.

    Raises:
        DataError: If the file is missing, not 2-D, has NaN/inf, or the wrong row count.
        StaleArtifactError: If the manifest names another dataset fingerprint.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> np.save(d / "image_feat.npy", np.ones((12, 4), np.float32))
        >>> f = load_feature_file(d, "image", n_items=12)
        >>> f.values.shape, f.modality
        ((12, 4), 'image')
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(
            f"Feature path {p} does not exist. Run 'befa-viz encode' first or give an existing "
            "folder/.npy file."
        )
    npy = _pick_npy(p, modality) if p.is_dir() else p
    manifest_path = npy.parent / "manifest.json"
    manifest: dict[str, Any] = {}
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as e:
            raise DataError(f"Feature manifest {manifest_path} is not valid JSON ({e}).") from None
    recorded = manifest.get("dataset_fingerprint")
    if dataset_fingerprint is not None and recorded and recorded != dataset_fingerprint:
        raise StaleArtifactError(
            f"Features {npy} were computed from dataset fingerprint {recorded}, but the dataset "
            f"now has {dataset_fingerprint}; re-encode it with 'befa-viz encode'."
        )
    try:
        values = np.load(npy, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise DataError(f"Cannot read feature file {npy} as a numpy array ({e}).") from None
    if values.ndim != 2:
        raise DataError(
            f"Feature file {npy} has shape {values.shape}; expected [n_items, dim] (2-D)."
        )
    if not np.issubdtype(values.dtype, np.number):
        raise DataError(f"Feature file {npy} has dtype {values.dtype}; expected numbers.")
    values = np.ascontiguousarray(values, dtype=np.float32)
    if n_items is not None and values.shape[0] != n_items:
        raise DataError(
            f"Feature file {npy} has {values.shape[0]} rows but the dataset has {n_items} items; "
            "row i must be item i. Re-encode this dataset with 'befa-viz encode'."
        )
    if not np.isfinite(values).all():
        bad = int(np.flatnonzero(~np.isfinite(values).all(axis=1))[0])
        raise DataError(f"Feature file {npy} has NaN or inf values (first in row {bad}).")
    mod = modality or str(manifest.get("modality") or npy.stem.removesuffix("_feat"))
    return FeatureFile(values, npy.resolve(), manifest, mod, array_fingerprint(values))
