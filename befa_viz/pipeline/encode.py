"""Encode verb: a dataset's item images and texts to feature tables in the feature store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from befa_viz.workspace import Workspace

__all__ = ["DEFAULT_IMAGE_ENCODER", "DEFAULT_TEXT_ENCODER", "EncodeResult", "encode_dataset"]


DEFAULT_IMAGE_ENCODER = "torchvision:mobilenet_v2"
DEFAULT_TEXT_ENCODER = "hf:minilm"


class EncodeResult(dict[str, Path]):  # a dict subclass: callers keep using it as one
    """``{modality: entry folder}`` from :func:`encode_dataset`, plus what happened.

    Attributes:
        dataset: The dataset encoded.
        tables: ``{modality: FeatureTable}``.
        reused: ``{modality: True if the stored entry was reused}``.
        complete: ``{modality: False if only this shard's rows exist so far}``.
        resumed: ``{modality: chunks kept by an interrupted run and not encoded again}``.
    """

    def __init__(self, dataset: str) -> None:
        super().__init__()
        self.dataset = dataset
        self.tables: dict = {}
        self.reused: dict[str, bool] = {}
        self.complete: dict[str, bool] = {}
        self.resumed: dict[str, int] = {}


def encode_dataset(
    workspace: Workspace | str | None = None,
    dataset: str | None = None,
    *,
    image_encoder: str | None = DEFAULT_IMAGE_ENCODER,
    text_encoder: str | None = DEFAULT_TEXT_ENCODER,
    batch_size: int = 32,
    device: str = "cpu",
    shard: str | tuple[int, int] | None = None,
    progress: bool = False,
    missing: str = "error",
    text_field: str = "text",
    chunk_size: int = 512,
    resize: str | None = None,
    pad_fill: str | None = None,
    engine: Any = None,
) -> EncodeResult:
    """Encode a workspace dataset's images and texts into the feature store.

    Entries go to ``<workspace>/features/<dataset>/<key>/``; the same inputs reuse them.

    Args:
        workspace: Workspace (or its folder); default ``$BEFA_VIZ_WORKSPACE`` or
            ``./befa-workspace``.
        dataset: Dataset name; default the most recent one (logged).
        image_encoder: Encoder key for images, ``None`` to skip.
        text_encoder: Encoder key for texts (``clip:...`` uses the text tower), ``None`` to skip.
        batch_size: Items per forward pass.
        device: Torch device.
        shard: ``"i/n"``: encode this shard's chunks only (see ``encode_catalog``).
        progress: Show progress bars.
        missing: ``"error"`` or ``"zeros"`` for items without image / with empty text.
        text_field: ``"text"``, ``"title"`` or ``"title+text"``.
        chunk_size: Items per resumable chunk.
        resize: Image resize mode, ``"pad"`` (default), ``"squash"`` or ``"crop"`` (see
            :mod:`befa_viz.encoders.base`); part of the feature key.
        pad_fill: ``"edge"`` (default) or ``"mean"`` for ``resize="pad"``.
        engine: A :class:`~befa_viz.distributed.RayEngine` to encode on Ray actors (same
            entries, keys and resume as here); ``None`` encodes in this process.

    Returns:
        ``{modality: entry folder}`` with reuse and completeness flags.

    Example:
        >>> import tempfile
        >>> from befa_viz.testing import toy_dataset
        >>> ws = Workspace(tempfile.mkdtemp())
        >>> _ = toy_dataset().save(ws.dataset_dir("toy"))
        >>> r = encode_dataset(ws, image_encoder="tiny:cnn", text_encoder="tiny:text")
        >>> sorted(r), r.reused
        (['image', 'text'], {'image': False, 'text': False})
    """
    from befa_viz.cache import Cache
    from befa_viz.encoders import create_encoder
    from befa_viz.encoders.store import encode_catalog

    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    name = ws.resolve_dataset(dataset)
    ds = ws.load_dataset(name)
    result = EncodeResult(name)
    for modality, key in (("image", image_encoder), ("text", text_encoder)):
        if not key:
            continue
        opts = {"resize": resize, "pad_fill": pad_fill} if modality == "image" else {}
        if engine is not None:
            table = _encode_on_ray(ds, name, ws, key, modality, opts, engine, shard=shard,
                                   batch_size=batch_size, chunk_size=chunk_size, device=device,
                                   missing=missing, text_field=text_field)
        else:
            table = encode_catalog(
                ds.catalog, create_encoder(key, modality=modality, **opts),
                dataset_fingerprint=ds.fingerprint(),
                cache=Cache(ws.features_dir), dataset_name=name, batch_size=batch_size,
                chunk_size=chunk_size, device=device, progress=progress, shard=shard,
                missing=missing,  # type: ignore[arg-type]  # validated by encode_catalog
                text_field=text_field,  # type: ignore[arg-type]  # validated by encode_catalog
            )
        assert table.path is not None
        result[modality] = table.path
        result.tables[modality] = table
        result.reused[modality] = bool(table.manifest.get("reused", False))
        result.complete[modality] = table.manifest.get("complete", True) is not False
        result.resumed[modality] = int(table.manifest.get("resumed_chunks", 0) or 0)
    return result


def _encode_on_ray(ds: Any, name: str, ws: Workspace, key: str, modality: str,
                   opts: dict[str, Any], engine: Any, *, shard: Any, **kwargs: Any) -> Any:
    from befa_viz.cache import Cache
    from befa_viz.distributed import encode_catalog_ray
    from befa_viz.errors import ConfigError

    if shard is not None:
        raise ConfigError("--shard and --engine ray exclude each other: Ray splits the catalog "
                          "itself. Drop --shard.")
    return encode_catalog_ray(ds.catalog, key, modality=modality, engine=engine,
                              dataset_fingerprint=ds.fingerprint(), cache=Cache(ws.features_dir),
                              dataset_name=name, encoder_options=opts, **kwargs)
