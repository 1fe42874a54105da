"""Magnitude maps and colour scales shared by the image and text figures.

Every figure shows attribution *magnitudes* ``|values|`` (pixel signs cancel about half and half,
see DESIGN.md). By default each map is divided by its own mean magnitude (``normalise="mean"``),
so 1 means "as much as a uniform map would put here" and maps of different targets (whose raw
units differ) become comparable. The colour scale runs from 0 to ``vmax``; ``vmax`` is the given
percentile of the *reference* values (one map, or the union of a pair's maps for a shared scale)
and larger values saturate. Every figure records the scale of each panel; read it back with
:func:`figure_scales`.

Padded inputs. An image attribution whose ``params`` carry a ``content_box`` (an encoder in
``"pad"`` mode placed the photo there, see :mod:`befa_viz.encoders.base`) is drawn on the photo
alone: image and map are cropped to the box (the pad is never shown, and never enters the
normalising mean or the percentile scale) and resampled to the photo's own aspect
(``params["source_size"]``, else the box's), so a 360×540 packshot is drawn upright at 2:3.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from befa_viz.errors import ConfigError, DataError

if TYPE_CHECKING:  # viz never imports the attribution package (and torch) at run time
    from matplotlib.figure import Figure

    from befa_viz.attribution.result import Attribution

__all__ = ["Scale", "Normalise", "display_shape", "figure_scales", "magnitude_map",
           "shared_vmax"]

Normalise = Literal["mean", "none"]
_NORMALISE = ("mean", "none")

_SCALES: weakref.WeakKeyDictionary[Any, list[Scale]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Scale:
    """The colour scale of one panel of a figure.

    Attributes:
        panel: Panel title (e.g. ``"with adapter"``).
        vmax: Value drawn in the top colour; larger values saturate. Signed text scales run
            from ``-vmax`` to ``vmax``.
        percentile: Percentile of the reference that gave ``vmax``; ``None`` when the caller
            passed ``vmax``.
        shared: Whether the reference was the union of several maps.
        normalise: ``"mean"`` (each map divided by its mean magnitude) or ``"none"`` (raw).
        signed: Whether colours show the sign (text only).
        modality: ``"image"`` or ``"text"``.
    """

    panel: str
    vmax: float
    percentile: float | None
    shared: bool
    normalise: str
    signed: bool = False
    modality: str = "image"

    def describe(self) -> str:
        """One caption sentence stating the normalisation, e.g. for a figure legend."""
        unit, maps = ("pixels", "map") if self.modality == "image" else ("tokens", "text")
        what = f"|attribution| ÷ its mean over the {unit} (1 = uniform)" \
            if self.normalise == "mean" else "|attribution| in the target's units"
        ref = f"both {maps}s of the pair" if self.shared else f"each {maps}"
        if self.percentile is None:
            clip = f"fixed vmax {self.vmax:.3g}"
        elif self.percentile == 100:
            clip = f"scaled to the maximum of {ref} (vmax {self.vmax:.3g})"
        else:
            clip = f"clipped at the {_ordinal(self.percentile)} percentile of {ref} " \
                   f"(vmax {self.vmax:.3g})"
        sign = "; red = positive, blue = negative" if self.signed else ""
        return f"{what}, {clip}{sign}"


def _ordinal(p: float) -> str:
    if float(p).is_integer():
        n = int(p)
        suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
        return f"{n}{suffix}"
    return f"{p:g}th"


def figure_scales(fig: Figure) -> list[Scale]:
    """Colour scales of a figure made by :mod:`befa_viz.viz`, one per heatmap panel in order.

    Args:
        fig: A figure returned by ``heatmap_figure``, ``pair_figure``, ``grid_figure``,
            ``token_figure``, ``token_pair_figure`` or ``item_report_figure``.

    Returns:
        The scales (empty for any other figure).
    """
    return list(_SCALES.get(fig, []))


def _record(fig: Figure, scales: Iterable[Scale]) -> None:
    _SCALES.setdefault(fig, []).extend(scales)


def _is_attribution(obj: Any) -> bool:
    return all(hasattr(obj, a) for a in ("values", "modality", "method", "target", "item_id"))


def _check(att: Any, modality: str | None = None) -> np.ndarray:
    """Validate an Attribution and return its values as a finite float64 array."""
    if not _is_attribution(att):
        raise DataError(f"Expected a befa_viz Attribution, got {type(att).__name__}. "
                        "Build one with befa_viz.attribution or Attribution.load(path).")
    if modality is not None and att.modality != modality:
        raise DataError(f"Attribution of item '{att.item_id}' has modality '{att.modality}', "
                        f"but this figure needs '{modality}'.")
    values = np.asarray(att.values, dtype=np.float64)
    if att.modality == "image" and values.ndim != 2:
        raise DataError(f"Image attribution of item '{att.item_id}' has values of shape "
                        f"{values.shape}; expected [H, W] (sum the channels first).")
    if att.modality != "image" and values.ndim != 1:
        raise DataError(f"Text attribution of item '{att.item_id}' has values of shape "
                        f"{values.shape}; expected [T], one score per token.")
    if values.size == 0:
        raise DataError(f"Attribution of item '{att.item_id}' is empty.")
    if not np.isfinite(values).all():
        raise DataError(f"Attribution of item '{att.item_id}' ({att.method}, {att.target}) "
                        f"contains {int((~np.isfinite(values)).sum())} NaN/inf values.")
    if att.modality != "image":
        tokens = att.tokens
        if tokens is None or len(tokens) != values.shape[0]:
            n = "no" if tokens is None else len(tokens)
            raise DataError(f"Text attribution of item '{att.item_id}' has {values.shape[0]} "
                            f"scores but {n} tokens; they must match one to one.")
    return values


def _check_normalise(normalise: str) -> None:
    if normalise not in _NORMALISE:
        raise ConfigError(f"normalise={normalise!r} is not supported; use one of {_NORMALISE}.")


def _check_percentile(percentile: float) -> None:
    if not (0 < float(percentile) <= 100):
        raise ConfigError(f"percentile={percentile} must be in (0, 100].")


def _check_vmax(vmax: float | None) -> None:
    if vmax is not None and not (np.isfinite(vmax) and vmax > 0):
        raise ConfigError(f"vmax={vmax} must be a finite positive number (or None).")


def _content_box(att: Attribution, frame: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """``params["content_box"]`` (given in the values' pixels) in a frame of shape ``frame``."""
    box = att.params.get("content_box") if att.modality == "image" else None
    if box is None:
        return None
    vh, vw = np.asarray(att.values).shape[:2]
    try:
        top, left, h, w = (int(v) for v in box)
    except (TypeError, ValueError):
        raise DataError(f"Attribution of item '{att.item_id}' has content_box {box!r}; expected "
                        "[top, left, height, width].") from None
    if h < 1 or w < 1 or top < 0 or left < 0 or top + h > vh or left + w > vw:
        raise DataError(f"Attribution of item '{att.item_id}' has content_box {box!r} outside "
                        f"its {vh}x{vw} map.")
    if (vh, vw) == frame:
        return top, left, h, w
    fy, fx = frame[0] / vh, frame[1] / vw
    t, lft = round(top * fy), round(left * fx)
    return t, lft, max(1, round((top + h) * fy) - t), max(1, round((left + w) * fx) - lft)


def _frame(att: Attribution) -> tuple[int, int]:
    """Shape of the frame a figure draws before cropping: the image's, else the map's."""
    if att.image is not None:
        h, w = np.asarray(att.image).shape[:2]
    else:
        h, w = np.asarray(att.values).shape[:2]
    return int(h), int(w)


def display_shape(att: Attribution) -> tuple[int, int]:
    """``(height, width)`` at which figures draw an image attribution.

    The image's (or map's) size; with a ``content_box``, the box resampled to the photo's
    aspect (``params["source_size"]``): the box's longer side is kept.

    Example:
        >>> from befa_viz.testing import synthetic_attribution
        >>> a = synthetic_attribution(0)
        >>> display_shape(a)
        (32, 32)
        >>> a.params.update(content_box=[0, 5, 32, 21], source_size=[540, 360])
        >>> display_shape(a)
        (32, 21)
    """
    frame = _frame(att)
    box = _content_box(att, frame)
    if box is None:
        return frame
    h, w = box[2], box[3]
    size = att.params.get("source_size")
    if size is not None and len(size) == 2 and min(int(size[0]), int(size[1])) > 0:
        sh, sw = int(size[0]), int(size[1])
        if h >= w:
            w = max(1, round(h * sw / sh))
        else:
            h = max(1, round(w * sh / sw))
    return h, w


def _to_display(att: Attribution, m: np.ndarray) -> np.ndarray:
    """Crop a frame-sized ``[H, W]`` or ``[H, W, C]`` array to the content box and resample it
    to :func:`display_shape` (the identity without a box)."""
    box = _content_box(att, (int(m.shape[0]), int(m.shape[1])))
    if box is None:
        return m
    top, left, h, w = box
    m = m[top: top + h, left: left + w]
    shape = display_shape(att)
    if m.ndim == 2:
        return _resize_bilinear(m, shape)
    return np.stack([_resize_bilinear(m[..., c], shape) for c in range(m.shape[2])], axis=-1)


def image_rgb(att: Attribution) -> np.ndarray | None:
    """The attribution's image as float RGB in [0, 1] ``[H, W, 3]``, or ``None``.

    With a ``content_box`` only the photo is returned, at its own aspect (:func:`display_shape`).
    """
    if att.image is None:
        return None
    img = np.asarray(att.image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise DataError(f"Image of item '{att.item_id}' has shape {img.shape}; expected "
                        "[H, W], [H, W, 3] or [H, W, 4].")
    img = img[..., :3]
    if np.issubdtype(img.dtype, np.integer):
        return np.clip(_to_display(att, img.astype(np.float64) / 255.0), 0, 1)
    img = img.astype(np.float64)
    if img.min() < 0 or img.max() > 1:
        raise DataError(f"Float image of item '{att.item_id}' has values in "
                        f"[{img.min():.3g}, {img.max():.3g}]; expected [0, 1] (or uint8).")
    return np.clip(_to_display(att, img), 0, 1)


def _resize_bilinear(m: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    if m.shape == shape:
        return m
    im = Image.fromarray(m.astype(np.float32))  # mode "F"
    out = im.resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
    return np.asarray(out, dtype=np.float64)


def magnitude_map(att: Attribution, *, normalise: Normalise = "mean") -> np.ndarray:
    """The non-negative map a figure shows for an attribution.

    Image maps smaller (or larger) than the image, such as a patch grid, are resized
    bilinearly to the image size before normalising; text maps stay one value per token. With a
    ``content_box`` the map is then cropped to the photo and resampled to its aspect
    (:func:`display_shape`), so the pad never enters the mean.

    Args:
        att: Image or text attribution.
        normalise: ``"mean"`` divides ``|values|`` by its mean (1 = uniform, so maps of
            different targets are comparable); ``"none"`` keeps the raw magnitudes.

    Returns:
        ``float64 [H, W]`` for images (at the image size when the attribution has an image;
        at :func:`display_shape` with a content box), ``[T]`` for text. An all-zero map stays zero and warns.

    Example:
        >>> import numpy as np
        >>> from befa_viz.testing import synthetic_attribution
        >>> a = synthetic_attribution(0)
        >>> m = magnitude_map(a)
        >>> m.shape, round(float(m.mean()), 6)
        ((32, 32), 1.0)
    """
    _check_normalise(normalise)
    values = _check(att)
    mag = np.abs(values)
    if att.modality == "image" and att.image is not None:
        h, w = np.asarray(att.image).shape[:2]
        # Resize magnitudes, not signed values: interpolating signs would cancel at edges.
        mag = np.clip(_resize_bilinear(mag, (h, w)), 0, None)
    if att.modality == "image":
        mag = np.clip(_to_display(att, mag), 0, None)
    mean = mag.mean()
    if mean == 0:
        warnings.warn(f"Attribution of item '{att.item_id}' ({att.method}, {att.target}) is all "
                      "zero; the figure shows no heat.", stacklevel=3)
        return mag
    return mag / mean if normalise == "mean" else mag


def _vmax_of(maps: Sequence[np.ndarray], percentile: float) -> float:
    """Percentile of the union of ``maps``; falls back to the maximum, then 1 (all zero)."""
    _check_percentile(percentile)
    ref = np.concatenate([np.abs(np.asarray(m, dtype=np.float64)).ravel() for m in maps])
    v = float(np.percentile(ref, percentile))
    if v <= 0:  # sparse map: the percentile is 0 but some values are not
        v = float(ref.max())
    return v if v > 0 else 1.0


def shared_vmax(
    attributions: Sequence[Attribution],
    *,
    percentile: float = 99,
    normalise: Normalise = "mean",
) -> float:
    """The shared ``vmax``: a percentile of the union of the maps' displayed magnitudes.

    Use it to draw several overlays (e.g. in an app) on one colour scale.

    Args:
        attributions: Maps that share the scale (image or text).
        percentile: Percentile of the union of all displayed values; larger values saturate.
            If it is 0 (a sparse map) the maximum is used; all-zero maps give 1.
        normalise: See :func:`magnitude_map`.

    Returns:
        The upper end of the colour scale.

    Example:
        >>> from befa_viz.testing import synthetic_attribution
        >>> a, b = synthetic_attribution(0, "without"), synthetic_attribution(0, "with")
        >>> shared_vmax([a, b]) >= max(shared_vmax([a]), shared_vmax([b])) * 0.5
        True
    """
    if len(attributions) == 0:
        raise DataError("shared_vmax needs at least one attribution.")
    return _vmax_of([magnitude_map(a, normalise=normalise) for a in attributions], percentile)
