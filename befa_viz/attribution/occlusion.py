"""Occlusion (``occlusion``): Captum Occlusion with the chosen baseline; text: one token padded at a time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from befa_viz.attribution._base import (
    _baseline_name,
    _captum,
    _check_ibs,
    _check_pixels,
    _chunks,
    _ids,
    _image_forward,
    _image_results,
    _register,
    _values,
    make_baseline,
)
from befa_viz.attribution._text import _text_forward_ids, _text_results, _text_setup
from befa_viz.attribution.result import Attribution
from befa_viz.attribution.targets import AttributionTarget
from befa_viz.errors import ConfigError

__all__ = ["occlusion"]


@_register("occlusion", ("image", "text"))
def occlusion(
    encoder: nn.Module,
    target: AttributionTarget,
    inputs: torch.Tensor | Mapping[str, torch.Tensor],
    *,
    item_ids: Sequence[str] | None = None,
    baseline: str | torch.Tensor = "black",
    window: int | None = None,
    stride: int | None = None,
    internal_batch_size: int = 32,
    blur_sigma: float | None = None,
    mean_pixel: Sequence[float] | None = None,
) -> list[Attribution]:
    """Occlusion (Zeiler & Fergus, 2014, arXiv:1311.2901): f(x) − f(x with a patch occluded).

    Images use Captum's Occlusion: a ``window``×``window`` square (default S/8) slides with
    ``stride`` (default S/16) and is filled from the baseline across all channels; each pixel
    gets the mean change f(x) − f(x occluded) over the windows covering it. Text replaces one attended,
    non-special token at a time with the pad token.

    Args:
        encoder: Image or text encoder.
        target: Target built for these inputs.
        inputs: Pixels or the ``encoder.tokenize`` mapping.
        item_ids: Raw item id per input.
        baseline: What fills the occluded window (image baselines; text: ``"pad"``).
        window: Square window side in pixels.
        stride: Window stride in pixels.
        internal_batch_size: Most occluded copies per forward pass.
        blur_sigma: σ of the ``"blur"`` baseline.
        mean_pixel: Mean colour for the ``"mean"`` baseline.

    Returns:
        One attribution per input.
    """
    ibs = _check_ibs(internal_batch_size)
    if getattr(encoder, "modality", "") == "text":
        return _text_occlusion(encoder, target, inputs, item_ids, baseline=baseline, ibs=ibs)
    ca = _captum()
    pixels = _check_pixels(inputs, encoder)
    ids = _ids(item_ids, pixels.shape[0])
    size = pixels.shape[-1]
    win = int(window) if window is not None else max(1, size // 8)
    st = int(stride) if stride is not None else max(1, size // 16)
    if win < 1 or st < 1 or win > size:
        raise ConfigError(f"window must be in [1, {size}] and stride >= 1; got {win}, {st}.")
    base = make_baseline(pixels, baseline, blur_sigma=blur_sigma, mean_pixel=mean_pixel)
    f = _image_forward(encoder, target)
    rows_all = torch.arange(pixels.shape[0], device=pixels.device)
    maps = []
    for s in _chunks(pixels.shape[0], ibs):
        x = pixels[s]
        a = ca.Occlusion(f).attribute(
            x, sliding_window_shapes=(3, win, win), strides=(3, st, st), baselines=base[s],
            additional_forward_args=(rows_all[s],),
            perturbations_per_eval=max(1, ibs // x.shape[0]))
        maps.append(a.detach().mean(1))  # the window spans the channels: all three are equal
    params = {"method": "occlusion", "window": win, "stride": st,
              "baseline": _baseline_name(baseline), "blur_sigma": blur_sigma,
              "encoder": getattr(encoder, "key", "")}
    return _image_results(pixels, torch.cat(maps), ids, "occlusion", target, params)


def _text_occlusion(encoder: nn.Module, target: AttributionTarget, inputs: Any,
                    item_ids: Sequence[str] | None, *, baseline: Any, ibs: int
                    ) -> list[Attribution]:
    ids, mask, names, base_ids = _text_setup(encoder, inputs, item_ids, baseline)
    f = _text_forward_ids(encoder, target)
    n, t = ids.shape
    rows_all = torch.arange(n, device=ids.device)
    # One copy per (item, position) that differs from the baseline: that token → baseline token.
    bb, tt = torch.nonzero((ids != base_ids) & mask.bool(), as_tuple=True)
    occluded = ids[bb].clone()
    occluded[torch.arange(bb.numel()), tt] = base_ids[bb, tt]
    fx = _values(f, ids, mask, rows_all, batch=ibs)
    tv = torch.zeros(n, t, dtype=torch.float64)
    if bb.numel():
        fo = _values(f, occluded, mask[bb], rows_all[bb], batch=ibs)
        tv[bb.cpu(), tt.cpu()] = torch.from_numpy(fx[bb.cpu().numpy()] - fo)
    params = {"method": "occlusion", "baseline": "pad", "encoder": getattr(encoder, "key", "")}
    return _text_results(encoder, target, ids, mask, tv, names, "occlusion", params)
