"""The model-free control (``input_x_blur``): |x − blur(x)|; text: each token's distance to the pad."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from befa_viz.attribution._base import _blur, _check_pixels, _ids, _image_results, _register
from befa_viz.attribution._text import _text_results, _text_setup
from befa_viz.attribution.result import Attribution
from befa_viz.attribution.targets import AttributionTarget

if TYPE_CHECKING:  # encoders are duck-typed nn.Modules here; casts name what a branch needs
    from befa_viz.encoders.base import TextEncoder

__all__ = ["input_minus_blur"]


@_register("input_x_blur", ("image", "text"))
def input_minus_blur(
    encoder: nn.Module,
    target: AttributionTarget,
    inputs: torch.Tensor | Mapping[str, torch.Tensor],
    *,
    item_ids: Sequence[str] | None = None,
    blur_sigma: float | None = None,
) -> list[Attribution]:
    """Model-free control map: |x − blur(x)| summed over channels (edges and texture).

    It ignores the target and the encoder's weights on purpose: a method whose maps correlate
    strongly with it shows the input, not what the model uses. For text it is the distance
    ‖e_t − e_pad‖ of each token's embedding to the pad embedding (special tokens 0).

    Args:
        encoder: Image or text encoder (text: only its embedding layer is used).
        target: Ignored (recorded in the result).
        inputs: Pixels or the ``encoder.tokenize`` mapping.
        item_ids: Raw item id per input.
        blur_sigma: σ of the blur (default S/16).

    Returns:
        One non-negative attribution per input.
    """
    if getattr(encoder, "modality", "") == "text":
        return _text_input_control(encoder, target, inputs, item_ids)
    pixels = _check_pixels(inputs, encoder)
    ids = _ids(item_ids, pixels.shape[0])
    maps = (pixels - _blur(pixels, blur_sigma)).abs().sum(1)
    params = {"method": "input_x_blur", "blur_sigma": blur_sigma,
              "encoder": getattr(encoder, "key", "")}
    return _image_results(pixels, maps, ids, "input_x_blur", target, params)


def _text_input_control(encoder: nn.Module, target: AttributionTarget, inputs: Any,
                        item_ids: Sequence[str] | None) -> list[Attribution]:
    ids, mask, names, base_ids = _text_setup(encoder, inputs, item_ids, "pad")
    with torch.no_grad():
        emb_layer = cast("TextEncoder", encoder).embedding_layer
        e, b = emb_layer(ids), emb_layer(base_ids)
    tv = (e - b).norm(dim=-1) * mask
    params = {"method": "input_x_blur", "baseline": "pad", "encoder": getattr(encoder, "key", "")}
    return _text_results(encoder, target, ids, mask, tv, names, "input_x_blur", params)
