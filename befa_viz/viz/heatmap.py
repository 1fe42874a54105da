"""Image heatmaps: overlays, single maps, shared-scale without/with-adapter pairs and grids.

All figures show magnitudes ``|values|`` (see :mod:`befa_viz.viz._scale` for the
normalisation), blended over the image (a padded input's photo only, at its own aspect: see
:mod:`befa_viz.viz._scale`): a pixel's heat colour is drawn with opacity
``alpha * min(value / vmax, 1)``, so zero attribution leaves the base image unchanged and values
at or above ``vmax`` are drawn at opacity ``alpha``. The base is the image's luminance
(``base="grey"``, so heat colours never mix with the image's own colours) or the image itself
(``base="colour"``). Colour bars show the colours as they appear over mid grey.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
from matplotlib.colors import Colormap, ListedColormap

from befa_viz.errors import ConfigError, DataError
from befa_viz.registry import closest
from befa_viz.viz import _layout as L
from befa_viz.viz._scale import (
    Normalise,
    Scale,
    _check,
    _check_normalise,
    _check_percentile,
    _check_vmax,
    _record,
    _vmax_of,
    display_shape,
    image_rgb,
    magnitude_map,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from befa_viz.attribution.result import Attribution
    from befa_viz.viz.verdict import Verdict

__all__ = ["overlay", "heatmap_figure", "pair_figure", "grid_figure"]

Base = Literal["grey", "colour"]
GridScale = Literal["row", "all", "each"]

# Geometry in inches.
_TITLE_H = 0.34
_GAP = 0.14
_CBAR_GAP = 0.08
_CBAR_W = 0.12
_CBAR_LABEL = 0.72
_MARGIN = 0.3


@dataclass(frozen=True)
class _Style:
    percentile: float
    alpha: float
    cmap: str | Colormap
    normalise: Normalise
    base: str

    def check(self) -> None:
        _check_percentile(self.percentile)
        _check_normalise(self.normalise)
        if not 0 < self.alpha <= 1:
            raise ConfigError(f"alpha={self.alpha} must be in (0, 1].")
        if self.base not in ("grey", "colour"):
            raise ConfigError(f"base={self.base!r} is not supported; use 'grey' or 'colour'.")
        _cmap(self.cmap)


def _checked_style(percentile: float, alpha: float, cmap: str | Colormap, normalise: Normalise,
                   base: str, vmax: float | None = None) -> _Style:
    """The drawing style, its options and ``vmax`` checked."""
    st = _Style(percentile, alpha, cmap, normalise, base)
    st.check()
    _check_vmax(vmax)
    return st


def _cmap(cmap: str | Colormap) -> Colormap:
    import matplotlib

    if isinstance(cmap, Colormap):
        return cmap
    try:
        return matplotlib.colormaps[cmap]
    except KeyError:
        near = closest(str(cmap), list(matplotlib.colormaps))
        hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
        raise ConfigError(f"Unknown colour map {cmap!r}.{hint} See matplotlib.colormaps."
                          ) from None


def _heat_rgba(m: np.ndarray, vmax: float, cmap: Colormap, alpha: float) -> np.ndarray:
    t = np.clip(m / vmax, 0.0, 1.0)
    rgba = np.asarray(cmap(t), dtype=np.float64)
    rgba[..., 3] = alpha * t
    return rgba


def _bar_cmap(cmap: Colormap, alpha: float, n: int = 256) -> ListedColormap:
    """The heat colours composited over mid grey, as the colour bar shows them."""
    t = np.linspace(0, 1, n)
    rgb = np.asarray(cmap(t))[:, :3]
    a = (alpha * t)[:, None]
    return ListedColormap((1 - a) * 0.5 + a * rgb)


def _base_rgb(img: np.ndarray, base: str) -> np.ndarray:
    if base == "colour":
        return img
    lum = img @ np.array([0.299, 0.587, 0.114])
    return np.repeat(lum[..., None], 3, axis=-1)


def _blend(att: Attribution, m: np.ndarray, vmax: float, st: _Style) -> np.ndarray:
    """Float RGB ``[H, W, 3]`` of ``m`` over the attribution's image (or white if none)."""
    img = image_rgb(att)
    rgba = _heat_rgba(m, vmax, _cmap(st.cmap), st.alpha)
    if img is None:  # no image: the heat alone, fully opaque
        rgba[..., 3] = 1.0
        bg = np.ones(m.shape + (3,))
    else:
        bg = _base_rgb(img, st.base)
    a = rgba[..., 3:]
    return (1 - a) * bg + a * rgba[..., :3]


