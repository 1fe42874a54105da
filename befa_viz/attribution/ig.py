"""Integrated-gradients variants built on Captum, each with an error-driven step count.

Pixel IG on a CNN fails its controls on the synthetic shop (DESIGN.md): its maps follow the
input and the baseline, not the target. These variants change the path, the baseline, the
layer or the unit of attribution, so the benchmark can decide which (if any) passes:

================  =========================================================================
``ig_expected``   Expected gradients / GradientShap (Lundberg & Lee 2017, arXiv:1705.07874;
                  Erion et al. 2019, arXiv:1906.10670): Captum ``GradientShap`` with a
                  *distribution* of baselines per item (blurs of the input at several scales,
                  or the other items of the call). ``n_steps`` is the number of samples.
``ig_blur_path``  Blur IG (Xu et al. 2020, arXiv:2004.03383): the path runs through the
                  input's Gaussian scale space, from a heavy blur to the sharp image. Built as
                  a chain of straight Captum IG segments between successive blur levels (the
                  segments' sums telescope, so completeness holds for the whole path; more
                  segments approach the smooth blur path). ``n_steps`` is per segment.
``ig_region``     IG aggregated over SLIC superpixels (scikit-image): each superpixel gets the
                  sum of its pixels' Captum IG — exactly IG over region-scaling inputs
                  z ∈ [0, 1]^K with x(z) = b + z[seg] (x − b), by the chain rule — shown as
                  a density (sum / area); region totals in ``extras["region_values"]``.
``ig_similarity`` Captum LayerIntegratedGradients of the paper-style similarity target: the
                  mean over feature-map locations l of cos(pathway(f_l(x)), r). Each
                  location's attribution is IG of its own cosine term (the terms do not
                  interact), so the map is the per-location similarity change from the
                  baseline, integrated — the IG version of the ``similarity`` method.
================  =========================================================================

Step counts: ``n_steps=None`` (the default) chooses the count per item by the completeness
error: start at :data:`DEFAULT_N_STEPS`, double while |delta| > ``tol`` · |f(x) − f(b)| up to
``max_steps``; the count used is in ``params["n_steps"]`` and an item that never converged
carries ``params["converged"] = False`` (and a warning). An integer fixes the count.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from befa_viz.attribution._base import (
    _baseline_name,
    _captum,
    _check_ibs,
    _chunks,
    _image_forward,
    _image_results,
    _image_setup,
    _layer_grid,
    _layer_name,
    _register,
    _upsample,
    _values,
)
from befa_viz.attribution._blur import gaussian_blur_levels
from befa_viz.attribution._steps import (
    DEFAULT_N_STEPS,
    MAX_STEPS,
    STEP_TOL,
    StepRun,
    adaptive_steps,
    check_schedule,
    completeness_scale,
    finish_steps,
    relative_delta,
)
from befa_viz.attribution.result import Attribution
from befa_viz.attribution.targets import AttributionTarget
from befa_viz.errors import ConfigError, MissingDependencyError

__all__ = ["DEFAULT_N_STEPS", "MAX_STEPS", "STEP_TOL", "completeness_scale", "relative_delta"]

def _pixel_ig_run(encoder: nn.Module, target: AttributionTarget, pixels: torch.Tensor,
                  base: torch.Tensor, ibs: int) -> StepRun:
    """Captum IG over pixels for a subset of items, rows kept (summed over channels)."""
    ca = _captum()
    f = _image_forward(encoder, target)
    rows_all = torch.arange(pixels.shape[0], device=pixels.device)

    def run(idx: torch.Tensor, steps: int
            ) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray]:
        x, b, rows = pixels[idx], base[idx], rows_all[idx]
        parts = []
        for s in _chunks(x.shape[0], ibs):
            parts.append(ca.IntegratedGradients(f).attribute(
                x[s], baselines=b[s], additional_forward_args=(rows[s],), n_steps=steps,
                internal_batch_size=ibs).detach())
        a = torch.cat(parts)
        fx, fb = _values(f, x, rows, batch=ibs), _values(f, b, rows, batch=ibs)
        d = a.flatten(1).sum(1).double().cpu().numpy() - (fx - fb)
        return a.sum(1), d, fx, fb

    return run


# -- expected gradients / GradientShap ---------------------------------------------------------
def _reference_sets(pixels: torch.Tensor, references: str | torch.Tensor,
                    n_references: int) -> list[torch.Tensor]:
    """Baseline distribution ``[K, 3, S, S]`` of each item (blurs: one batched pass per σ)."""
    n = pixels.shape[0]
    if isinstance(references, torch.Tensor):
        ref = references.to(pixels)
        if ref.ndim != 4 or ref.shape[1:] != pixels.shape[1:]:
            raise ConfigError(f"references must be [K, 3, S, S] like the pixels; got "
                              f"{tuple(ref.shape)}.")
        return [ref] * n
    if references == "blur_scales":
        s = pixels.shape[-1]
        sig = np.geomspace(s / 64.0, s / 4.0, max(1, int(n_references)))
        levels = gaussian_blur_levels(pixels, [float(v) for v in sig])  # [B, K, 3, S, S]
        return list(levels.unbind(0))
    if references == "batch":
        if n < 2:
            raise ConfigError("references='batch' needs at least two items in the call (the "
                              "other items are item i's baselines); pass more items or use "
                              "'blur_scales'.")
        return [torch.cat([pixels[:i], pixels[i + 1:]]) for i in range(n)]
    raise ConfigError(f"Unknown references {references!r}; accepted: 'blur_scales', 'batch' or "
                      f"a tensor [K, 3, S, S].")


@contextlib.contextmanager
def _numpy_seeded(seed: int) -> Iterator[None]:
    """Seed NumPy's global RNG for the block and restore its state after.

    Captum's GradientShap draws the baselines (``np.random.choice``) and the path points
    (``np.random.uniform``) from NumPy's global RNG, not torch's.
    """
    state = np.random.get_state()
    np.random.seed(int(seed) % 2**32)
    try:
        yield
    finally:
        np.random.set_state(state)


@_register("ig_expected", ("image",))
def expected_gradients(
    encoder: nn.Module,
    target: AttributionTarget,
    inputs: torch.Tensor,
    *,
    item_ids: Sequence[str] | None = None,
    references: str | torch.Tensor = "blur_scales",
    n_references: int = 8,
    n_steps: int | None = None,
    max_steps: int = MAX_STEPS,
    tol: float = STEP_TOL,
    internal_batch_size: int = 32,
    seed: int = 0,
) -> list[Attribution]:
    """Expected gradients: IG averaged over a distribution of baselines (Captum GradientShap).

    Each sample draws a baseline b from the item's reference set and a point α ~ U(0, 1) on
    the straight path, and takes ∇f(b + α(x − b)) · (x − b); the mean over samples is
    unbiased for the average IG over the references. Its completeness error (mean over the
    samples) is compared with f(x) − E[f(b)].

    Args:
        encoder: Image encoder.
        target: Target built for these inputs.
        inputs: Pixels ``[B, 3, S, S]`` in ``[0, 1]``.
        item_ids: Raw item id per input.
        references: ``"blur_scales"`` (the input blurred at ``n_references`` σ from S/64 to
            S/4), ``"batch"`` (the call's other items: expected gradients over a dataset
            sample) or a tensor ``[K, 3, S, S]`` shared by every item.
        n_references: Blur levels of ``"blur_scales"``.
        n_steps: Samples per item; ``None`` doubles from 16 until the tolerance is met.
        max_steps: Cap of the adaptive schedule.
        tol: Relative completeness error the adaptive schedule aims for.
        internal_batch_size: Most samples in one forward/backward pass.
        seed: Seed of the sampling (global RNG state untouched); each item's draws follow
            the seed and its id, not its place in the call (a map does not depend on which
            other items share its batch, e.g. on Ray).

    Returns:
        One attribution per input; ``delta`` is the completeness error of the mean.
    """
    check_schedule(n_steps, max_steps, tol)
    ibs = _check_ibs(internal_batch_size)
    ca = _captum()
    pixels, ids, _ = _image_setup(encoder, inputs, item_ids, "black", None, None)
    f = _image_forward(encoder, target)
    rows_all = torch.arange(pixels.shape[0], device=pixels.device)
    refs = _reference_sets(pixels, references, n_references)
    # f(x) and E[f(b)] over each item's references: forward passes only, computed once for
    # all items and reused by every round of the adaptive schedule.
    ref_rows = torch.cat([rows_all[i].repeat(r.shape[0]) for i, r in enumerate(refs)])
    f_refs = _values(f, torch.cat(refs), ref_rows, batch=ibs)
    bounds = np.cumsum([0] + [r.shape[0] for r in refs])
    fb_all = np.array([f_refs[bounds[i]: bounds[i + 1]].mean() for i in range(len(refs))])
    fx_all = _values(f, pixels, rows_all, batch=ibs)

    def run(idx: torch.Tensor, steps: int
            ) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray]:
        attrs = []
        for i in idx.tolist():
            x, rows = pixels[i: i + 1], rows_all[i: i + 1]
            item_seed = int(seed) * 1_000_003 + zlib.crc32(str(ids[i]).encode())
            with torch.random.fork_rng(devices=[]), _numpy_seeded(item_seed):
                torch.manual_seed(item_seed)
                a = ca.GradientShap(f).attribute(
                    x, baselines=refs[i], n_samples=steps, stdevs=0.0,
                    additional_forward_args=(rows,))
            attrs.append(a.detach().sum(1)[0])
        a_all, sel = torch.stack(attrs), idx.cpu().numpy()
        fx, fb = fx_all[sel], fb_all[sel]
        return a_all, a_all.flatten(1).sum(1).double().cpu().numpy() - (fx - fb), fx, fb

    attr, delta, fx, fb, used = adaptive_steps(run, len(ids), n_steps, max_steps, tol, pixels.device)
    ref_name = references if isinstance(references, str) else "tensor"
    params = {"method": "ig_expected", "references": ref_name,
              "n_references": int(n_references), "baseline": f"distribution:{ref_name}",
              "seed": int(seed), "encoder": getattr(encoder, "key", "")}
    res = _image_results(pixels, attr, ids, "ig_expected", target, params, delta=delta, fx=fx,
                         fb=fb)
    return finish_steps(res, used, delta, fx, fb, tol, n_steps is None, "ig_expected")


# -- blur IG -----------------------------------------------------------------------------------
@_register("ig_blur_path", ("image",))
def blur_path_ig(
    encoder: nn.Module,
    target: AttributionTarget,
    inputs: torch.Tensor,
    *,
    item_ids: Sequence[str] | None = None,
    max_sigma: float | None = None,
    n_segments: int = 8,
    n_steps: int | None = None,
    max_steps: int = MAX_STEPS,
    tol: float = STEP_TOL,
    internal_batch_size: int = 32,
) -> list[Attribution]:
    """Blur IG (Xu et al., 2020, arXiv:2004.03383): integrate along the blur scale space.

    The path visits blur(x, σ_k) for σ_k = ``max_sigma`` · (1 − k/K), k = 0..K (σ = 0 is the
    sharp input); each segment is a straight Captum IG between consecutive levels, all
    segments in one batched call. The baseline is the heaviest blur: a blurred image carries
    no information a blur removes, so nothing is attributed to "being dark" as with black.

    Args:
        encoder: Image encoder.
        target: Target built for these inputs.
        inputs: Pixels ``[B, 3, S, S]`` in ``[0, 1]``.
        item_ids: Raw item id per input.
        max_sigma: σ of the path's start in pixels (default S/8).
        n_segments: Blur levels K between the start and the sharp image.
        n_steps: Steps per segment; ``None`` doubles from 16 until the tolerance is met.
        max_steps: Cap of the adaptive schedule (per segment).
        tol: Relative completeness error the adaptive schedule aims for.
        internal_batch_size: Most examples in one forward/backward pass.

    Returns:
        One attribution per input, completeness error of the whole path in ``delta``.
    """
    check_schedule(n_steps, max_steps, tol)
    ibs = _check_ibs(internal_batch_size)
    if int(n_segments) < 1:
        raise ConfigError(f"n_segments must be >= 1; got {n_segments}.")
    ca = _captum()
    pixels, ids, _ = _image_setup(encoder, inputs, item_ids, "black", None, None)
    size = pixels.shape[-1]
    smax = float(max_sigma) if max_sigma is not None else size / 8.0
    if smax <= 0:
        raise ConfigError(f"max_sigma must be > 0; got {max_sigma}.")
    k = int(n_segments)
    sigmas = [smax * (1 - j / k) for j in range(k + 1)]
    levels = gaussian_blur_levels(pixels, sigmas)  # [B, K+1, 3, S, S], one pass per level
    f = _image_forward(encoder, target)
    rows_all = torch.arange(pixels.shape[0], device=pixels.device)

    def run(idx: torch.Tensor, steps: int
            ) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray]:
        lv = levels[idx]  # [n, K+1, 3, S, S]
        n = lv.shape[0]
        ends = lv[:, 1:].reshape(n * k, *lv.shape[2:])
        starts = lv[:, :-1].reshape(n * k, *lv.shape[2:])
        rows = rows_all[idx].repeat_interleave(k)
        parts = []
        for s in _chunks(n * k, ibs):
            parts.append(ca.IntegratedGradients(f).attribute(
                ends[s], baselines=starts[s], additional_forward_args=(rows[s],),
                n_steps=steps, internal_batch_size=ibs).detach())
        a = torch.cat(parts).view(n, k, *lv.shape[2:]).sum(1)  # segments add up
        fx = _values(f, lv[:, -1], rows_all[idx], batch=ibs)
        fb = _values(f, lv[:, 0], rows_all[idx], batch=ibs)
        d = a.flatten(1).sum(1).double().cpu().numpy() - (fx - fb)
        return a.sum(1), d, fx, fb

    attr, delta, fx, fb, used = adaptive_steps(run, len(ids), n_steps, max_steps, tol, pixels.device)
    params = {"method": "ig_blur_path", "max_sigma": smax, "n_segments": k,
              "baseline": f"blur_path:{smax:g}", "encoder": getattr(encoder, "key", "")}
    res = _image_results(pixels, attr, ids, "ig_blur_path", target, params, delta=delta, fx=fx,
                         fb=fb)
    return finish_steps(res, used, delta, fx, fb, tol, n_steps is None, "ig_blur_path")


# -- region IG ---------------------------------------------------------------------------------
def superpixels(image: np.ndarray, n_segments: int = 64, compactness: float = 10.0
                ) -> np.ndarray:
    """SLIC superpixels (scikit-image) of an ``uint8 [S, S, 3]`` image → labels ``[S, S]``."""
    try:
        from skimage.segmentation import slic
    except ImportError as e:  # pragma: no cover - scikit-image is a core dependency
        raise MissingDependencyError(
            "scikit-image is not installed. Install with: pip install befa-viz (it is a core "
            "dependency).") from e
    lab = slic(np.asarray(image), n_segments=int(n_segments), compactness=float(compactness),
               start_label=0, channel_axis=-1)
    return np.asarray(lab, dtype=np.int64)


def region_sum(values: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-region totals and the per-pixel density (total / area) of a ``[S, S]`` map."""
    flat = labels.flatten()
    k = int(flat.max()) + 1
    tot = torch.zeros(k, dtype=values.dtype, device=values.device).index_add_(
        0, flat, values.flatten())
    area = torch.bincount(flat, minlength=k).to(values.dtype)
    return tot, (tot / area.clamp_min(1))[flat].view_as(values)


