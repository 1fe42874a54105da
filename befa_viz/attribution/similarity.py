"""The paper-style similarity map (``similarity``): per location, cosine with the target's reference."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F
from torch import nn

from befa_viz.attribution._base import (
    _check_ibs,
    _check_pixels,
    _chunks,
    _ids,
    _image_results,
    _layer_name,
    _register,
    _upsample,
)
from befa_viz.attribution.result import Attribution
from befa_viz.attribution.targets import AttributionTarget
from befa_viz.errors import ConfigError

if TYPE_CHECKING:  # encoders are duck-typed nn.Modules here; casts name what a branch needs
    from befa_viz.encoders.base import ImageEncoder

__all__ = ["similarity_map"]


@_register("similarity", ("image",))
def similarity_map(
    encoder: nn.Module,
    target: AttributionTarget,
    inputs: torch.Tensor,
    *,
    item_ids: Sequence[str] | None = None,
    internal_batch_size: int = 32,
) -> list[Attribution]:
    """Paper-style similarity map: per feature-map location, cosine with the target vector.

    For each location l of ``encoder.features`` (``[B, C, h, w]``), the location's feature f_l
    is compared with the target's reference vector r (E(x₀) for content focus, e_i for
    behaviour alignment, the mean user vector for content score, ...). When the map lives in
    the encoder's output space (``C == encoder.dim``, e.g. a CNN's last block before pooling;
    encoders may provide ``project_features(f [N, C]) -> [N, dim]`` to bring other maps, such
    as ViT patch tokens, there), f_l goes through the target's own mapping first
    (projection, or the content pathway with the adapter), giving cos(embed(f_l), r) —
    ``params["space"] = "pathway"``; otherwise, if ``C`` equals r's size, cos(f_l, r) is used
    (``"raw"``). No gradients; one forward pass per item.

    Args:
        encoder: Image encoder.
        target: Target built for these inputs.
        inputs: Pixels ``[B, 3, S, S]`` in ``[0, 1]``.
        item_ids: Raw item id per input.
        internal_batch_size: Most images per forward pass.

    Returns:
        One attribution per input; the ``[h, w]`` cosine map is in ``extras["layer_map"]``.

    Raises:
        ConfigError: If the feature map's channels match neither the encoder output nor the
            target's reference size.
    """
    ibs = _check_ibs(internal_batch_size)
    pixels = _check_pixels(inputs, encoder)
    ids = _ids(item_ids, pixels.shape[0])
    rows_all = torch.arange(pixels.shape[0], device=pixels.device)
    maps, space = [], ""
    with torch.no_grad():
        for s in _chunks(pixels.shape[0], ibs):
            fm = cast("ImageEncoder", encoder).features(pixels[s])  # [b, C, h, w]
            b, c, h, w = fm.shape
            loc = fm.permute(0, 2, 3, 1).reshape(b * h * w, c)
            rows = rows_all[s].repeat_interleave(h * w)
            ref = target.reference(target.rows(rows, rows.shape[0], rows.device))
            project = getattr(encoder, "project_features", None)
            if c != getattr(encoder, "dim", -1) and project is not None:
                loc, c = project(loc), int(getattr(encoder, "dim", -1))  # into the output space
            if c == getattr(encoder, "dim", -1):
                rr = target.rows(rows, rows.shape[0], rows.device)
                z, space = target.embed(loc, rr), "pathway"
            elif c == ref.shape[-1]:
                z, space = loc, "raw"
            else:
                raise ConfigError(
                    f"similarity: the feature map has {c} channels but the encoder outputs "
                    f"{getattr(encoder, 'dim', '?')} and the target's reference has "
                    f"{ref.shape[-1]}; the map cannot be compared with the target. Use "
                    f"'gradcam' or 'layer_ig'."
                )
            maps.append(F.cosine_similarity(z, ref, dim=-1, eps=1e-8).view(b, h, w))
    layer_map = torch.cat(maps)
    params = {"method": "similarity", "space": space,
              "layer": _layer_name(encoder, cast("ImageEncoder", encoder).feature_layer),
              "encoder": getattr(encoder, "key", "")}
    return _image_results(pixels, _upsample(layer_map, tuple(pixels.shape[-2:])), ids,
                          "similarity", target, params, extras={"layer_map": layer_map})