def overlay(
    attribution: Attribution,
    *,
    vmax: float | None = None,
    percentile: float = 99,
    alpha: float = 0.8,
    cmap: str | Colormap = "inferno",
    normalise: Normalise = "mean",
    base: Base = "grey",
) -> np.ndarray:
    """Blend an image attribution's magnitude over its image.

    A pixel's heat colour ``cmap(min(m / vmax, 1))`` is drawn with opacity
    ``alpha * min(m / vmax, 1)`` over the base image, where ``m`` is the displayed magnitude
    (:func:`~befa_viz.viz.magnitude_map`). So a zero map returns the base image unchanged:
    the image itself for ``base="colour"``, its luminance as grey for ``base="grey"``.

    Args:
        attribution: Image attribution with its ``image``; maps smaller than the image are
            resized bilinearly to it.
        vmax: Top of the colour scale in displayed units; ``None`` takes ``percentile`` of
            this map (pass :func:`~befa_viz.viz.shared_vmax` to share a scale).
        percentile: Percentile of the map's values that becomes ``vmax``; larger values
            saturate.
        alpha: Opacity of the heat at ``vmax``.
        cmap: Matplotlib colour map (name or object).
        normalise: ``"mean"`` (1 = uniform) or ``"none"`` (raw magnitudes).
        base: ``"grey"`` or ``"colour"``.

    Returns:
        ``uint8 [H, W, 3]`` RGB array; with a ``content_box`` the photo alone at its aspect
        (:func:`~befa_viz.viz._scale.display_shape`).

    Raises:
        DataError: If the attribution is not an image attribution or has no image.

    Example:
        >>> from befa_viz.testing import synthetic_attribution
        >>> overlay(synthetic_attribution(0)).shape
        (32, 32, 3)
    """
    st = _checked_style(percentile, alpha, cmap, normalise, base, vmax)
    _check(attribution, "image")
    if attribution.image is None:
        raise DataError(f"Attribution of item '{attribution.item_id}' has no image to overlay; "
                        "use heatmap_figure() to draw the map alone.")
    m = magnitude_map(attribution, normalise=normalise)
    v = vmax if vmax is not None else _vmax_of([m], percentile)
    return np.round(_blend(attribution, m, v, st) * 255).astype(np.uint8)


# ---- shared drawing ------------------------------------------------------------------------


def _describe(atts: Sequence[Attribution]) -> str:
    """``item … · method … · target … · 32 steps · baseline … · δ …`` (values joined by |)."""

    def field(get: Callable[[Attribution], object]) -> str:
        vals: list[str] = []
        for a in atts:
            v = get(a)
            if v is not None and str(v) not in vals:
                vals.append(str(v))
        return " | ".join(vals)

    def param(*keys: str) -> Callable[[Attribution], object]:
        return lambda a: next((a.params[k] for k in keys if k in a.params), None)

    parts = [("item", field(lambda a: a.item_id)), ("method", field(lambda a: a.method)),
             ("target", field(lambda a: a.target))]
    steps = field(param("n_steps", "steps"))
    out = [f"{k} {v}" for k, v in parts if v]
    if steps:
        out.append(f"{steps} steps")
    for key in ("baseline", "layer", "user", "user_id", "run"):
        v = field(param(key))
        if v:
            out.append(f"{key} {v}")
    deltas = [a.delta for a in atts if a.delta is not None]
    if deltas:
        out.append("IG completeness error δ " + " | ".join(f"{d:.2g}" for d in deltas))
    return " · ".join(out)


