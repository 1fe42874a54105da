"""Encoders: registry, key parsing and the built-in backends.

Keys name encoders the ecosystem's way, ``backend:model[:weights]``:

* ``torchvision:mobilenet_v2`` (ImageNet weights from torch hub's local cache),
* ``clip:ViT-B-32:openai`` or ``clip:ViT-B-32:/path/ckpt.safetensors`` (open_clip; add
  ``modality="text"`` for the text tower),
* ``hf:sentence-transformers/all-MiniLM-L6-v2`` or ``hf:/local/folder`` (transformers),
* ``tiny:cnn`` / ``tiny:text`` (random toy encoders for tests).
"""

from __future__ import annotations

from befa_viz.encoders import tiny
from befa_viz.encoders.base import (
    DEFAULT_RESIZE,
    ENCODERS,
    RESIZE_MODES,
    Box,
    Encoder,
    ImageEncoder,
    TextEncoder,
    content_box,
)
from befa_viz.errors import ConfigError

__all__ = ["DEFAULT_RESIZE", "ENCODERS", "RESIZE_MODES", "Box", "Encoder", "ImageEncoder",
           "TextEncoder", "content_box", "create_encoder", "parse_key", "tiny"]


def parse_key(key: str) -> tuple[str, str, str | None]:
    """Split ``backend:model[:weights]``; weights may contain ':' (paths on Windows, tags).

    Example:
        >>> parse_key("clip:ViT-B-32:openai")
        ('clip', 'ViT-B-32', 'openai')
        >>> parse_key("torchvision:mobilenet_v2")
        ('torchvision', 'mobilenet_v2', None)
    """
    parts = str(key).split(":", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ConfigError(
            f"Encoder key {key!r} is not of the form 'backend:model[:weights]', e.g. "
            f"'torchvision:mobilenet_v2' or 'clip:ViT-B-32:openai'. Backends: "
            f"{', '.join(ENCODERS.names())}."
        )
    return parts[0], parts[1], (parts[2] if len(parts) == 3 and parts[2] else None)


def create_encoder(key: str, modality: str | None = None, *, resize: str | None = None,
                   pad_fill: str | None = None, **kwargs: object) -> Encoder:
    """Build an encoder from its key.

    Args:
        key: ``backend:model[:weights]``.
        modality: ``"image"`` or ``"text"`` for backends with both towers (open_clip).
        resize: Image encoders: resize mode (``"pad"``, ``"squash"``, ``"crop"``; default
            ``"pad"``), see :mod:`befa_viz.encoders.base`.
        pad_fill: Image encoders: ``"edge"`` or ``"mean"`` (``"pad"`` mode).
        **kwargs: Backend-specific options.

    Raises:
        ConfigError: A resize option for a text encoder, or an unknown mode.

    Example:
        >>> create_encoder("tiny:cnn").modality
        'image'
        >>> create_encoder("tiny:cnn", resize="squash").preprocessing()["resize"]
        'squash'
    """
    backend, model, weights = parse_key(key)
    factory = ENCODERS.get(backend)
    if modality is not None:
        kwargs["modality"] = modality
    enc = factory(model=model, weights=weights, **kwargs)
    if modality is not None and enc.modality != modality:
        raise ConfigError(f"Encoder {key!r} is a {enc.modality} encoder, not {modality}.")
    if resize is not None or pad_fill is not None:
        if not isinstance(enc, ImageEncoder):
            raise ConfigError(f"Encoder {key!r} is a {enc.modality} encoder; resize={resize!r} "
                              f"and pad_fill={pad_fill!r} apply to image encoders only.")
        enc.set_resize(resize, pad_fill)
    return enc

# Built-in backends register themselves in ENCODERS on import (their heavy dependencies are
# imported lazily, when an encoder is built).
from befa_viz.encoders import clip, hf, torchvision  # noqa: E402,F401
from befa_viz.encoders.store import (  # noqa: E402
    FeatureTable,
    encode_catalog,
    load_features,
    merge_features,
)

__all__ += ["FeatureTable", "encode_catalog", "load_features", "merge_features"]