@_register("ig_region", ("image",))
def region_ig(
    encoder: nn.Module,
    target: AttributionTarget,
    inputs: torch.Tensor,
    *,
    item_ids: Sequence[str] | None = None,
    baseline: str | torch.Tensor = "blur",
    n_segments: int = 64,
    compactness: float = 10.0,
    n_steps: int | None = None,
    max_steps: int = MAX_STEPS,
    tol: float = STEP_TOL,
    internal_batch_size: int = 32,
    blur_sigma: float | None = None,
    mean_pixel: Sequence[float] | None = None,
) -> list[Attribution]:
    """IG of whole superpixels: Captum pixel IG summed over SLIC regions, shown per area.

    Pixel signs cancel about half and half inside an object; summing them over a region
    first (before taking magnitudes) keeps only what the region as a whole adds. The map
    is region total / region area, so its sum over pixels still equals Σ attr.

    Args:
        encoder: Image encoder.
        target: Target built for these inputs.
        inputs: Pixels ``[B, 3, S, S]`` in ``[0, 1]``.
        item_ids: Raw item id per input.
        baseline: As for ``ig``.
        n_segments: Approximate number of SLIC superpixels.
        compactness: SLIC compactness (higher: squarer regions).
        n_steps: Integration steps; ``None`` doubles from 16 until the tolerance is met.
        max_steps: Cap of the adaptive schedule.
        tol: Relative completeness error the adaptive schedule aims for.
        internal_batch_size: Most examples in one forward/backward pass.
        blur_sigma: σ of the ``"blur"`` baseline.
        mean_pixel: Mean colour for the ``"mean"`` baseline.

    Returns:
        One attribution per input; ``extras["segments"]`` holds the labels and
        ``extras["region_values"]`` the totals per label.
    """
    check_schedule(n_steps, max_steps, tol)
    ibs = _check_ibs(internal_batch_size)
    pixels, ids, base = _image_setup(encoder, inputs, item_ids, baseline, blur_sigma, mean_pixel)
    run = _pixel_ig_run(encoder, target, pixels, base, ibs)
    attr, delta, fx, fb, used = adaptive_steps(run, len(ids), n_steps, max_steps, tol, pixels.device)
    maps, labels, totals = [], [], []
    for b in range(len(ids)):
        img = (pixels[b].detach().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu()
        lab = torch.as_tensor(superpixels(img.numpy(), n_segments, compactness),
                              device=attr.device)
        tot, dens = region_sum(attr[b], lab)
        maps.append(dens)
        labels.append(lab)
        totals.append(tot)
    params = {"method": "ig_region", "baseline": _baseline_name(baseline),
              "blur_sigma": blur_sigma, "n_segments": int(n_segments),
              "compactness": float(compactness), "encoder": getattr(encoder, "key", "")}
    res = _image_results(pixels, torch.stack(maps), ids, "ig_region", target, params,
                         delta=delta, fx=fx, fb=fb)
    for r, lab, tot in zip(res, labels, totals, strict=True):
        r.extras["segments"] = lab.cpu().numpy().astype(np.int32)
        r.extras["region_values"] = tot.detach().float().cpu().numpy()
    return finish_steps(res, used, delta, fx, fb, tol, n_steps is None, "ig_region")


# -- IG of the per-location similarity target --------------------------------------------------
def _location_similarity(encoder: nn.Module, target: AttributionTarget
                         ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """pixels, rows → mean over feature-map locations of cos(pathway(f_l), r), ``[B]``."""
    dim = int(getattr(encoder, "dim", -1))
    project = getattr(encoder, "project_features", None)

    def f(pixels: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        fm = encoder.features(pixels)  # type: ignore[operator]  # ImageEncoder.features
        b, c, h, w = fm.shape
        loc = fm.permute(0, 2, 3, 1).reshape(b * h * w, c)
        rr = target.rows(rows.repeat_interleave(h * w), b * h * w, pixels.device)
        ref = target.reference(rr)
        if c != dim and project is not None:
            loc, c = project(loc), dim
        if c == dim:
            z = target.embed(loc, rr)
        elif c == ref.shape[-1]:
            z = loc
        else:
            raise ConfigError(
                f"ig_similarity: the feature map has {c} channels but the encoder outputs "
                f"{dim} and the target's reference has {ref.shape[-1]}; use 'layer_ig'.")
        return F.cosine_similarity(z, ref, dim=-1, eps=1e-8).view(b, h * w).mean(1)

    return f


@_register("ig_similarity", ("image",))
def similarity_ig(
    encoder: nn.Module,
    target: AttributionTarget,
    inputs: torch.Tensor,
    *,
    item_ids: Sequence[str] | None = None,
    baseline: str | torch.Tensor = "blur",
    n_steps: int | None = None,
    max_steps: int = MAX_STEPS,
    tol: float = STEP_TOL,
    internal_batch_size: int = 32,
    blur_sigma: float | None = None,
    mean_pixel: Sequence[float] | None = None,
) -> list[Attribution]:
    """LayerIntegratedGradients of the per-location similarity target at the feature layer.

    The scalar is s(x) = mean_l cos(pathway(f_l(x)), r) over the ``encoder.features``
    locations (pathway and reference r as in the ``similarity`` method). Captum integrates
    the feature layer from its activations on the baseline image to those on the input; the
    channel-summed layer map is in ``extras["layer_map"]``, upsampled in ``values``.

    Args:
        encoder: Image encoder.
        target: Target built for these inputs.
        inputs: Pixels ``[B, 3, S, S]`` in ``[0, 1]``.
        item_ids: Raw item id per input.
        baseline: Image whose feature-layer activations start the path (see ``ig``).
        n_steps: Integration steps; ``None`` doubles from 16 until the tolerance is met.
        max_steps: Cap of the adaptive schedule.
        tol: Relative completeness error the adaptive schedule aims for.
        internal_batch_size: Most examples in one forward/backward pass.
        blur_sigma: σ of the ``"blur"`` baseline.
        mean_pixel: Mean colour for the ``"mean"`` baseline.

    Returns:
        One attribution per input, completeness error (at the layer) in ``delta``;
        ``params["target_value"]`` is s(x).
    """
    check_schedule(n_steps, max_steps, tol)
    ibs = _check_ibs(internal_batch_size)
    ca = _captum()
    pixels, ids, base = _image_setup(encoder, inputs, item_ids, baseline, blur_sigma, mean_pixel)
    f = _location_similarity(encoder, target)
    layer = cast(nn.Module, encoder.feature_layer)
    rows_all = torch.arange(pixels.shape[0], device=pixels.device)

    def run(idx: torch.Tensor, steps: int
            ) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray]:
        x, b, rows = pixels[idx], base[idx], rows_all[idx]
        grids = []
        for s in _chunks(x.shape[0], ibs):
            a = ca.LayerIntegratedGradients(f, layer).attribute(
                x[s], baselines=b[s], additional_forward_args=(rows[s],), n_steps=steps,
                internal_batch_size=ibs).detach()
            grids.append(_layer_grid(a, a.shape[0], encoder, x[s]).sum(1))
        g = torch.cat(grids)
        fx, fb = _values(f, x, rows, batch=ibs), _values(f, b, rows, batch=ibs)
        d = g.flatten(1).sum(1).double().cpu().numpy() - (fx - fb)
        return g, d, fx, fb

    layer_map, delta, fx, fb, used = adaptive_steps(run, len(ids), n_steps, max_steps, tol,
                                               pixels.device)
    params = {"method": "ig_similarity", "baseline": _baseline_name(baseline),
              "blur_sigma": blur_sigma, "layer": _layer_name(encoder, layer),
              "encoder": getattr(encoder, "key", "")}
    res = _image_results(pixels, _upsample(layer_map, tuple(pixels.shape[-2:])), ids,
                         "ig_similarity", target, params, delta=delta, fx=fx, fb=fb,
                         extras={"layer_map": layer_map})
    return finish_steps(res, used, delta, fx, fb, tol, n_steps is None, "ig_similarity")