def _unit_label(normalise: str) -> str:
    return "|attribution| ÷ mean" if normalise == "mean" else "|attribution|"


def _panel_size(att: Attribution | None, width: float, max_h: float) -> tuple[float, float]:
    # the photo's aspect: a padded input is drawn without its pad (see viz._scale)
    h, w = display_shape(att) if att is not None else (1, 1)
    aspect = h / w
    pw, ph = width, width * aspect
    if ph > max_h:
        ph, pw = max_h, max_h / aspect
    return pw, ph


def _rgb(att: Attribution) -> np.ndarray:
    """:func:`image_rgb` of an attribution that must carry its image."""
    rgb = image_rgb(att)
    if rgb is None:
        raise DataError(f"The attribution of item {att.item_id!r} has no image to show.")
    return rgb


def _show(ax: Axes, rgb: np.ndarray, title: str | None, size: float = L.HEAD) -> None:
    ax.imshow(np.clip(rgb, 0, 1), interpolation="nearest")
    if title:
        ax.set_title(title, fontsize=size, pad=5)


class _Row:
    """One row of panels: [image] + heat panels (+ difference), with colour bars.

    ``vmaxes`` holds the vmax of each heat panel; a shared row draws one colour bar after the
    last heat panel, otherwise each heat panel gets its own.
    """

    def __init__(self, atts: Sequence[Attribution], titles: Sequence[str], st: _Style, *,
                 shared: bool, vmax: float | None, show_image: bool, difference: bool,
                 panel_width: float, max_height: float, image_title: str = "image") -> None:
        self.atts, self.titles, self.st = list(atts), list(titles), st
        self.shared, self.show_image, self.difference = shared, show_image, difference
        self.image_title = image_title
        self.maps = [magnitude_map(a, normalise=st.normalise) for a in atts]
        if vmax is not None:
            self.vmaxes = [vmax] * len(atts)
            self.percentile: float | None = None
        elif shared:
            self.vmaxes = [_vmax_of(self.maps, st.percentile)] * len(atts)
            self.percentile = st.percentile
        else:
            self.vmaxes = [_vmax_of([m], st.percentile) for m in self.maps]
            self.percentile = st.percentile
        self.show_image = show_image and atts[0].image is not None
        self.one_bar = len(set(self.vmaxes)) == 1
        self.resize(panel_width, max_height)

    def resize(self, panel_width: float, max_height: float) -> None:
        """Set the panel size (the height follows the image's aspect) and the row's extent."""
        self.pw, self.ph = _panel_size(self.atts[0], panel_width, max_height)
        cb = _CBAR_GAP + _CBAR_W + _CBAR_LABEL
        n_heat, n_extra = len(self.atts), int(self.show_image) + int(self.difference)
        self.width = (self.pw * (n_heat + n_extra) + _GAP * (n_heat + n_extra - 1)
                      + cb * ((1 if self.one_bar else n_heat) + int(self.difference)))
        self.height = _TITLE_H + self.ph

    def scales(self) -> list[Scale]:
        return [Scale(t, v, self.percentile, self.shared and len(self.atts) > 1,
                      self.st.normalise) for t, v in zip(self.titles, self.vmaxes, strict=True)]

    def draw(self, sheet: L.Sheet, x: float, top: float) -> None:
        st, cmap = self.st, _cmap(self.st.cmap)
        ptop, cbw = top + _TITLE_H, _CBAR_GAP + _CBAR_W + _CBAR_LABEL
        one_bar = self.one_bar
        if self.show_image:
            _show(sheet.axes(x, ptop, self.pw, self.ph), _rgb(self.atts[0]), self.image_title)
            x += self.pw + _GAP
        for i, (a, m, v, t) in enumerate(zip(self.atts, self.maps, self.vmaxes, self.titles,
                                             strict=True)):
            ax = sheet.axes(x, ptop, self.pw, self.ph)
            _show(ax, _blend(a, m, v, st), t)
            x += self.pw
            if not one_bar or i == len(self.atts) - 1:
                bar = cmap if a.image is None else _bar_cmap(cmap, st.alpha)
                L.colourbar(sheet, x + _CBAR_GAP, ptop, _CBAR_W, self.ph, bar, 0, v,
                            _unit_label(st.normalise))
                x += cbw
            x += _GAP
        if self.difference:
            self._draw_difference(sheet, x, ptop)

    def _draw_difference(self, sheet: L.Sheet, x: float, ptop: float) -> None:
        import matplotlib

        d = self.maps[-1] - self.maps[0]
        v = _vmax_of([d], self.st.percentile)
        cmap = matplotlib.colormaps["RdBu_r"]
        rgb = np.asarray(cmap(np.clip(d / v, -1, 1) * 0.5 + 0.5))[..., :3]
        _show(sheet.axes(x, ptop, self.pw, self.ph), rgb,
              f"{self.titles[-1]} − {self.titles[0]}".replace("adapter − without adapter",
                                                              "− without"))
        L.colourbar(sheet, x + self.pw + _CBAR_GAP, ptop, _CBAR_W, self.ph, cmap, -v, v,
                    "difference (÷ mean)" if self.st.normalise == "mean" else "difference",
                    extend="both")


