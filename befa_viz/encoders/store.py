"""The feature store: encode a catalog once, keep the array with its provenance, reuse it.

On disk an entry is a folder holding ``<modality>_feat.npy`` (row ``i`` = item ``i``, float32,
the MMRec convention), ``item_ids.json`` and ``manifest.json`` (encoder key and fingerprint,
preprocessing, dataset fingerprint, shape, time, policies, items without input). In a workspace
the folder is ``features/<dataset>/<key>/`` with ``key = hash(encoder fingerprint, dataset
fingerprint, options)``: the same inputs reuse the entry, any changed input gives a new key.

Robustness:

* **Atomic.** Every file is written to a temporary name and moved into place with
  ``os.replace``; ``manifest.json`` is written last and marks the entry complete, so a
  half-written feature file is never read back.
* **Resumable.** Items are encoded in chunks of ``chunk_size`` rows (batches never cross a
  chunk). Each finished chunk is saved to ``<entry>/.partial/chunk-<j>.npz``; after an
  interruption the next run reuses the finished chunks and encodes only the rest.
* **Sharded.** ``shard=(i, n)`` encodes the chunks ``j`` with ``j % n == i`` (round-robin blocks
  of ``chunk_size`` consecutive items) into the same ``.partial`` folder, so ``n`` processes (or
  machines sharing, or later copying together, that folder) split the catalog. The run that
  finds every chunk present merges them; :func:`merge_features` merges explicitly, and a run
  without ``shard`` encodes whatever is still missing and merges.
* **Items without input** (no image path, a missing or unreadable image file, an empty text):
  ``missing="error"`` raises :class:`~befa_viz.errors.DataError` naming the item;
  ``missing="zeros"`` stores a zero row and lists the item and the reason in the manifest.

Decoding and resizing run in a background thread (``loader="thread"``, the default) while the
model runs, so they do not add to the forward time; ``loader="dataloader"`` uses a torch
``DataLoader`` worker process instead and ``loader="sync"`` does no overlap (see
``benches/encode.py`` for the measurements behind the default).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from befa_viz.cache import CACHE_FORMAT_VERSION, Cache, atomic_write_bytes, hash_key
from befa_viz.data.types import Catalog
from befa_viz.encoders.base import Encoder, ImageEncoder, TextEncoder
from befa_viz.errors import ConfigError, DataError, Interrupted, StaleArtifactError

__all__ = [
    "FEATURE_FORMAT_VERSION",
    "FeatureTable",
    "encode_catalog",
    "feature_key",
    "load_features",
    "merge_features",
    "parse_shard",
]

log = logging.getLogger(__name__)

FEATURE_FORMAT_VERSION = 1
MissingPolicy = Literal["error", "zeros"]
TextField = Literal["text", "title", "title+text"]
Loader = Literal["thread", "dataloader", "sync"]
_PARTIAL = ".partial"
_PLAN = "plan.json"


# ---- the table ------------------------------------------------------------------------------


def _check_values(values: np.ndarray, item_ids: Sequence[str], where: str) -> None:
    """Raise DataError unless ``values`` is a finite float32 ``[len(item_ids), dim]`` array."""
    if not isinstance(values, np.ndarray):
        raise DataError(f"{where}: features must be a numpy array, got {type(values).__name__}.")
    if values.ndim != 2:
        raise DataError(f"{where}: features must be 2-D [n_items, dim], got shape "
                        f"{tuple(values.shape)}.")
    if values.dtype != np.float32:
        raise DataError(f"{where}: features must be float32, got {values.dtype}. Convert with "
                        "values.astype(np.float32) or re-encode.")
    if values.shape[0] != len(item_ids):
        raise DataError(f"{where}: {values.shape[0]} feature rows but {len(item_ids)} item ids.")
    finite = np.isfinite(values).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        kind = "NaN" if np.isnan(values[bad[0]]).any() else "inf"
        raise DataError(
            f"{where}: {len(bad)} row(s) contain NaN/inf, first row {int(bad[0])} (item "
            f"{item_ids[int(bad[0])]!r}, {kind}). Re-encode the items or fix the array."
        )


@dataclass(frozen=True, eq=False)
class FeatureTable:
    """Item features ``[n_items, dim]`` (float32, row ``i`` = ``item_ids[i]``) with provenance.

    Example:
        >>> t = FeatureTable(np.zeros((2, 3), np.float32), ["a", "b"], "image", "tiny:cnn",
        ...                  "enc0", "data0")
        >>> t.n_items, t.dim, t.encoder_id
        (2, 3, 'tiny:cnn')
    """

    values: np.ndarray
    item_ids: list[str]
    modality: str
    encoder_key: str
    encoder_fingerprint: str
    dataset_fingerprint: str
    manifest: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None  # entry folder when stored on disk

    def __post_init__(self) -> None:
        object.__setattr__(self, "item_ids", [str(i) for i in self.item_ids])
        _check_values(self.values, self.item_ids, f"FeatureTable for {self.modality!r}")

    @property
    def n_items(self) -> int:
        return int(self.values.shape[0])

    @property
    def dim(self) -> int:
        return int(self.values.shape[1])

    @property
    def encoder_id(self) -> str:
        return self.encoder_key

    @property
    def fingerprint(self) -> str:
        """The store key: a hash of encoder fingerprint, dataset fingerprint and options."""
        return str(self.manifest.get("key", ""))

    @property
    def filename(self) -> str:
        return f"{self.modality}_feat.npy"


def _atomic_save_npy(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, values)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
                       .encode())


def _write_entry(folder: Path, table: FeatureTable) -> None:
    """Write the data files, then the manifest (which marks the entry complete)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").unlink(missing_ok=True)  # incomplete while rewriting
    _atomic_save_npy(folder / table.filename, table.values)
    _atomic_json(folder / "item_ids.json", table.item_ids)
    _atomic_json(folder / "manifest.json", table.manifest)


