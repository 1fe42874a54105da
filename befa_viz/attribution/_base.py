"""The attribution-method registry, :func:`attribute`, and the helpers the method families share.

The methods themselves live in one module per family (:mod:`~befa_viz.attribution.ig_family`,
:mod:`~befa_viz.attribution.gradcam`, :mod:`~befa_viz.attribution.occlusion`,
:mod:`~befa_viz.attribution.similarity`, :mod:`~befa_viz.attribution.controls`, and the IG
variants of :mod:`~befa_viz.attribution.ig`); :mod:`befa_viz.attribution.methods` imports them
all (registering them) and is the public entry point.
"""

from __future__ import annotations

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
from torch import nn

from befa_viz.attribution._blur import gaussian_blur
from befa_viz.attribution.result import Attribution
from befa_viz.attribution.targets import AttributionTarget, _eval_mode
from befa_viz.errors import ConfigError, MissingDependencyError
from befa_viz.registry import Registry, closest

if TYPE_CHECKING:  # encoders are duck-typed nn.Modules here; casts name what a branch needs
    from befa_viz.encoders.base import ImageEncoder

__all__ = ["ATTRIBUTIONS", "DELTA_WARN_RATIO", "AttributionMethod", "attribute", "make_baseline", "method_modalities", "method_options"]


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
    return gaussian_blur(pixels, sigma)  # separable: 15-40x faster than 2-D (σ S/16-S/4)


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


def _image_setup(encoder: nn.Module, inputs: Any, item_ids: Sequence[str] | None,
                 baseline: str | torch.Tensor, blur_sigma: float | None,
                 mean_pixel: Sequence[float] | None
                 ) -> tuple[torch.Tensor, list[str], torch.Tensor]:
    """Checked pixels, item ids and the baseline images for a path method."""
    pixels = _check_pixels(inputs, encoder)
    ids = _ids(item_ids, pixels.shape[0])
    base = make_baseline(pixels, baseline, blur_sigma=blur_sigma, mean_pixel=mean_pixel)
    return pixels, ids, base


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


def _layer_name(encoder: nn.Module, layer: nn.Module) -> str:
    for name, m in encoder.named_modules():
        if m is layer:
            return name or type(layer).__name__
    return type(layer).__name__