def _caption(sheet: L.Sheet, lines: list[str], top: float) -> None:
    for i, line in enumerate(lines):
        sheet.text(_MARGIN, top + i * L.line_height(L.SMALL), line, fontsize=L.SMALL,
                   color=L.GREY)


def _verdict_of(att: Attribution) -> Verdict:
    """The verdict stored on the map (``params["verdict"]``) or the one it carries itself."""
    from befa_viz.viz.verdict import Verdict, map_verdict

    v = att.params.get("verdict")
    if isinstance(v, Verdict):
        return v
    if isinstance(v, dict):
        keys = ("passes", "source", "detail", "relative_delta", "unscored")
        return Verdict(**{k: v.get(k) for k in keys if k in v})  # type: ignore[arg-type]  # JSON
    return map_verdict(att)


def _short_status(v: Verdict) -> str:
    s = {True: "passes controls", False: "FAILS controls", None: "unchecked"}[v.passes]
    return s + (" · ⚠ δ" if v.delta_warning else "")


def _verdict_lines(atts: Sequence[Attribution], titles: Sequence[str]) -> list[str]:
    """Caption lines: each map's verdict, and a pair's magnitude ratio."""
    from befa_viz.viz.verdict import pair_ratio

    lines = []
    for a, t in zip(atts, titles, strict=True):
        v = _verdict_of(a)
        lines.append(f"{t.split(' · ')[0]}: {v.label()}"
                     + (f" — {v.detail}" if v.detail else "") + ".")
    if len(atts) == 2:
        r = pair_ratio(atts[0], atts[1])
        lines.append("Magnitude Σ|with| / Σ|without| = " + ("undefined (without-adapter map "
                     "is all zero)" if r is None else f"{r:.3g}") + ".")
    return lines


def _single_row_figure(row: _Row, atts: Sequence[Attribution], title: str | None) -> Figure:
    width = row.width + 2 * _MARGIN
    title_h = 0.4 if title else 0.12
    scale_text = row.scales()[0].describe()
    caption = L.caption_lines(["Colour: " + scale_text + ".", _describe(atts) + ".",
                               *_verdict_lines(atts, row.titles)],
                              width - 2 * _MARGIN)
    cap_h = len(caption) * L.line_height(L.SMALL) + 0.2
    sheet = L.Sheet(width, title_h + row.height + 0.15 + cap_h)
    if title:
        sheet.text(_MARGIN, 0.12, title, fontsize=L.TITLE, fontweight="bold")
    row.draw(sheet, _MARGIN, title_h)
    _caption(sheet, caption, title_h + row.height + 0.15)
    _record(sheet.fig, row.scales())
    return sheet.fig


