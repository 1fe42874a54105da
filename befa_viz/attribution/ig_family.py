"""Integrated-gradients family: ``ig``, ``ig_smooth`` (NoiseTunnel) and ``layer_ig``, images and text.

Further IG variants (expected gradients, blur path, regions, similarity) are in
:mod:`befa_viz.attribution.ig`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import nn

from befa_viz.attribution._base import (
    _baseline_name,
    _captum,
    _check_ibs,
    _check_steps,
    _chunks,
    _completeness,
    _image_forward,
    _image_results,
    _image_setup,
    _layer_grid,
    _layer_name,
    _register,
    _upsample,
    _values,
    _warn_delta,
)
from befa_viz.attribution._steps import (
    DEFAULT_N_STEPS,
    MAX_STEPS,
    STEP_TOL,
    adaptive_steps,
    check_schedule,
    finish_steps,
)
from befa_viz.attribution._text import (
    _text_forward_embeds,
    _text_forward_ids,
    _text_results,
    _text_setup,
)
from befa_viz.attribution.result import Attribution
from befa_viz.attribution.targets import AttributionTarget
from befa_viz.errors import ConfigError

if TYPE_CHECKING:  # encoders are duck-typed nn.Modules here; casts name what a branch needs
    from befa_viz.encoders.base import ImageEncoder, TextEncoder

__all__ = ["integrated_gradients", "layer_integrated_gradients", "smooth_integrated_gradients"]


def _ig_chunk(ig: Any, x: torch.Tensor, b: torch.Tensor, args: tuple[torch.Tensor, ...], *,
              n_steps: int, ibs: int, smooth: tuple[int, float] | None, stdevs: float = 0.0
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """One chunk through Captum's IG, or NoiseTunnel-smoothed IG with noise σ ``stdevs``.

    Returns the attributions and the per-input mean |delta| (NaN for plain IG: the completeness
    error is computed by the caller from f(x) and f(b), which it needs anyway; asking Captum for
    it would cost two more forward passes).
    """
    if smooth is None:
        a = ig.attribute(x, baselines=b, additional_forward_args=args, n_steps=n_steps,
                         internal_batch_size=ibs)
        return a, torch.full((x.shape[0],), float("nan"))
    n_samples, _ = smooth
    per_call = max(1, min(n_samples, ibs // x.shape[0]))
    a, d = _captum().NoiseTunnel(ig).attribute(
        x, nt_type="smoothgrad", nt_samples=n_samples, nt_samples_batch_size=per_call,
        stdevs=stdevs, baselines=b, additional_forward_args=args, n_steps=n_steps,
        internal_batch_size=max(ibs, per_call * x.shape[0]), return_convergence_delta=True)
    return a, _mean_abs_delta(d, x.shape[0], n_samples, per_call)


# -- image: integrated gradients ----------------------------------------------------------------
def _ig_image(encoder: nn.Module, target: AttributionTarget, pixels: torch.Tensor,
              base: torch.Tensor, *, n_steps: int, ibs: int, smooth: tuple[int, float] | None
              ) -> tuple[torch.Tensor, np.ndarray]:
    """IG (optionally NoiseTunnel-smoothed) over pixels; returns attributions and the
    NoiseTunnel deltas (NaN for plain IG, whose delta the caller computes)."""
    ca = _captum()
    f = _image_forward(encoder, target)
    rows_all = torch.arange(pixels.shape[0], device=pixels.device)
    attrs, deltas = [], []
    for s in _chunks(pixels.shape[0], ibs):
        a, d = _ig_chunk(ca.IntegratedGradients(f), pixels[s], base[s], (rows_all[s],),
                         n_steps=n_steps, ibs=ibs, smooth=smooth,
                         stdevs=0.0 if smooth is None else float(smooth[1]))
        attrs.append(a.detach())
        deltas.append(d.detach().double().cpu())
    return torch.cat(attrs), torch.cat(deltas).numpy()


def _mean_abs_delta(d: torch.Tensor, batch: int, n_samples: int, per_call: int) -> torch.Tensor:
    """Mean |delta| per input from NoiseTunnel's deltas.

    NoiseTunnel concatenates one block per call of ``per_call`` noisy copies (the last block
    holds the remainder); within a block the copies of an input are consecutive.
    """
    sizes = [per_call] * (n_samples // per_call) + ([n_samples % per_call]
                                                    if n_samples % per_call else [])
    blocks, start = [], 0
    for k in sizes:
        blocks.append(d[start: start + batch * k].view(batch, k))
        start += batch * k
    return torch.cat(blocks, dim=1).abs().mean(1)


@_register("ig", ("image", "text"))
def integrated_gradients(
    encoder: nn.Module,
    target: AttributionTarget,
    inputs: torch.Tensor | Mapping[str, torch.Tensor],
    *,
    item_ids: Sequence[str] | None = None,
    baseline: str | torch.Tensor = "black",
    n_steps: int | None = DEFAULT_N_STEPS,
    max_steps: int = MAX_STEPS,
    tol: float = STEP_TOL,
    internal_batch_size: int = 32,
    blur_sigma: float | None = None,
    mean_pixel: Sequence[float] | None = None,
) -> list[Attribution]:
    """Integrated gradients (Sundararajan et al., 2017, arXiv:1703.01365) with Captum.

    Args:
        encoder: Image or text encoder.
        target: Target built for these inputs.
        inputs: Pixels ``[B, 3, S, S]`` in ``[0, 1]``, or the ``encoder.tokenize`` mapping.
        item_ids: Raw item id per input.
        baseline: Image baseline (see :func:`make_baseline`); text accepts only ``"pad"``
            (``"black"``, the default, means ``"pad"`` for text).
        n_steps: Gauss-Legendre integration steps; ``None`` (images) chooses them per item
            by the completeness error (doubling from 16 up to ``max_steps`` until |delta| ≤
            ``tol`` · |f(x) − f(b)|).
        max_steps: Cap of the adaptive schedule.
        tol: Relative completeness error the adaptive schedule aims for.
        internal_batch_size: Most examples in one forward/backward pass.
        blur_sigma: σ in pixels of the ``"blur"`` baseline.
        mean_pixel: Mean colour for the ``"mean"`` baseline.

    Returns:
        One attribution per input, completeness error in ``delta``; ``params`` records
        ``target_value`` f(x) and ``baseline_value`` f(baseline).
    """
    check_schedule(n_steps, max_steps, tol)
    ibs = _check_ibs(internal_batch_size)
    if getattr(encoder, "modality", "") == "text":
        return _text_ig(encoder, target, inputs, item_ids, baseline=baseline,
                        n_steps=DEFAULT_N_STEPS if n_steps is None else int(n_steps),
                        ibs=ibs, smooth=None, method="ig")
    pixels, ids, base = _image_setup(encoder, inputs, item_ids, baseline, blur_sigma, mean_pixel)
    if n_steps is None:
        from befa_viz.attribution.ig import _pixel_ig_run

        run = _pixel_ig_run(encoder, target, pixels, base, ibs)
        maps, d, x1, b1, used = adaptive_steps(run, len(ids), None, max_steps, tol,
                                               pixels.device)
        res = _image_results(pixels, maps, ids, "ig", target,
                             {"method": "ig", "baseline": _baseline_name(baseline),
                              "blur_sigma": blur_sigma, "encoder": getattr(encoder, "key", "")},
                             delta=d, fx=x1, fb=b1)
        return finish_steps(res, used, d, x1, b1, tol, True, "ig")
    attr, _ = _ig_image(encoder, target, pixels, base, n_steps=n_steps, ibs=ibs, smooth=None)
    rows = torch.arange(pixels.shape[0], device=pixels.device)
    delta, fx, fb = _completeness(_image_forward(encoder, target), pixels, base, rows,
                                  attr=attr, names=ids, method="ig", ibs=ibs)
    params = {"method": "ig", "n_steps": int(n_steps), "baseline": _baseline_name(baseline),
              "blur_sigma": blur_sigma, "encoder": getattr(encoder, "key", "")}
    return _image_results(pixels, attr.sum(1), ids, "ig", target, params, delta=delta, fx=fx,
                          fb=fb)


@_register("ig_smooth", ("image", "text"))
def smooth_integrated_gradients(
    encoder: nn.Module,
    target: AttributionTarget,
    inputs: torch.Tensor | Mapping[str, torch.Tensor],
    *,
    item_ids: Sequence[str] | None = None,
    baseline: str | torch.Tensor = "black",
    n_steps: int = DEFAULT_N_STEPS,
    internal_batch_size: int = 32,
    n_samples: int = 8,
    stdev: float = 0.15,
    seed: int = 0,
    blur_sigma: float | None = None,
    mean_pixel: Sequence[float] | None = None,
) -> list[Attribution]:
    """SmoothGrad over IG (Smilkov et al., 2017, arXiv:1706.03825) with Captum's NoiseTunnel.

    Args:
        encoder: Image or text encoder.
        target: Target built for these inputs.
        inputs: Pixels or the ``encoder.tokenize`` mapping.
        item_ids: Raw item id per input.
        baseline: As for ``ig``.
        n_steps: IG steps per noisy copy.
        internal_batch_size: Most examples in one forward/backward pass.
        n_samples: Noisy copies per input.
        stdev: Noise σ: in pixel units (inputs in ``[0, 1]``), or for text as a fraction of the
            token-embedding standard deviation.
        seed: Seed of the noise (the global RNG state is left untouched). The same seed,
            inputs and ``internal_batch_size`` give the same map (the batch size decides how
            Captum draws the noise in blocks).
        blur_sigma: σ of the ``"blur"`` baseline.
        mean_pixel: Mean colour for the ``"mean"`` baseline.

    Returns:
        One attribution per input; ``delta`` is the mean |completeness error| over the copies.
    """
    _check_steps(n_steps)
    ibs = _check_ibs(internal_batch_size)
    if int(n_samples) < 1 or stdev < 0:
        raise ConfigError(f"n_samples must be >= 1 and stdev >= 0; got {n_samples}, {stdev}.")
    with _seeded(seed, encoder):
        if getattr(encoder, "modality", "") == "text":
            return _text_ig(encoder, target, inputs, item_ids, baseline=baseline,
                            n_steps=n_steps, ibs=ibs, smooth=(int(n_samples), float(stdev)),
                            method="ig_smooth", seed=seed)
        pixels, ids, base = _image_setup(encoder, inputs, item_ids, baseline, blur_sigma,
                                         mean_pixel)
        attr, delta = _ig_image(encoder, target, pixels, base, n_steps=n_steps, ibs=ibs,
                                smooth=(int(n_samples), float(stdev)))
    params = {"method": "ig_smooth", "n_steps": int(n_steps), "n_samples": int(n_samples),
              "stdev": float(stdev), "seed": int(seed), "baseline": _baseline_name(baseline),
              "blur_sigma": blur_sigma, "encoder": getattr(encoder, "key", "")}
    return _image_results(pixels, attr.sum(1), ids, "ig_smooth", target, params, delta=delta)


@contextlib.contextmanager
def _seeded(seed: int, encoder: nn.Module) -> Iterator[None]:
    dev = getattr(encoder, "device", torch.device("cpu"))
    devices = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield


@_register("layer_ig", ("image", "text"))
def layer_integrated_gradients(
    encoder: nn.Module,
    target: AttributionTarget,
    inputs: torch.Tensor | Mapping[str, torch.Tensor],
    *,
    item_ids: Sequence[str] | None = None,
    baseline: str | torch.Tensor = "black",
    n_steps: int | None = DEFAULT_N_STEPS,
    max_steps: int = MAX_STEPS,
    tol: float = STEP_TOL,
    internal_batch_size: int = 32,
    blur_sigma: float | None = None,
    mean_pixel: Sequence[float] | None = None,
) -> list[Attribution]:
    """Integrated gradients at a layer (Captum LayerIntegratedGradients).

    Images: at ``encoder.feature_layer`` (last conv block / ViT patch tokens), between the
    layer's activations for the baseline image and for the input. The attribution is summed
    over channels *per location* (one value per feature-map cell, in
    ``extras["layer_map"]``) and upsampled bilinearly to the input size in ``values``. For ViT
    token outputs, the CLS/register tokens' share is dropped (recorded as
    ``params["prefix_share"]``). Text: at ``encoder.embedding_layer`` with the ``"pad"``
    baseline.

    Args:
        encoder: Image or text encoder.
        target: Target built for these inputs.
        inputs: Pixels or the ``encoder.tokenize`` mapping.
        item_ids: Raw item id per input.
        baseline: As for ``ig``.
        n_steps: Integration steps; ``None`` (images) chooses them per item by the
            completeness error (doubling from 16 up to ``max_steps`` until |delta| ≤
            ``tol`` · |f(x) − f(b)|; see :mod:`befa_viz.attribution.ig`).
        max_steps: Cap of the adaptive schedule.
        tol: Relative completeness error the adaptive schedule aims for.
        internal_batch_size: Most examples in one forward/backward pass.
        blur_sigma: σ of the ``"blur"`` baseline.
        mean_pixel: Mean colour for the ``"mean"`` baseline.

    Returns:
        One attribution per input, completeness error (at the layer) in ``delta``.
    """
    check_schedule(n_steps, max_steps, tol)
    ibs = _check_ibs(internal_batch_size)
    if getattr(encoder, "modality", "") == "text":
        return _text_layer_ig(encoder, target, inputs, item_ids, baseline=baseline,
                              n_steps=DEFAULT_N_STEPS if n_steps is None else int(n_steps),
                              ibs=ibs)
    ca = _captum()
    pixels, ids, base = _image_setup(encoder, inputs, item_ids, baseline, blur_sigma, mean_pixel)
    f = _image_forward(encoder, target)
    rows_all = torch.arange(pixels.shape[0], device=pixels.device)
    prefix_of: dict[int, float] = {}

    def run(idx: torch.Tensor, steps: int
            ) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray]:
        x, b, rows = pixels[idx], base[idx], rows_all[idx]
        grids, totals = [], []
        for s in _chunks(x.shape[0], ibs):
            lig = ca.LayerIntegratedGradients(f, encoder.feature_layer)
            a = lig.attribute(x[s], baselines=b[s], additional_forward_args=(rows[s],),
                              n_steps=steps, internal_batch_size=ibs).detach()
            total = a.flatten(1).sum(1)
            grid = _layer_grid(a, a.shape[0], encoder, x[s]).sum(1)  # [b, h, w] per location
            share = (total - grid.flatten(1).sum(1)) / total.abs().clamp_min(1e-12)
            totals.append(total)
            grids.append(grid)
            for i, v in zip(idx[s].tolist(), share.tolist(), strict=True):
                prefix_of[i] = float(v)
        fx, fb = _values(f, x, rows, batch=ibs), _values(f, b, rows, batch=ibs)
        d = torch.cat(totals).double().cpu().numpy() - (fx - fb)
        return torch.cat(grids), d, fx, fb

    layer_map, delta, fx, fb, used = adaptive_steps(run, len(ids), n_steps, max_steps, tol,
                                                    pixels.device)
    if n_steps is not None:
        _warn_delta(delta, fx, fb, ids, "layer_ig")
    params = {"method": "layer_ig", "n_steps": int(used.max()),
              "baseline": _baseline_name(baseline), "blur_sigma": blur_sigma,
              "layer": _layer_name(encoder, cast("ImageEncoder", encoder).feature_layer),
              "encoder": getattr(encoder, "key", "")}
    res = _image_results(pixels, _upsample(layer_map, tuple(pixels.shape[-2:])), ids, "layer_ig",
                         target, params, delta=delta, fx=fx, fb=fb,
                         extras={"layer_map": layer_map})
    for i, r in enumerate(res):
        r.params["prefix_share"] = prefix_of[i]
    if n_steps is None:
        return finish_steps(res, used, delta, fx, fb, tol, True, "layer_ig")
    return res


def _text_ig(encoder: nn.Module, target: AttributionTarget, inputs: Any,
             item_ids: Sequence[str] | None, *, baseline: Any, n_steps: int, ibs: int,
             smooth: tuple[int, float] | None, method: str, seed: int = 0) -> list[Attribution]:
    ca = _captum()
    ids, mask, names, base_ids = _text_setup(encoder, inputs, item_ids, baseline)
    emb_layer = cast("TextEncoder", encoder).embedding_layer
    with torch.no_grad():
        x, b = emb_layer(ids).detach(), emb_layer(base_ids).detach()
    f = _text_forward_embeds(encoder, target)
    rows_all = torch.arange(ids.shape[0], device=ids.device)
    attrs, deltas = [], []
    sigma = 0.0
    if smooth is not None:
        sigma = float(smooth[1]) * float(cast(torch.Tensor, emb_layer.weight).std()) if hasattr(
            emb_layer, "weight") else float(smooth[1])
    for s in _chunks(ids.shape[0], ibs):
        a, d = _ig_chunk(ca.IntegratedGradients(f), x[s], b[s], (mask[s], rows_all[s]),
                         n_steps=n_steps, ibs=ibs, smooth=smooth, stdevs=sigma)
        attrs.append(a.detach().sum(-1))
        deltas.append(d.detach().double().cpu())
    tv = torch.cat(attrs)
    delta = torch.cat(deltas).numpy()
    if smooth is None:
        delta, fx, fb = _completeness(f, x, b, mask, rows_all, attr=tv, names=names,
                                      method=method, ibs=ibs)
    else:
        fx = _values(f, x, mask, rows_all, batch=ibs)
        fb = _values(f, b, mask, rows_all, batch=ibs)
    params: dict[str, Any] = {"method": method, "n_steps": int(n_steps), "baseline": "pad",
                              "encoder": getattr(encoder, "key", "")}
    if smooth is not None:
        params.update(n_samples=smooth[0], stdev=smooth[1], seed=int(seed))
    return _text_results(encoder, target, ids, mask, tv, names, method, params, delta=delta,
                         fx=fx, fb=fb)


def _text_layer_ig(encoder: nn.Module, target: AttributionTarget, inputs: Any,
                   item_ids: Sequence[str] | None, *, baseline: Any, n_steps: int, ibs: int
                   ) -> list[Attribution]:
    ca = _captum()
    ids, mask, names, base_ids = _text_setup(encoder, inputs, item_ids, baseline)
    f = _text_forward_ids(encoder, target)
    rows_all = torch.arange(ids.shape[0], device=ids.device)
    attrs = []
    for s in _chunks(ids.shape[0], ibs):
        lig = ca.LayerIntegratedGradients(f, encoder.embedding_layer)
        a = lig.attribute(ids[s], baselines=base_ids[s],
                          additional_forward_args=(mask[s], rows_all[s]), n_steps=n_steps,
                          internal_batch_size=ibs)
        attrs.append(a.detach().sum(-1))
    delta, fx, fb = _completeness(f, ids, base_ids, mask, rows_all, attr=torch.cat(attrs),
                                  names=names, method="layer_ig", ibs=ibs)
    params = {"method": "layer_ig", "n_steps": int(n_steps), "baseline": "pad",
              "layer": _layer_name(encoder, cast("TextEncoder", encoder).embedding_layer),
              "encoder": getattr(encoder, "key", "")}
    return _text_results(encoder, target, ids, mask, torch.cat(attrs), names, "layer_ig", params,
                         delta=delta, fx=fx, fb=fb)
