"""Attribution methods: *how* a target is explained, registered in :data:`ATTRIBUTIONS`.

Every method has the same shape::

    method(encoder, target, inputs, *, item_ids=None, <method options>) -> list[Attribution]

* ``encoder`` — an :class:`~befa_viz.encoders.ImageEncoder` or
  :class:`~befa_viz.encoders.TextEncoder` (frozen; put in eval mode for the call);
* ``target`` — an :class:`~befa_viz.attribution.targets.AttributionTarget` built for exactly
  these items (row ``b`` of the target belongs to input ``b``);
* ``inputs`` — images: pixels ``[B, 3, S, S]`` in ``[0, 1]`` as given by
  ``encoder.load_pixels``; text: the mapping returned by ``encoder.tokenize`` (``input_ids`` and
  ``attention_mask``, ``[B, T]``);
* the result — one :class:`Attribution` per input, in order. Image maps are ``[S, S]``, signed,
  summed over colour channels (magnitude normalisation is left to the consumer). Text maps hold
  one signed score per *word* (see :func:`merge_tokens`); the per-token scores are in
  ``extras["token_values"]`` and the tokens in ``params["raw_tokens"]``.

Methods (``I`` = image, ``T`` = text):

==============  ====  ========================================================================
``ig``          I T   Captum IntegratedGradients over pixels (text: over token embeddings,
                      through ``encoder.forward_embeddings``). Completeness error in ``delta``.
``ig_smooth``   I T   Captum NoiseTunnel (SmoothGrad) averaging IG over noisy copies.
``layer_ig``    I T   Captum LayerIntegratedGradients at ``encoder.feature_layer`` (image; the
                      layer map is upsampled bilinearly, raw in ``extras["layer_map"]``) or at
                      ``encoder.embedding_layer`` (text; equals ``ig`` up to quadrature).
``gradcam``     I     Captum LayerGradCam at ``encoder.feature_layer``, upsampled.
``occlusion``   I T   Captum Occlusion with the chosen baseline in the window (text: each
                      token replaced by the pad token in turn).
``similarity``  I     Paper-style map: per feature-map location, cosine of the location's
                      feature (through the target's content pathway when the feature map lives
                      in the encoder's output space) with the target's reference vector.
``input_x_blur`` I T  Model-free control: |x − blur(x)| summed over channels (text: the
                      distance ‖e_t − e_pad‖ of each token embedding to the pad embedding).
==============  ====  ========================================================================

IG variants in :mod:`befa_viz.attribution.ig` (images): ``ig_expected`` (GradientShap /
expected gradients over a distribution of baselines), ``ig_blur_path`` (Blur IG along the
scale space), ``ig_region`` (IG summed over SLIC superpixels) and ``ig_similarity``
(LayerIntegratedGradients of the per-location similarity target). They and ``layer_ig`` take
``n_steps=None`` to choose the step count per item by the completeness error
(:mod:`befa_viz.attribution._steps`). Feature vectors without raw media (e.g. MMRec audio):
:mod:`befa_viz.attribution.features`.

Baselines (path methods and occlusion): ``"black"`` (zeros), ``"white"`` (ones), ``"blur"``
(Gaussian blur of the input, σ = ``blur_sigma`` pixels, default S/16), ``"mean"`` (the dataset
mean pixel, ``mean_pixel=(r, g, b)`` in ``[0, 1]``) or an explicit tensor shaped like the
inputs. Text uses ``"pad"``: every attended token's embedding replaced by the pad token's,
special tokens (CLS/SEP, start/end of text) kept as they are, so they get zero attribution.

Batching: items and integration steps are evaluated together; ``internal_batch_size`` bounds
the number of examples in one forward/backward pass (items are split into chunks of at most
``internal_batch_size`` and each chunk's steps are batched up to that bound).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from befa_viz.attribution._steps import (
    DEFAULT_N_STEPS,
    MAX_STEPS,
    STEP_TOL,
    adaptive_steps,
    check_schedule,
    finish_steps,
)
from befa_viz.attribution.result import Attribution
from befa_viz.attribution.targets import AttributionTarget, _eval_mode
from befa_viz.errors import ConfigError, MissingDependencyError
from befa_viz.registry import Registry, closest

if TYPE_CHECKING:  # encoders are duck-typed nn.Modules here; casts name what a branch needs
    from befa_viz.encoders.base import ImageEncoder, TextEncoder

__all__ = [
    "ATTRIBUTIONS",
    "DELTA_WARN_RATIO",
    "AttributionMethod",
    "attribute",
    "make_baseline",
    "merge_tokens",
    "method_modalities",
    "method_options",
    "special_token_ids",
]

#: Methods by name; each is ``fn(encoder, target, inputs, *, item_ids=None, **options)``.
ATTRIBUTIONS: Registry[list[Attribution]] = Registry("attribution method")

#: IG warns when |delta| exceeds this share of |f(x) − f(baseline)|.
DELTA_WARN_RATIO = 0.1

AttributionMethod = Callable[..., list[Attribution]]
_MODALITIES: dict[str, tuple[str, ...]] = {}


def _captum() -> Any:
    try:
        import captum.attr as ca
    except ImportError as e:  # pragma: no cover - captum is a core dependency
        raise MissingDependencyError(
            "captum is not installed. Install with: pip install befa-viz (captum is a core "
            "dependency)."
        ) from e
    return ca


def method_modalities(name: str) -> tuple[str, ...]:
    """Modalities (``"image"``, ``"text"``) a registered method supports."""
    ATTRIBUTIONS.get(name)
    return _MODALITIES[name]


def method_options(name: str) -> dict[str, Any]:
    """Options a registered method accepts, with their defaults.

    Example:
        >>> method_options("gradcam")
        {'internal_batch_size': 32, 'relu': True}
    """
    fn = ATTRIBUTIONS.get(name)
    return {p: v.default for p, v in inspect.signature(fn).parameters.items()
            if v.kind is inspect.Parameter.KEYWORD_ONLY and p != "item_ids"}


def _register(name: str, modalities: tuple[str, ...]) -> Callable[[AttributionMethod],
                                                                  AttributionMethod]:
    """Register a method; the wrapper checks the modality and runs it in eval mode."""

    def deco(fn: AttributionMethod) -> AttributionMethod:
        @functools.wraps(fn)
        def wrapper(encoder: nn.Module, target: AttributionTarget, inputs: Any, *,
                    item_ids: Sequence[str] | None = None, **options: Any) -> list[Attribution]:
            modality = getattr(encoder, "modality", "")
            if modality not in modalities:
                ok = [n for n, m in _MODALITIES.items() if modality in m]
                raise ConfigError(
                    f"Attribution method {name!r} supports {', '.join(modalities)} encoders, "
                    f"not {modality!r}. Methods for {modality}: {', '.join(sorted(ok))}."
                )
            if target.n_items is not None:
                b = _batch_size(inputs)
                if b != target.n_items:
                    raise ConfigError(
                        f"Target {target.name!r} was built for {target.n_items} items but "
                        f"{b} inputs were given; build the target for exactly these items."
                    )
            with _eval_mode(encoder, target):
                return fn(encoder, target, inputs, item_ids=item_ids, **options)

        _MODALITIES[name] = modalities
        ATTRIBUTIONS.register(name)(wrapper)
        return wrapper

    return deco


def attribute(
    method: str,
    encoder: nn.Module,
    target: AttributionTarget,
    inputs: torch.Tensor | Mapping[str, torch.Tensor],
    *,
    item_ids: Sequence[str] | None = None,
    **options: Any,
) -> list[Attribution]:
    """Run a registered method after checking its options.

    Args:
        method: Name in :data:`ATTRIBUTIONS`.
        encoder: Image or text encoder.
        target: Target built for these inputs' items.
        inputs: Pixels ``[B, 3, S, S]`` in ``[0, 1]`` or the ``encoder.tokenize`` mapping.
        item_ids: Raw item id per input (default ``"0"``, ``"1"``, ...).
        **options: Method options (``n_steps``, ``baseline``, ``internal_batch_size``, ...).

    Returns:
        One attribution per input.

    Raises:
        UnknownNameError: If the method is unknown.
        ConfigError: If an option is unknown to the method or out of range.

    Example:
        >>> from befa_viz.testing import tiny_image_encoder
        >>> from befa_viz.attribution.targets import RandomDirectionTarget
        >>> enc = tiny_image_encoder(dim=8)
        >>> out = attribute("ig", enc, RandomDirectionTarget(8), torch.rand(2, 3, 32, 32),
        ...                 n_steps=32)
        >>> len(out), out[0].values.shape
        (2, (32, 32))
    """
    fn = ATTRIBUTIONS.get(method)
    accepted = list(method_options(method))
    for key in options:
        if key not in accepted:
            near = closest(key, accepted)
            hint = f" Did you mean {near[0]!r}?" if near else ""
            raise ConfigError(
                f"Attribution method {method!r} has no option {key!r}.{hint} "
                f"Options: {', '.join(accepted)}."
            )
    return fn(encoder, target, inputs, item_ids=item_ids, **options)


# -- shared helpers -----------------------------------------------------------------------------
def _batch_size(inputs: Any) -> int:
    if isinstance(inputs, torch.Tensor):
        return int(inputs.shape[0])
    return int(inputs["input_ids"].shape[0])


def _ids(item_ids: Sequence[str] | None, n: int) -> list[str]:
    if item_ids is None:
        return [str(i) for i in range(n)]
    ids = [str(i) for i in item_ids]
    if len(ids) != n:
        raise ConfigError(f"item_ids has {len(ids)} entries for {n} inputs.")
    return ids


def _check_pixels(pixels: Any, encoder: nn.Module) -> torch.Tensor:
    if not isinstance(pixels, torch.Tensor) or pixels.ndim != 4 or pixels.shape[1] != 3:
        shape = tuple(pixels.shape) if isinstance(pixels, torch.Tensor) else type(pixels).__name__
        raise ConfigError(
            f"Image methods take pixels [B, 3, S, S] in [0, 1] (encoder.load_pixels); got {shape}."
        )
    return pixels.to(getattr(encoder, "device", pixels.device)).float()


def _check_steps(n_steps: int) -> None:
    if int(n_steps) < 1:
        raise ConfigError(f"n_steps must be >= 1; got {n_steps}.")


def _check_ibs(internal_batch_size: int) -> int:
    if int(internal_batch_size) < 1:
        raise ConfigError(f"internal_batch_size must be >= 1; got {internal_batch_size}.")
    return int(internal_batch_size)


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _blur(pixels: torch.Tensor, sigma: float | None) -> torch.Tensor:
    from befa_viz.attribution._blur import gaussian_blur  # separable: 15-40x faster (σ S/16-S/4)

    return gaussian_blur(pixels, sigma)


def make_baseline(
    pixels: torch.Tensor,
    baseline: str | torch.Tensor = "black",
    *,
    blur_sigma: float | None = None,
    mean_pixel: Sequence[float] | None = None,
) -> torch.Tensor:
    """The baseline image(s) for pixels ``[B, 3, S, S]`` in ``[0, 1]``.

    Args:
        pixels: Input pixels.
        baseline: ``"black"``, ``"white"``, ``"blur"``, ``"mean"`` or a tensor shaped like
            ``pixels`` (or one image ``[3, S, S]``).
        blur_sigma: Gaussian σ in pixels for ``"blur"`` (default ``S / 16``).
        mean_pixel: Dataset mean colour in ``[0, 1]`` for ``"mean"``.

    Returns:
        Tensor shaped like ``pixels``.

    Example:
        >>> make_baseline(torch.rand(1, 3, 8, 8), "white").mean().item()
        1.0
    """
    if isinstance(baseline, torch.Tensor):
        b = baseline.to(pixels)
        if b.ndim == 3:
            b = b.unsqueeze(0)
        return b.expand_as(pixels).clone()
    if baseline == "black":
        return torch.zeros_like(pixels)
    if baseline == "white":
        return torch.ones_like(pixels)
    if baseline == "blur":
        return _blur(pixels, blur_sigma)
    if baseline == "mean":
        if mean_pixel is None or len(mean_pixel) != 3:
            raise ConfigError(
                "Baseline 'mean' needs the dataset's mean pixel: mean_pixel=(r, g, b) in [0, 1]."
            )
        m = torch.tensor([float(v) for v in mean_pixel], dtype=pixels.dtype, device=pixels.device)
        return m.view(1, 3, 1, 1).expand_as(pixels).clone()
    raise ConfigError(
        f"Unknown image baseline {baseline!r}; accepted: 'black', 'white', 'blur', 'mean' or a "
        f"tensor shaped like the pixels."
    )


def _baseline_name(baseline: str | torch.Tensor) -> str:
    return baseline if isinstance(baseline, str) else "tensor"


def _image_forward(encoder: nn.Module, target: AttributionTarget
                   ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def f(pixels: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return target(encoder(pixels), rows)

    return f


def _to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """``[3, S, S]`` in [0, 1] → ``uint8 [S, S, 3]``."""
    return (pixels.detach().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()


def _delta(attr: torch.Tensor, fx: np.ndarray, fb: np.ndarray) -> np.ndarray:
    """Completeness error Σ attr − (f(x) − f(b)) per input (Captum's convergence delta)."""
    return attr.detach().flatten(1).sum(1).double().cpu().numpy() - (fx - fb)


def _warn_delta(delta: np.ndarray, fx: np.ndarray, fb: np.ndarray, ids: list[str], name: str
                ) -> None:
    # Relative to the target's change; when input and baseline score alike, relative to the
    # target's size instead (a constant input has f(x) = f(b) and a ~1e-7 float error).
    scale = np.maximum(np.abs(fx - fb), np.maximum(1e-3 * np.maximum(np.abs(fx), np.abs(fb)),
                                                   1e-6))
    bad = np.flatnonzero(np.abs(delta) > DELTA_WARN_RATIO * scale)
    if bad.size:
        i = int(bad[0])
        warnings.warn(
            f"{name}: completeness error |delta| = {abs(delta[i]):.3g} is "
            f"{abs(delta[i]) / scale[i]:.0%} of |f(x) - f(baseline)| = {scale[i]:.3g} for item "
            f"{ids[i]!r} ({bad.size} of {len(ids)} items above {DELTA_WARN_RATIO:.0%}); "
            f"increase n_steps.", stacklevel=_outside_stacklevel(),
        )


def _outside_stacklevel() -> int:
    """``stacklevel`` of the first frame outside befa_viz.attribution (the user's call)."""
    pkg = os.path.dirname(os.path.abspath(__file__))
    frame: FrameType | None = sys._getframe(1)  # the frame calling warnings.warn
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(pkg):
        frame, level = frame.f_back, level + 1
    return level


@torch.no_grad()
def _values(f: Callable[..., torch.Tensor], x: torch.Tensor, *args: torch.Tensor,
            batch: int) -> np.ndarray:
    n = x.shape[0]
    out = [f(x[s], *[a[s] for a in args]) for s in _chunks(n, batch)]
    return torch.cat(out).double().cpu().numpy()


def _image_results(
    pixels: torch.Tensor, maps: torch.Tensor, ids: list[str], method: str,
    target: AttributionTarget, params: dict[str, Any], *, delta: np.ndarray | None = None,
    fx: np.ndarray | None = None, fb: np.ndarray | None = None,
    extras: Mapping[str, torch.Tensor] | None = None,
) -> list[Attribution]:
    maps_np = maps.detach().float().cpu().numpy()
    out = []
    tparams = target.describe()
    for b, iid in enumerate(ids):
        p = {**params, **tparams}
        if isinstance(p.get("item_idx"), list):
            p["item_idx"] = p["item_idx"][b]
        if isinstance(p.get("user_idx"), list):
            p["user_idx"] = p["user_idx"][b]
        if isinstance(p.get("n_users"), list):
            p["n_users"] = p["n_users"][b]
        if fx is not None and fb is not None:
            p["target_value"], p["baseline_value"] = float(fx[b]), float(fb[b])
        ex = {k: v[b].detach().float().cpu().numpy() for k, v in (extras or {}).items()}
        out.append(Attribution(
            item_id=iid, modality="image", method=method, target=target.name,
            values=maps_np[b], image=_to_uint8(pixels[b]),
            delta=None if delta is None else float(delta[b]), params=p, extras=ex,
        ))
    return out


def _completeness(f: Callable[..., torch.Tensor], x: torch.Tensor, b: torch.Tensor,
                  *args: torch.Tensor, attr: torch.Tensor, names: list[str], method: str,
                  ibs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """f(x), f(baseline) and the completeness error of ``attr`` (warned about when large)."""
    fx, fb = _values(f, x, *args, batch=ibs), _values(f, b, *args, batch=ibs)
    delta = _delta(attr, fx, fb)
    _warn_delta(delta, fx, fb, names, method)
    return delta, fx, fb


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


def _image_setup(encoder: nn.Module, inputs: Any, item_ids: Sequence[str] | None,
                 baseline: str | torch.Tensor, blur_sigma: float | None,
                 mean_pixel: Sequence[float] | None
                 ) -> tuple[torch.Tensor, list[str], torch.Tensor]:
    """Checked pixels, item ids and the baseline images for a path method."""
    pixels = _check_pixels(inputs, encoder)
    ids = _ids(item_ids, pixels.shape[0])
    base = make_baseline(pixels, baseline, blur_sigma=blur_sigma, mean_pixel=mean_pixel)
    return pixels, ids, base


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


# -- image: layer methods -----------------------------------------------------------------------
def _grid_hw(encoder: nn.Module, pixels: torch.Tensor) -> tuple[int, int]:
    with torch.no_grad():
        fm = cast("ImageEncoder", encoder).features(pixels[:1])
    return int(fm.shape[-2]), int(fm.shape[-1])


def _layer_grid(t: torch.Tensor, batch: int, encoder: nn.Module, pixels: torch.Tensor
                ) -> torch.Tensor:
    """A feature-layer tensor as a spatial grid ``[B, C, h, w]`` (CNN maps or ViT tokens).

    Uses the encoder's ``layer_to_map`` when it has one (ViT towers drop their class token
    there); otherwise batch-first tokens ``[B, T, C]`` keep their last h·w tokens, h×w being the
    grid of ``encoder.features``.
    """
    to_map = getattr(encoder, "layer_to_map", None)
    if to_map is not None:
        g = to_map(t)
        if g.ndim == 4 and g.shape[0] == batch:
            return g
    if t.ndim == 4 and t.shape[0] == batch:
        return t
    if t.ndim == 3 and t.shape[0] == batch:
        h, w = _grid_hw(encoder, pixels)
        n = h * w
        if t.shape[1] < n:
            raise ConfigError(
                f"Feature layer output has {t.shape[1]} tokens but the feature map is {h}x{w}."
            )
        # Patch tokens come last (after CLS/register tokens), in row-major grid order.
        return t[:, t.shape[1] - n:, :].reshape(batch, h, w, -1).permute(0, 3, 1, 2)
    raise ConfigError(
        f"Cannot read a spatial map from feature layer output of shape {tuple(t.shape)} for a "
        f"batch of {batch}; expected [B, C, h, w] or batch-first tokens [B, T, C]."
    )


def _upsample(maps: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """``[B, h, w]`` → ``[B, S, S]`` bilinear (Captum's LayerAttribution.interpolate)."""
    ca = _captum()
    return ca.LayerAttribution.interpolate(maps.unsqueeze(1), size, "bilinear").squeeze(1)


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


def _layer_name(encoder: nn.Module, layer: nn.Module) -> str:
    for name, m in encoder.named_modules():
        if m is layer:
            return name or type(layer).__name__
    return type(layer).__name__


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


# -- text -------------------------------------------------------------------------------------
def special_token_ids(encoder: nn.Module) -> set[int]:
    """Token ids kept as they are in the pad baseline (CLS/SEP, start/end of text)."""
    ids = getattr(encoder, "special_token_ids", None)
    if ids is None:
        tok = getattr(encoder, "tokenizer", None)
        ids = getattr(tok, "all_special_ids", None) or []
    pad = int(getattr(encoder, "pad_token_id", 0))
    return {int(i) for i in ids} - {pad}


def _text_inputs(encoder: nn.Module, inputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(inputs, Mapping) or "input_ids" not in inputs:
        raise ConfigError(
            "Text methods take the mapping returned by encoder.tokenize(texts) (input_ids and "
            f"attention_mask); got {type(inputs).__name__}."
        )
    dev = getattr(encoder, "device", torch.device("cpu"))
    ids = inputs["input_ids"].to(dev).long()
    mask = inputs.get("attention_mask")
    mask = torch.ones_like(ids) if mask is None else mask.to(dev)
    return ids, mask


def _text_baseline_ids(encoder: nn.Module, ids: torch.Tensor, baseline: Any) -> torch.Tensor:
    if isinstance(baseline, torch.Tensor):
        return baseline.to(ids).expand_as(ids).clone()
    if baseline not in ("pad", "black"):
        raise ConfigError(
            f"Unknown text baseline {baseline!r}; accepted: 'pad' (pad-token embeddings, special "
            f"tokens kept) or a tensor of token ids shaped like input_ids."
        )
    pad = int(getattr(encoder, "pad_token_id", 0))
    keep = torch.zeros_like(ids, dtype=torch.bool)
    for s in special_token_ids(encoder):
        keep |= ids == s
    return torch.where(keep, ids, torch.full_like(ids, pad))


def _text_setup(encoder: nn.Module, inputs: Any, item_ids: Sequence[str] | None, baseline: Any
                ) -> tuple[torch.Tensor, torch.Tensor, list[str], torch.Tensor]:
    """Token ids, attention mask, item ids and baseline token ids for a text method."""
    ids, mask = _text_inputs(encoder, inputs)
    names = _ids(item_ids, ids.shape[0])
    return ids, mask, names, _text_baseline_ids(encoder, ids, baseline)


def _special_mask(encoder: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    keep = torch.zeros_like(ids, dtype=torch.bool)
    for s in special_token_ids(encoder):
        keep |= ids == s
    return keep


def _text_forward_embeds(encoder: nn.Module, target: AttributionTarget
                         ) -> Callable[..., torch.Tensor]:
    def f(embeds: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return target(cast("TextEncoder", encoder).forward_embeddings(embeds, mask), rows)

    return f


def _text_forward_ids(encoder: nn.Module, target: AttributionTarget
                      ) -> Callable[..., torch.Tensor]:
    def f(ids: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return target(encoder(ids, mask), rows)

    return f


def merge_tokens(tokens: Sequence[str], values: np.ndarray | Sequence[float],
                 special: Sequence[bool] | None = None) -> tuple[list[str], np.ndarray, list[bool]]:
    """Merge sub-word tokens into words, summing their scores.

    Rules (detected per sequence): if any token ends with ``</w>`` (open_clip/CLIP BPE), a word
    runs up to and including the next token ending with ``</w>``, which is stripped; else if any
    token starts with ``▁`` or ``Ġ`` (SentencePiece/byte-level BPE), such a token starts a new
    word and the others continue the current one; else (WordPiece) a token starting with ``##``
    continues the current word and any other token starts one. Special tokens always stand
    alone. Scores are summed, so the total is unchanged.

    Args:
        tokens: Token strings of one sequence (padding already removed).
        values: One score per token.
        special: Whether each token is special (CLS/SEP, start/end of text).

    Returns:
        Words, their summed scores and whether each word is a special token.

    Example:
        >>> merge_tokens(["[CLS]", "play", "##ful", "cat", "[SEP]"], [0, 1, 2, 3, 0],
        ...              [True, False, False, False, True])[:2]
        (['[CLS]', 'playful', 'cat', '[SEP]'], array([0., 3., 3., 0.]))
        >>> merge_tokens(["play", "ful</w>", "cat</w>"], [1, 2, 3])[:2]
        (['playful', 'cat'], array([3., 3.]))
    """
    vals = np.asarray(values, dtype=np.float64)
    spec = list(special) if special is not None else [False] * len(tokens)
    if not (len(tokens) == len(vals) == len(spec)):
        raise ValueError(f"{len(tokens)} tokens, {len(vals)} values, {len(spec)} special flags.")
    bpe_end = any(t.endswith("</w>") for t in tokens)
    sp_start = not bpe_end and any(t[:1] in ("▁", "Ġ") for t in tokens)
    words: list[str] = []
    scores: list[float] = []
    flags: list[bool] = []
    open_word = False  # the last word can still grow
    for tok, v, s in zip(tokens, vals, spec, strict=True):
        if s:
            words.append(tok)
            scores.append(float(v))
            flags.append(True)
            open_word = False
            continue
        if bpe_end:
            piece, ends = (tok[:-4], True) if tok.endswith("</w>") else (tok, False)
            cont = open_word
        elif sp_start:
            starts = tok[:1] in ("▁", "Ġ")
            piece, ends = (tok[1:] if starts else tok), False
            cont = open_word and not starts
        else:
            starts = not tok.startswith("##")
            piece, ends = (tok if starts else tok[2:]), False
            cont = open_word and not starts
        if cont:
            words[-1] += piece
            scores[-1] += float(v)
        else:
            words.append(piece)
            scores.append(float(v))
            flags.append(False)
        open_word = not ends
    return words, np.asarray(scores, dtype=np.float64), flags


def _token_strings(encoder: nn.Module, ids: torch.Tensor) -> list[list[str]]:
    """Token strings with their sub-word markers, for :func:`merge_tokens`.

    ``encoder.tokens`` gives readable tokens; open_clip's BPE tokenizer marks word ends with
    ``</w>``, which readable tokens drop, so for it the raw vocabulary entries are decoded here.
    """
    tok = getattr(encoder, "tokenizer", None)
    readable = cast("TextEncoder", encoder).tokens(ids)
    if tok is None or not (hasattr(tok, "decoder") and hasattr(tok, "byte_decoder")):
        return readable
    out = []
    for row, read in zip(ids.tolist(), readable, strict=True):
        words = []
        for t, r in zip(row, read, strict=True):
            raw = tok.decoder.get(t)
            if raw is None:
                words.append(r)
                continue
            text = bytearray([tok.byte_decoder.get(c, 63) for c in raw]).decode(
                "utf-8", errors="replace")
            words.append(text)
        out.append(words)
    return out


def _text_results(encoder: nn.Module, target: AttributionTarget, ids: torch.Tensor,
                  mask: torch.Tensor, token_values: torch.Tensor, item_ids: list[str],
                  method: str, params: dict[str, Any], *, delta: np.ndarray | None = None,
                  fx: np.ndarray | None = None, fb: np.ndarray | None = None
                  ) -> list[Attribution]:
    toks = _token_strings(encoder, ids.cpu())
    special = _special_mask(encoder, ids).cpu().numpy()
    tv = token_values.detach().double().cpu().numpy()
    m = mask.bool().cpu().numpy()
    tparams = target.describe()
    out = []
    for b, iid in enumerate(item_ids):
        keep = np.flatnonzero(m[b])
        raw = [toks[b][j] for j in keep]
        words, scores, flags = merge_tokens(raw, tv[b, keep], special[b, keep].tolist())
        p = {**params, **tparams, "raw_tokens": raw, "special": flags}
        for k in ("item_idx", "user_idx", "n_users"):
            if isinstance(p.get(k), list):
                p[k] = p[k][b]
        if fx is not None and fb is not None:
            p["target_value"], p["baseline_value"] = float(fx[b]), float(fb[b])
        out.append(Attribution(
            item_id=iid, modality="text", method=method, target=target.name,
            values=scores.astype(np.float32), tokens=words,
            delta=None if delta is None else float(delta[b]), params=p,
            extras={"token_values": tv[b, keep].astype(np.float32)},
        ))
    return out


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


def _text_input_control(encoder: nn.Module, target: AttributionTarget, inputs: Any,
                        item_ids: Sequence[str] | None) -> list[Attribution]:
    ids, mask, names, base_ids = _text_setup(encoder, inputs, item_ids, "pad")
    with torch.no_grad():
        emb_layer = cast("TextEncoder", encoder).embedding_layer
        e, b = emb_layer(ids), emb_layer(base_ids)
    tv = (e - b).norm(dim=-1) * mask
    params = {"method": "input_x_blur", "baseline": "pad", "encoder": getattr(encoder, "key", "")}
    return _text_results(encoder, target, ids, mask, tv, names, "input_x_blur", params)