def load_features(path: str | os.PathLike[str], *, dataset_fingerprint: str | None = None,
                  modality: str | None = None) -> FeatureTable:
    """Load and validate a stored feature entry.

    Args:
        path: The entry folder, or its ``<modality>_feat.npy`` file.
        dataset_fingerprint: If given, the entry must have been computed from this dataset.
        modality: If given, the entry must hold this modality.

    Returns:
        The validated table (``path`` set to the entry folder).

    Raises:
        DataError: Missing or incomplete entry, wrong shape or dtype, NaN/inf rows.
        StaleArtifactError: The entry was computed from a different dataset.

    Example:
        >>> import tempfile
        >>> from befa_viz.testing import toy_dataset, tiny_image_encoder
        >>> ds = toy_dataset()
        >>> t = encode_catalog(ds.catalog, tiny_image_encoder(), dataset_fingerprint=ds.fingerprint(),
        ...                    out_dir=tempfile.mkdtemp())
        >>> load_features(t.path, dataset_fingerprint=ds.fingerprint()).values.shape
        (12, 32)
    """
    p = Path(path)
    folder = p.parent if p.suffix == ".npy" else p
    man_path = folder / "manifest.json"
    if not man_path.is_file():
        raise DataError(
            f"{folder} is not a complete feature entry (no manifest.json): it is missing, or an "
            "encoding run was interrupted. Re-run 'befa-viz encode' to finish it."
        )
    try:
        manifest = json.loads(man_path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(
            f"{man_path} is not valid JSON ({e}); delete the folder and re-encode."
        ) from None
    mod = str(manifest.get("modality", ""))
    if modality is not None and mod != modality:
        raise DataError(f"{folder} holds {mod!r} features, not {modality!r}.")
    npy = folder / str(manifest.get("file", f"{mod}_feat.npy"))
    if p.suffix == ".npy" and p.name != npy.name:
        raise DataError(f"{p} is not the feature file of its entry ({npy.name}).")
    if not npy.is_file():
        raise DataError(f"{npy} is missing although {man_path} exists; re-encode the entry.")
    try:
        values = np.load(npy, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(
            f"{npy} cannot be read as a numpy array ({e}); re-encode the entry."
        ) from None
    ids_file = folder / "item_ids.json"
    if not ids_file.is_file():
        raise DataError(f"{ids_file} is missing; re-encode the entry.")
    item_ids = [str(i) for i in json.loads(ids_file.read_text())]
    shape = manifest.get("shape")
    if shape is not None and list(values.shape) != list(shape):
        raise DataError(f"{npy} has shape {list(values.shape)} but its manifest says {shape}; "
                        "the file was changed after encoding. Re-encode the entry.")
    _check_values(values, item_ids, str(npy))
    stored_fp = str(manifest.get("dataset_fingerprint", ""))
    if dataset_fingerprint is not None and stored_fp != dataset_fingerprint:
        raise StaleArtifactError(
            f"{npy} was encoded from dataset fingerprint {stored_fp!r}, but the dataset now has "
            f"{dataset_fingerprint!r}; the features are stale. Re-run 'befa-viz encode'."
        )
    return FeatureTable(values, item_ids, mod, str(manifest.get("encoder", "")),
                        str(manifest.get("encoder_fingerprint", "")), stored_fp, manifest, folder)


# ---- keys, shards, inputs --------------------------------------------------------------------


def feature_key(encoder: Encoder, dataset_fingerprint: str, options: dict[str, Any]) -> str:
    """Store key of ``encoder`` applied to a dataset with the given options.

    Example:
        >>> from befa_viz.testing import tiny_image_encoder
        >>> k = feature_key(tiny_image_encoder(), "d1", {"missing": "error"})
        >>> k == feature_key(tiny_image_encoder(), "d2", {"missing": "error"})
        False
    """
    return hash_key("features", FEATURE_FORMAT_VERSION, CACHE_FORMAT_VERSION,
                    encoder.fingerprint(), dataset_fingerprint, dict(options))


def parse_shard(shard: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"i/n"`` or ``(i, n)`` → ``(i, n)`` with ``0 <= i < n``.

    Example:
        >>> parse_shard("1/4")
        (1, 4)
    """
    if shard is None:
        return None
    if isinstance(shard, str):
        parts = shard.split("/")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ConfigError(f"Shard {shard!r} is not of the form 'i/n' (e.g. '0/4').")
        shard = (int(parts[0]), int(parts[1]))
    i, n = int(shard[0]), int(shard[1])
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"Shard {i}/{n} is invalid: need n >= 1 and 0 <= i < n.")
    return i, n


def item_text(catalog: Catalog, idx: int, text_field: str = "text") -> str:
    """The text of item ``idx`` that text features are computed from (``text_field`` as
    recorded in the feature manifest's policies)."""
    title, text = str(catalog.titles[idx]), str(catalog.texts[idx])
    if text_field == "text":
        return text
    if text_field == "title":
        return title
    if text_field == "title+text":
        return f"{title}. {text}" if text.strip() and title.strip() else f"{title}{text}"
    raise ConfigError(f"text_field {text_field!r} is not one of 'text', 'title', 'title+text'.")


def _item_texts(catalog: Catalog, text_field: str) -> list[str]:
    return [item_text(catalog, i, text_field) for i in range(len(catalog))]


def _scan_missing(catalog: Catalog, modality: str, texts: list[str] | None) -> dict[int, str]:
    """Items without input, found without decoding anything: {item index: reason}."""
    out: dict[int, str] = {}
    if modality == "image":
        for i in range(len(catalog)):
            path = catalog.image_path(i)
            if path is None:
                out[i] = "no image"
            elif not path.is_file():
                out[i] = f"image file {path} does not exist"
    else:
        assert texts is not None
        for i, t in enumerate(texts):
            if not t.strip():
                out[i] = "empty text"
    return out


def _missing_error(catalog: Catalog, modality: str, missing: dict[int, str]) -> DataError:
    first = sorted(missing)[:5]
    listed = "; ".join(f"item {catalog.item_ids[i]!r} (row {i}): {missing[i]}" for i in first)
    more = f" and {len(missing) - len(first)} more" if len(missing) > len(first) else ""
    return DataError(
        f"{len(missing)} item(s) have no usable {modality} input: {listed}{more}. Fix the data, or "
        "encode them as zero rows with missing='zeros' (CLI: --missing zeros); the manifest "
        "then lists them."
    )


# ---- batch preparation and prefetching --------------------------------------------------------


@dataclass
class _Prepared:
    """One batch ready for the model: inputs for the rows in ``ok`` (positions in the batch)."""

    chunk: int
    idx: list[int]
    ok: list[int]
    inputs: dict[str, torch.Tensor]
    failed: dict[int, str]


class _Prep:
    """Picklable batch preparation (decode + resize, or tokenise) for one encoder."""

    def __init__(self, catalog: Catalog, encoder: Encoder, texts: list[str] | None,
                 missing: str, skip: dict[int, str]) -> None:
        self.catalog, self.encoder, self.texts = catalog, encoder, texts
        self.missing, self.skip = missing, skip

    def __call__(self, job: tuple[int, list[int]]) -> _Prepared:
        chunk, idx = job
        failed: dict[int, str] = {}
        ok: list[int] = []
        if isinstance(self.encoder, ImageEncoder):
            images = []
            for pos, i in enumerate(idx):
                if i in self.skip:
                    failed[i] = self.skip[i]
                    continue
                try:
                    images.append(self.catalog.image(i))
                except DataError as e:
                    if self.missing == "error":
                        raise
                    failed[i] = str(e)
                    continue
                ok.append(pos)
            inputs = {"pixels": self.encoder.load_pixels(images)} if images else {}
        else:
            assert self.texts is not None and isinstance(self.encoder, TextEncoder)
            ok = [pos for pos, i in enumerate(idx) if i not in self.skip]
            failed = {i: self.skip[i] for i in idx if i in self.skip}
            inputs = self.encoder.tokenize([self.texts[idx[p]] for p in ok]) if ok else {}
        return _Prepared(chunk, idx, ok, inputs, failed)


class _JobDataset(torch.utils.data.Dataset):
    def __init__(self, jobs: list[tuple[int, list[int]]], prep: _Prep) -> None:
        self.jobs, self.prep = jobs, prep

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, k: int) -> _Prepared:
        return self.prep(self.jobs[k])


def _plan_jobs(ranges: list[range], todo: list[int], batch_size: int,
               texts: list[str] | None) -> list[tuple[int, list[int]]]:
    """Batches ``(chunk, item indices)``; batches never cross a chunk.

    Texts are batched by length within each chunk (as sentence-transformers does) so that
    little padding is computed; rows are put back in item order afterwards.
    """
    jobs = []
    for j in todo:
        order = list(ranges[j])
        if texts is not None:
            order.sort(key=lambda i: len(texts[i]))  # stable: ties keep item order
        jobs += [(j, order[s: s + batch_size]) for s in range(0, len(order), batch_size)]
    return jobs


def _identity(x: Any) -> Any:  # DataLoader collate_fn; batch_size=None: one _Prepared each
    return x


def _iter_prepared(jobs: list[tuple[int, list[int]]], prep: _Prep, loader: str,
                   depth: int = 2) -> Iterator[_Prepared]:
    """Prepared batches in job order, prepared ahead of the consumer per ``loader``."""
    if loader == "sync":
        for job in jobs:
            yield prep(job)
    elif loader == "thread":
        ex = ThreadPoolExecutor(max_workers=1, thread_name_prefix="befa-decode")
        try:
            it = iter(jobs)
            pending = deque(ex.submit(prep, job) for job in islice(it, depth))
            while pending:
                fut = pending.popleft()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append(ex.submit(prep, nxt))
                yield fut.result()
        finally:
            ex.shutdown(wait=True, cancel_futures=True)
    elif loader == "dataloader":
        dl = torch.utils.data.DataLoader(
            _JobDataset(jobs, prep), batch_size=None, shuffle=False, num_workers=1,
            prefetch_factor=depth, collate_fn=_identity,
        )
        yield from dl
    else:
        raise ConfigError(f"loader {loader!r} is not one of 'thread', 'dataloader', 'sync'.")


def _forward(encoder: Encoder, inputs: dict[str, torch.Tensor], device: torch.device) -> np.ndarray:
    with torch.inference_mode():
        if "pixels" in inputs:
            out = encoder(inputs["pixels"].to(device, non_blocking=True))
        else:
            out = encoder(inputs["input_ids"].to(device), inputs["attention_mask"].to(device))
    return out.float().cpu().numpy()


# ---- chunks ---------------------------------------------------------------------------------


def _chunk_path(partial: Path, j: int) -> Path:
    return partial / f"chunk-{j:06d}.npz"


def _save_chunk(partial: Path, j: int, values: np.ndarray, failed: dict[int, str]) -> None:
    import io

    buf = io.BytesIO()
    np.savez(buf, values=values, failed_idx=np.array(sorted(failed), dtype=np.int64),
             failed_reason=np.array([failed[i] for i in sorted(failed)], dtype=str))
    atomic_write_bytes(_chunk_path(partial, j), buf.getvalue())


def _load_chunk(partial: Path, j: int, n_rows: int) -> tuple[np.ndarray, dict[int, str]] | None:
    """A finished chunk, or ``None`` if absent or unusable (it is then encoded again)."""
    p = _chunk_path(partial, j)
    if not p.is_file():
        return None
    try:
        with np.load(p, allow_pickle=False) as z:
            values = z["values"]
            failed = {int(i): str(r) for i, r in zip(z["failed_idx"], z["failed_reason"],
                                                            strict=True)}
    except (ValueError, OSError, KeyError, EOFError) as e:
        log.warning("Ignoring unreadable chunk %s (%s); it is encoded again.", p, e)
        return None
    if values.ndim != 2 or values.shape[0] != n_rows or values.dtype != np.float32:
        log.warning("Ignoring chunk %s with shape %s; it is encoded again.", p, values.shape)
        return None
    return values, failed


def _chunks(n_items: int, chunk_size: int) -> list[range]:
    return [range(s, min(s + chunk_size, n_items)) for s in range(0, n_items, chunk_size)]


def _read_plan(partial: Path, key: str) -> dict[str, Any] | None:
    plan_file = partial / _PLAN
    if not plan_file.is_file():
        return None
    try:
        plan = json.loads(plan_file.read_text())
    except json.JSONDecodeError:
        return None
    return plan if plan.get("key") == key else None


def merge_features(entry: str | os.PathLike[str]) -> FeatureTable:
    """Assemble the chunks of a sharded (or interrupted) entry once they are all present.

    Args:
        entry: The entry folder (holding ``.partial/``).

    Returns:
        The complete table, now stored in ``entry``.

    Raises:
        DataError: If chunks are missing (the message lists them and their shards).
    """
    folder = Path(entry)
    if (folder / "manifest.json").is_file():
        return load_features(folder)
    partial = folder / _PARTIAL
    plan_file = partial / _PLAN
    if not plan_file.is_file():
        raise DataError(f"{folder} has no encoding in progress ({plan_file} is missing); run "
                        "'befa-viz encode' first.")
    plan = json.loads(plan_file.read_text())
    return _assemble(folder, plan)


def _assemble(folder: Path, plan: dict[str, Any]) -> FeatureTable:
    partial = folder / _PARTIAL
    ranges = _chunks(int(plan["n_items"]), int(plan["chunk_size"]))
    parts, failed_all, absent = [], {}, []
    for j, r in enumerate(ranges):
        got = _load_chunk(partial, j, len(r))
        if got is None:
            absent.append(j)
            continue
        parts.append(got[0])
        failed_all.update(got[1])
    if absent:
        shards = plan.get("shards")
        by_shard = ""
        if shards:
            owners = sorted({j % shards for j in absent})
            by_shard = f" (owned by shard(s) {', '.join(f'{s}/{shards}' for s in owners)})"
        raise DataError(
            f"Cannot merge {folder}: {len(absent)} of {len(ranges)} chunks are missing{by_shard}: "
            f"{absent[:10]}{' ...' if len(absent) > 10 else ''}. Run the missing shards, or "
            "encode without --shard to compute them here."
        )
    dims = {p.shape[1] for p in parts}
    if len(dims) != 1:
        raise DataError(f"Chunks in {partial} disagree on the feature size {sorted(dims)}; "
                        "delete the folder and re-encode.")
    values = np.concatenate(parts, axis=0).astype(np.float32, copy=False)
    item_ids = list(plan["item_ids"])
    manifest = dict(plan["manifest"])
    reasons = {**{int(k): v for k, v in plan.get("pre_missing", {}).items()}, **failed_all}
    manifest.update({
        "shape": list(values.shape),
        "dtype": "float32",
        "missing_items": [{"row": i, "item_id": item_ids[i], "reason": reasons[i]}
                          for i in sorted(reasons)],
        "completed": time.strftime("%Y-%m-%dT%H:%M:%S"),
    })
    bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if len(bad):
        raise DataError(
            f"The encoder produced NaN/inf for {len(bad)} item(s), first {item_ids[bad[0]]!r} "
            f"(row {int(bad[0])}); nothing was stored. Check the input and the encoder weights."
        )
    table = FeatureTable(values, item_ids, manifest["modality"], manifest["encoder"],
                         manifest["encoder_fingerprint"], manifest["dataset_fingerprint"],
                         manifest, folder)
    _write_entry(folder, table)
    shutil.rmtree(partial, ignore_errors=True)
    return table


# ---- encode_catalog --------------------------------------------------------------------------


def encode_catalog(
    catalog: Catalog,
    encoder: Encoder,
    *,
    dataset_fingerprint: str,
    cache: Cache | None = None,
    dataset_name: str | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 32,
    chunk_size: int = 512,
    device: str | torch.device = "cpu",
    progress: bool = False,
    shard: str | tuple[int, int] | None = None,
    missing: MissingPolicy = "error",
    text_field: TextField = "text",
    loader: Loader = "thread",
    merge: bool = True,
    _on_batch: Callable[[int], None] | None = None,
) -> FeatureTable:
    """Encode every item of a catalog with one encoder, reusing stored results.

    Args:
        catalog: The items; image encoders read their images, text encoders ``text_field``.
        encoder: A frozen image or text encoder; it is moved to ``device``.
        dataset_fingerprint: Fingerprint of the dataset the catalog belongs to (provenance and
            cache key).
        cache: Feature cache (e.g. ``Cache(workspace.features_dir)``); the entry is
            ``cache.path(dataset_name, key)``. ``None`` with no ``out_dir`` keeps everything in
            memory (no reuse, no resume, no shards).
        dataset_name: Sub-folder of the cache (the dataset's name).
        out_dir: Write the entry to exactly this folder instead (reused when its manifest has
            the same key, replaced otherwise).
        batch_size: Items per forward pass.
        chunk_size: Items per resumable chunk (and per shard block).
        device: Torch device of the forward pass.
        progress: Show a progress bar.
        shard: ``(i, n)`` or ``"i/n"``: encode only chunks ``j`` with ``j % n == i``. The call
            that completes the last chunk merges and returns the full table; the others return
            a table of their own rows only (``manifest["complete"] is False``).
        missing: ``"error"`` or ``"zeros"`` for items without image / with empty text.
        text_field: ``"text"``, ``"title"`` or ``"title+text"`` (text encoders).
        loader: How inputs are prepared while the model runs: ``"thread"``, ``"dataloader"``
            or ``"sync"``.
        merge: With ``shard``: ``False`` never merges here, even when this call completes the
            last chunk (a coordinator such as :mod:`befa_viz.distributed` merges once, so that
            concurrent workers never assemble the same entry).

    Returns:
        The feature table (row ``i`` = catalog item ``i`` when complete).

    Raises:
        DataError: An item without input under ``missing="error"``, or NaN/inf output.
        ConfigError: Invalid options.

    Example:
        >>> from befa_viz.testing import toy_dataset, tiny_text_encoder
        >>> ds = toy_dataset()
        >>> t = encode_catalog(ds.catalog, tiny_text_encoder(dim=8),
        ...                    dataset_fingerprint=ds.fingerprint())
        >>> t.values.shape, t.modality
        ((12, 8), 'text')
    """
    t_start = time.time()
    if missing not in ("error", "zeros"):
        raise ConfigError(f"missing={missing!r} is not one of 'error', 'zeros'.")
    if batch_size < 1 or chunk_size < 1:
        raise ConfigError(f"batch_size ({batch_size}) and chunk_size ({chunk_size}) must be >= 1.")
    if not isinstance(encoder, (ImageEncoder, TextEncoder)):
        raise ConfigError(f"{type(encoder).__name__} is neither an ImageEncoder nor a TextEncoder.")
    shard_t = parse_shard(shard)
    modality = encoder.modality
    # the catalog's own fingerprint guards against a caller passing a stale dataset fingerprint
    options: dict[str, Any] = {"modality": modality, "missing": missing,
                               "catalog": catalog.fingerprint()}
    if modality == "text":
        options["text_field"] = text_field
    key = feature_key(encoder, dataset_fingerprint, options)

    folder: Path | None
    if out_dir is not None:
        folder = Path(out_dir)
    elif cache is not None:
        folder = cache.path(dataset_name or "default", key)
    else:
        folder = None
    if folder is None and shard_t is not None:
        raise ConfigError("Sharded encoding needs an output folder: pass cache= or out_dir=.")

    if folder is not None and (folder / "manifest.json").is_file():
        try:
            man = json.loads((folder / "manifest.json").read_text())
        except json.JSONDecodeError:
            man = {}
        if man.get("key") == key:
            log.info("Reusing %s features from %s", modality, folder)
            table = load_features(folder, dataset_fingerprint=dataset_fingerprint)
            shutil.rmtree(folder / _PARTIAL, ignore_errors=True)  # left by a crash after merge
            table.manifest["reused"] = True
            return table
        log.info("Replacing %s (it holds features for other inputs)", folder)
        (folder / "manifest.json").unlink()

    texts = _item_texts(catalog, text_field) if modality == "text" else None
    pre_missing = _scan_missing(catalog, modality, texts)
    if pre_missing and missing == "error":
        raise _missing_error(catalog, modality, pre_missing)

    n = len(catalog)
    if n == 0:
        raise DataError("The catalog has no items; nothing to encode.")
    dev = torch.device(device)
    encoder.to(dev)
    encoder.eval()
    manifest = {
        "kind": "features",
        "format": FEATURE_FORMAT_VERSION,
        "key": key,
        "modality": modality,
        "file": f"{modality}_feat.npy",
        "n_items": n,
        "dataset_fingerprint": dataset_fingerprint,
        "fingerprint": key,
        "dataset": dataset_name,
        "encoder": encoder.key,
        "encoder_fingerprint": encoder.fingerprint(),
        "encoder_info": {
            "weights_digest": encoder.weights_digest(),
            "class": type(encoder).__name__,
            "pretrained": bool(getattr(encoder, "pretrained", False)),
            "dim": encoder.dim,
        },
        "preprocessing": encoder.preprocessing(),
        "policies": {"missing": missing, **({"text_field": text_field} if texts else {}),
                     "missing_value": 0.0},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "device": str(dev),
        "batch_size": batch_size,
        "chunk_size": chunk_size,
        "torch": torch.__version__,
    }

    # Resume state: the plan fixes the chunk grid (a resumed run keeps the first run's grid).
    partial = folder / _PARTIAL if folder is not None else None
    if partial is not None:
        plan = _read_plan(partial, key)
        if plan is None:
            if partial.exists():
                shutil.rmtree(partial)  # left over from other inputs
            partial.mkdir(parents=True)
            plan = {"key": key, "n_items": n, "chunk_size": chunk_size,
                    "shards": shard_t[1] if shard_t else None, "item_ids": catalog.item_ids,
                    "pre_missing": {str(i): r for i, r in pre_missing.items()},
                    "manifest": manifest}
            _atomic_json(partial / _PLAN, plan)
        elif plan["chunk_size"] != chunk_size:
            log.info("Resuming with the first run's chunk size %s", plan["chunk_size"])
        chunk_size = int(plan["chunk_size"])
        if shard_t and plan.get("shards") != shard_t[1]:
            plan["shards"] = shard_t[1]
            _atomic_json(partial / _PLAN, plan)
    ranges = _chunks(n, chunk_size)
    mine = [j for j in range(len(ranges)) if shard_t is None or j % shard_t[1] == shard_t[0]]
    done: dict[int, tuple[np.ndarray, dict[int, str]]] = {}
    if partial is not None:
        for j in mine:
            got = _load_chunk(partial, j, len(ranges[j]))
            if got is not None:
                done[j] = got
    todo = [j for j in mine if j not in done]
    resumed = len(done)
    if done:
        log.info("resumed: %d of %d chunks were kept by an interrupted run", len(done),
                 len(mine))

    jobs = _plan_jobs(ranges, todo, batch_size, texts)
    prep = _Prep(catalog, encoder, texts, missing, pre_missing)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(len(ranges[j]) for j in todo), unit="item",
                   desc=f"encode {modality} ({encoder.key})")
    rows: dict[int, np.ndarray] = {}
    fails: dict[int, dict[int, str]] = {}
    remaining = {j: len(ranges[j]) for j in todo}
    try:
        for k, b in enumerate(_iter_prepared(jobs, prep, loader)):
            start = ranges[b.chunk].start
            buf = rows.setdefault(b.chunk, np.zeros((len(ranges[b.chunk]), encoder.dim),
                                                    dtype=np.float32))
            if b.ok:
                buf[[b.idx[p] - start for p in b.ok]] = _forward(encoder, b.inputs, dev)
            fails.setdefault(b.chunk, {}).update(b.failed)
            remaining[b.chunk] -= len(b.idx)
            if remaining[b.chunk] == 0:
                values = rows.pop(b.chunk)
                done[b.chunk] = (values, fails.pop(b.chunk))
                if partial is not None:
                    _save_chunk(partial, b.chunk, values, done[b.chunk][1])
            if bar is not None:
                bar.update(len(b.idx))
            if _on_batch is not None:
                _on_batch(k)
    except KeyboardInterrupt:
        if partial is None:
            raise Interrupted("interrupted; nothing kept (in-memory encoding)") from None
        kept = sum(_chunk_path(partial, j).is_file() for j in range(len(ranges)))
        raise Interrupted(f"interrupted; {kept} of {len(ranges)} chunks kept, rerun "
                          "resumes") from None
    finally:
        if bar is not None:
            bar.close()

    seconds = time.time() - t_start
    manifest["seconds"] = round(seconds, 3)
    if folder is None:  # in memory: assemble directly
        values = np.concatenate([done[j][0] for j in range(len(ranges))], axis=0)
        reasons = {**pre_missing, **{i: r for j in done for i, r in done[j][1].items()}}
        manifest.update({"shape": list(values.shape), "dtype": "float32",
                         "missing_items": [{"row": i, "item_id": catalog.item_ids[i],
                                            "reason": reasons[i]} for i in sorted(reasons)]})
        _check_values(values, catalog.item_ids, f"{modality} features from {encoder.key}")
        return FeatureTable(values, list(catalog.item_ids), modality, encoder.key,
                            encoder.fingerprint(), dataset_fingerprint, manifest, None)

    assert partial is not None
    all_present = all(_chunk_path(partial, j).is_file() for j in range(len(ranges)))
    if shard_t is not None and (not all_present or not merge):
        idx = np.concatenate([np.asarray(ranges[j]) for j in mine]) if mine else np.zeros(0, int)
        values = (np.concatenate([done[j][0] for j in mine], axis=0) if mine
                  else np.zeros((0, encoder.dim), np.float32))
        part = {**manifest, "complete": False, "shard": list(shard_t),
                "shape": list(values.shape)}
        (log.info if mine else log.debug)(  # a shard without chunks only wrote the plan
            "Shard %d/%d done (%d items); other shards still missing", *shard_t, len(idx))
        return FeatureTable(values, [catalog.item_ids[i] for i in idx], modality, encoder.key,
                            encoder.fingerprint(), dataset_fingerprint, part, folder)
    plan = json.loads((partial / _PLAN).read_text())
    plan["manifest"]["seconds"] = manifest["seconds"]
    table = _assemble(folder, plan)
    table.manifest["reused"] = False
    table.manifest["resumed_chunks"] = resumed  # in memory only: what this call found kept
    return table
