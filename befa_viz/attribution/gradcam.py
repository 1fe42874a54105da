"""Grad-CAM (``gradcam``): Captum LayerGradCam at the encoder's feature layer, upsampled."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F
from torch import nn

from befa_viz.attribution._base import (
    _captum,
    _check_ibs,
    _check_pixels,
    _chunks,
    _ids,
    _image_forward,
    _image_results,
    _layer_grid,
    _layer_name,
    _register,
    _upsample,
)
from befa_viz.attribution.result import Attribution
from befa_viz.attribution.targets import AttributionTarget

if TYPE_CHECKING:  # encoders are duck-typed nn.Modules here; casts name what a branch needs
    from befa_viz.encoders.base import ImageEncoder

__all__ = ["grad_cam"]


@_register("gradcam", ("image",))
def grad_cam(
    encoder: nn.Module,
    target: AttributionTarget,
    inputs: torch.Tensor,
    *,
    item_ids: Sequence[str] | None = None,
    internal_batch_size: int = 32,
    relu: bool = True,
) -> list[Attribution]:
    """Grad-CAM (Selvaraju et al., 2017, arXiv:1610.02391) at ``encoder.feature_layer``.

    CNN feature maps use Captum's LayerGradCam. ViT token outputs ``[B, T, C]`` use the same
    formula on the patch-token grid: channel weights are the gradients averaged over patch
    tokens, the map is Σ_c w_c A_c (ReLU'd when ``relu``). The layer map is in
    ``extras["layer_map"]``; ``values`` is it upsampled bilinearly to the input size.

    Args:
        encoder: Image encoder.
        target: Target built for these inputs.
        inputs: Pixels ``[B, 3, S, S]`` in ``[0, 1]``.
        item_ids: Raw item id per input.
        internal_batch_size: Most images per forward/backward pass.
        relu: Keep only positive evidence (standard Grad-CAM); ``False`` keeps the sign.

    Returns:
        One attribution per input (``delta`` is ``None``).
    """
    ca = _captum()
    ibs = _check_ibs(internal_batch_size)
    pixels = _check_pixels(inputs, encoder)
    ids = _ids(item_ids, pixels.shape[0])
    f = _image_forward(encoder, target)
    rows_all = torch.arange(pixels.shape[0], device=pixels.device)
    layer = cast("ImageEncoder", encoder).feature_layer
    acts: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, o: acts.append(o))
    try:
        with torch.no_grad():
            f(pixels[:1], rows_all[:1])  # probe: CNN map [B, C, h, w] or ViT tokens?
    finally:
        handle.remove()
    maps = []
    for s in _chunks(pixels.shape[0], ibs):
        x, rows = pixels[s], rows_all[s]
        if acts[0].ndim == 4:
            cam = ca.LayerGradCam(f, layer).attribute(
                x, additional_forward_args=(rows,), relu_attributions=relu)
            maps.append(cam.detach().squeeze(1))
        else:
            maps.append(_token_gradcam(f, layer, x, rows, encoder, relu))
    layer_map = torch.cat(maps)
    params = {"method": "gradcam", "relu": bool(relu),
              "layer": _layer_name(encoder, layer), "encoder": getattr(encoder, "key", "")}
    return _image_results(pixels, _upsample(layer_map, tuple(pixels.shape[-2:])), ids, "gradcam",
                          target, params, extras={"layer_map": layer_map})


def _token_gradcam(f: Callable[..., torch.Tensor], layer: nn.Module, x: torch.Tensor,
                   rows: torch.Tensor, encoder: nn.Module, relu: bool) -> torch.Tensor:
    acts: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, o: acts.append(o))
    try:
        with torch.enable_grad():
            xr = x.detach().requires_grad_(True)
            out = f(xr, rows)
            (grad,) = torch.autograd.grad(out.sum(), acts[0])
    finally:
        handle.remove()
    a = _layer_grid(acts[0].detach(), x.shape[0], encoder, x)  # [b, C, h, w]
    g = _layer_grid(grad.detach(), x.shape[0], encoder, x)
    w = g.mean(dim=(2, 3), keepdim=True)
    cam = (w * a).sum(1)
    return F.relu(cam) if relu else cam