def heatmap_figure(
    attribution: Attribution,
    *,
    vmax: float | None = None,
    percentile: float = 99,
    alpha: float = 0.8,
    cmap: str | Colormap = "inferno",
    normalise: Normalise = "mean",
    base: Base = "grey",
    show_image: bool = True,
    title: str | None = None,
    panel_width: float = 2.6,
) -> Figure:
    """Draw one image attribution next to its image, with a colour bar and a caption.

    Args:
        attribution: Image attribution.
        vmax: Fixed top of the colour scale; ``None`` takes ``percentile`` of the map.
        percentile: See :func:`overlay`.
        alpha: See :func:`overlay`.
        cmap: See :func:`overlay`.
        normalise: See :func:`overlay`.
        base: See :func:`overlay`.
        show_image: Draw the original image as the first panel.
        title: Figure title; default ``"Item <id>"``.
        panel_width: Panel width in inches (tall images get narrower panels).

    Returns:
        A figure; :func:`~befa_viz.viz.figure_scales` gives its colour scale.

    Example:
        >>> from befa_viz.testing import synthetic_attribution
        >>> from befa_viz.viz import figure_scales
        >>> fig = heatmap_figure(synthetic_attribution(0))
        >>> figure_scales(fig)[0].percentile
        99
    """
    st = _checked_style(percentile, alpha, cmap, normalise, base, vmax)
    _check(attribution, "image")
    row = _Row([attribution], [f"{attribution.method} · {attribution.target}"], st, shared=False,
               vmax=vmax, show_image=show_image, difference=False, panel_width=panel_width,
               max_height=3.4)
    return _single_row_figure(row, [attribution], title or f"Item {attribution.item_id}")


def pair_figure(
    without: Attribution,
    with_: Attribution,
    *,
    shared_scale: bool = True,
    vmax: float | None = None,
    percentile: float = 99,
    alpha: float = 0.8,
    cmap: str | Colormap = "inferno",
    normalise: Normalise = "none",
    base: Base = "grey",
    titles: tuple[str, str] = ("without adapter", "with adapter"),
    show_image: bool = True,
    difference: bool = False,
    title: str | None = None,
    panel_width: float = 2.6,
) -> Figure:
    """Draw an item's attribution without and with the adapter side by side.

    By default both maps use **one absolute colour scale**: the raw magnitudes |A| in the
    target's units (``normalise="none"``), ``vmax`` is ``percentile`` of the union of both
    maps, and one colour bar serves both panels — so a map far weaker than its partner looks
    blank, as it should (per-map normalisation hid gaps of 10⁷). ``normalise="mean"`` divides
    each map by its own mean first (labelled on the colour bar); with ``shared_scale=False``
    each map is scaled by its own percentile and gets its own colour bar. The caption states
    the normalisation, method, target, steps, each map's verdict
    (:mod:`befa_viz.viz.verdict`: passes / fails its controls, completeness error)
    and the pair's magnitude ratio Σ|with| / Σ|without|.

    Args:
        without: Attribution of the model without the adapter.
        with_: Attribution of the same item with the adapter.
        shared_scale: One colour scale for both maps (``False``: one per map).
        vmax: Fixed top of the (shared) colour scale; overrides ``percentile``.
        percentile: See :func:`overlay`.
        alpha: See :func:`overlay`.
        cmap: See :func:`overlay`.
        normalise: See :func:`overlay`.
        base: See :func:`overlay`.
        titles: Panel titles of the two maps.
        show_image: Draw the original image as the first panel.
        difference: Add a panel with ``with_ − without`` of the displayed maps (diverging
            colours, symmetric scale at ``percentile`` of ``|difference|``).
        title: Figure title; default ``"Item <id>"``.
        panel_width: Panel width in inches.

    Returns:
        A figure; :func:`~befa_viz.viz.figure_scales` gives both panels' scales.

    Raises:
        DataError: If the maps are not image attributions of the same item.

    Example:
        >>> from befa_viz.testing import synthetic_attribution
        >>> from befa_viz.viz import figure_scales
        >>> fig = pair_figure(synthetic_attribution(0, "without"), synthetic_attribution(0))
        >>> a, b = figure_scales(fig)
        >>> a.vmax == b.vmax and a.shared
        True
    """
    st = _checked_style(percentile, alpha, cmap, normalise, base, vmax)
    _check(without, "image")
    _check(with_, "image")
    if without.item_id != with_.item_id:
        raise DataError(f"pair_figure compares one item without and with the adapter, but got "
                        f"items '{without.item_id}' and '{with_.item_id}'. Use grid_figure() "
                        "to compare items.")
    titles = (f"{titles[0]} · {_short_status(_verdict_of(without))}",
              f"{titles[1]} · {_short_status(_verdict_of(with_))}")
    row = _Row([without, with_], list(titles), st, shared=shared_scale, vmax=vmax,
               show_image=show_image, difference=difference, panel_width=panel_width,
               max_height=3.4)
    return _single_row_figure(row, [without, with_], title or f"Item {without.item_id}")


def grid_figure(
    attributions: Sequence[Sequence[Attribution]],
    *,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    scale: GridScale = "row",
    percentile: float = 99,
    alpha: float = 0.8,
    cmap: str | Colormap = "inferno",
    normalise: Normalise = "mean",
    base: Base = "grey",
    show_images: bool = True,
    title: str | None = None,
    panel_width: float = 1.8,
) -> Figure:
    """Draw several methods or targets (rows) for several items (columns).

    Args:
        attributions: ``attributions[r][c]``: row ``r`` (a method/target), column ``c`` (an
            item); all rows have the same length.
        row_labels: Row labels; default ``"<method> · <target>"`` of each row's first map.
        col_labels: Column labels; default the item ids of the first row.
        scale: ``"row"``: one colour scale per row (the union of its maps); ``"all"``: one
            for the whole grid; ``"each"``: one per map.
        percentile: See :func:`overlay`.
        alpha: See :func:`overlay`.
        cmap: See :func:`overlay`.
        normalise: See :func:`overlay`.
        base: See :func:`overlay`.
        show_images: Add a first row with the original images.
        title: Figure title.
        panel_width: Panel width in inches.

    Returns:
        A figure; :func:`~befa_viz.viz.figure_scales` lists the scales row by row.

    Example:
        >>> from befa_viz.testing import synthetic_attribution as s
        >>> fig = grid_figure([[s(0, "without"), s(1, "without")], [s(0), s(1)]])
        >>> len(fig.axes) > 4
        True
    """
    st = _checked_style(percentile, alpha, cmap, normalise, base)
    if scale not in ("row", "all", "each"):
        raise ConfigError(f"scale={scale!r} is not supported; use 'row', 'all' or 'each'.")
    rows = [list(r) for r in attributions]
    if not rows or not rows[0]:
        raise DataError("grid_figure needs at least one row with one attribution.")
    n_cols = len(rows[0])
    for i, r in enumerate(rows):
        if len(r) != n_cols:
            raise DataError(f"grid_figure rows must have the same length; row 0 has {n_cols} "
                            f"maps, row {i} has {len(r)}.")
        for a in r:
            _check(a, "image")
    row_labels = list(row_labels) if row_labels is not None else \
        [f"{r[0].method} · {r[0].target}" for r in rows]
    col_labels = list(col_labels) if col_labels is not None else [a.item_id for a in rows[0]]
    if len(row_labels) != len(rows) or len(col_labels) != n_cols:
        raise ConfigError(f"Got {len(row_labels)} row labels for {len(rows)} rows and "
                          f"{len(col_labels)} column labels for {n_cols} columns.")

    maps = [[magnitude_map(a, normalise=normalise) for a in r] for r in rows]
    if scale == "all":
        v_all = _vmax_of([m for r in maps for m in r], percentile)
        vmaxes = [[v_all] * n_cols for _ in rows]
    elif scale == "row":
        vmaxes = [[_vmax_of(r, percentile)] * n_cols for r in maps]
    else:
        vmaxes = [[_vmax_of([m], percentile) for m in r] for r in maps]

    label_w, cbw = 1.3, _CBAR_GAP + _CBAR_W + _CBAR_LABEL
    sizes = [_panel_size(a, panel_width, panel_width * 1.6) for a in rows[0]]
    pw = max(s[0] for s in sizes)
    ph = max(s[1] for s in sizes)
    per_panel_bar = scale == "each"
    col_w = pw + (cbw if per_panel_bar else 0) + _GAP
    width = _MARGIN + label_w + n_cols * col_w + (0 if per_panel_bar else cbw) + _MARGIN
    show_images = show_images and all(a.image is not None for a in rows[0])
    n_draw = len(rows) + show_images
    title_h = 0.45 if title else 0.1
    top0 = title_h + _TITLE_H
    scale_text = Scale("", vmaxes[0][0], percentile, scale != "each", normalise).describe()
    if scale != "each":
        scale_text = scale_text.replace("both maps of the pair",
                                        "each row" if scale == "row" else "all maps")
    if scale == "row" and len(rows) > 1:
        scale_text = scale_text.replace(f"(vmax {vmaxes[0][0]:.3g})", "(vmax " + ", ".join(
            f"{r[0]:.3g}" for r in vmaxes) + " by row)")
    if scale == "each":
        scale_text = scale_text.split(" (vmax")[0] + " (vmax on each colour bar)"
    caption = L.caption_lines(["Colour: " + scale_text + ".",
                               _describe([a for r in rows for a in r]) + "."],
                              width - 2 * _MARGIN)
    height = top0 + n_draw * (ph + _GAP) + 0.1 + len(caption) * L.line_height(L.SMALL) + 0.2
    sheet = L.Sheet(width, height)
    if title:
        sheet.text(_MARGIN, 0.12, title, fontsize=L.TITLE, fontweight="bold")
    cmap_obj = _cmap(cmap)
    bar = _bar_cmap(cmap_obj, alpha)
    x0 = _MARGIN + label_w
    for c, lab in enumerate(col_labels):
        sheet.text(x0 + c * col_w + pw / 2, top0 - 0.08, lab, ha="center", va="bottom",
                   fontsize=L.HEAD)
    top = top0
    if show_images:
        sheet.text(_MARGIN, top + ph / 2, "image", va="center", fontsize=L.BODY)
        for c, a in enumerate(rows[0]):
            _show(sheet.axes(x0 + c * col_w, top, pw, ph), _rgb(a), None)
        top += ph + _GAP
    scales: list[Scale] = []
    for ri, (row, rmaps, rv) in enumerate(zip(rows, maps, vmaxes, strict=True)):
        lines = L.wrap(row_labels[ri], label_w - 0.15, L.BODY)
        for k, line in enumerate(lines):
            sheet.text(_MARGIN, top + ph / 2 + (k - (len(lines) - 1) / 2) * L.line_height(L.BODY),
                       line, va="center", fontsize=L.BODY)
        for c, (a, m, v) in enumerate(zip(row, rmaps, rv, strict=True)):
            x = x0 + c * col_w
            _show(sheet.axes(x, top, pw, ph), _blend(a, m, v, st), None)
            if per_panel_bar:
                L.colourbar(sheet, x + pw + _CBAR_GAP, top, _CBAR_W, ph, bar, 0, v,
                            _unit_label(normalise))
            scales.append(Scale(f"{row_labels[ri]} / {col_labels[c]}", v, percentile,
                                scale != "each", normalise))
        if scale == "row" or (scale == "all" and ri == 0):
            span = ph if scale == "row" else len(rows) * (ph + _GAP) - _GAP
            L.colourbar(sheet, x0 + n_cols * col_w - _GAP + _CBAR_GAP, top, _CBAR_W, span, bar,
                        0, rv[0], _unit_label(normalise))
        top += ph + _GAP
    _caption(sheet, caption, top + 0.1)
    _record(sheet.fig, scales)
    return sheet.fig
