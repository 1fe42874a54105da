"""Text attributions: per-token highlighting as HTML and as matplotlib figures.

A token's background is its colour at opacity ``0.85 * min(m / vmax, 1)``, where ``m`` is the
displayed magnitude (:func:`~befa_viz.viz.magnitude_map`: ``|score|`` ÷ the mean over the
tokens by default). ``vmax`` defaults to the *maximum* (``percentile=100``): a text has few
tokens, and one token taking most of the attribution is the finding, not an outlier. With
``signed=True`` positive scores are red and negative ones blue; otherwise every token is orange.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.patches import FancyBboxPatch

from befa_viz.errors import DataError
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
    magnitude_map,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from befa_viz.attribution.result import Attribution

__all__ = ["token_html", "token_pair_html", "token_figure", "token_pair_figure"]

MAX_OPACITY = 0.85
_MAGNITUDE = (0.90, 0.33, 0.05)  # orange
_POSITIVE = (0.84, 0.15, 0.16)  # red
_NEGATIVE = (0.13, 0.40, 0.75)  # blue
_MARGIN = 0.3


class _Tokens:
    """Displayed intensities and colours of one text attribution on a given scale."""

    def __init__(self, att: Attribution, vmax: float, signed: bool, normalise: Normalise) -> None:
        values = _check(att, "text")
        self.att, self.vmax, self.signed = att, vmax, signed
        self.tokens = [str(t) for t in att.tokens or []]
        self.scores = values
        self.m = magnitude_map(att, normalise=normalise)
        self.intensity = np.clip(self.m / vmax, 0.0, 1.0)

    def colour(self, i: int) -> tuple[float, float, float]:
        if not self.signed:
            return _MAGNITUDE
        return _POSITIVE if self.scores[i] >= 0 else _NEGATIVE

    def rgba(self, i: int) -> tuple[float, float, float, float]:
        return (*self.colour(i), MAX_OPACITY * float(self.intensity[i]))


def _scales(atts: Sequence[Attribution], *, shared: bool, vmax: float | None, percentile: float,
            normalise: Normalise) -> tuple[list[float], float | None]:
    _check_normalise(normalise)
    _check_percentile(percentile)
    _check_vmax(vmax)
    if vmax is not None:
        return [vmax] * len(atts), None
    maps = [magnitude_map(a, normalise=normalise) for a in atts]
    if shared:
        return [_vmax_of(maps, percentile)] * len(atts), percentile
    return [_vmax_of([m], percentile) for m in maps], percentile


# ---- HTML ----------------------------------------------------------------------------------


def _span(tok: _Tokens, i: int) -> str:
    r, g, b, a = tok.rgba(i)
    score = float(tok.scores[i])
    style = (f"background-color: rgba({round(r * 255)}, {round(g * 255)}, {round(b * 255)}, "
             f"{a:.3f}); padding: 0.1em 0.25em; margin: 0 0.05em; border-radius: 0.3em;")
    title = f"score {score:+.3g} ({tok.m[i]:.2f} on the displayed scale)"
    return (f'<span class="befa-token" style="{style}" title="{html.escape(title)}" '
            f'data-score="{score:.6g}" data-intensity="{tok.intensity[i]:.4f}">'
            f"{html.escape(tok.tokens[i])}</span>")


def _block_html(tok: _Tokens) -> str:
    return " ".join(_span(tok, i) for i in range(len(tok.tokens)))


def _caption_html(text: str) -> str:
    return (f'<div class="befa-caption" style="font-size: 0.8em; color: #555; '
            f'margin-top: 0.4em;">{html.escape(text)}</div>')


_DIV = ('<div class="befa-tokens" style="font-family: \'DejaVu Sans\', Arial, sans-serif; '
        'line-height: 2.0;">')


def token_html(
    attribution: Attribution,
    *,
    vmax: float | None = None,
    percentile: float = 100,
    normalise: Normalise = "mean",
    signed: bool = False,
    caption: bool = True,
) -> str:
    """Render a text attribution as HTML, one highlighted ``<span>`` per token.

    Each span has class ``befa-token``, an inline background colour, a ``title`` tooltip with
    the raw score and ``data-score`` / ``data-intensity`` attributes (intensity in [0, 1] on
    the colour scale). No external assets: paste it into Streamlit (``unsafe_allow_html``) or
    an HTML report.

    Args:
        attribution: Text attribution (word-merged tokens and one score each).
        vmax: Fixed top of the colour scale (displayed units); ``None`` uses ``percentile``.
        percentile: Percentile of the displayed magnitudes that becomes ``vmax``.
        normalise: ``"mean"`` (÷ mean |score|, 1 = uniform) or ``"none"``.
        signed: Colour positive scores red and negative ones blue.
        caption: Append a caption stating the normalisation.

    Returns:
        An HTML fragment (a ``<div>``).

    Example:
        >>> from befa_viz.testing import synthetic_attribution
        >>> token_html(synthetic_attribution(0, modality="text")).count('class="befa-token"')
        8
    """
    (v,), p = _scales([attribution], shared=False, vmax=vmax, percentile=percentile,
                      normalise=normalise)
    tok = _Tokens(attribution, v, signed, normalise)
    out = [_DIV, _block_html(tok)]
    if caption:
        out.append(_caption_html("Highlight: " + Scale("", v, p, False, normalise, signed,
                                                           "text").describe() + "."))
    out.append("</div>")
    return "".join(out)


def token_pair_html(
    without: Attribution,
    with_: Attribution,
    *,
    shared_scale: bool = True,
    vmax: float | None = None,
    percentile: float = 100,
    normalise: Normalise = "mean",
    signed: bool = False,
    titles: tuple[str, str] = ("without adapter", "with adapter"),
    caption: bool = True,
) -> str:
    """Render a text attribution without and with the adapter, on one shared scale by default.

    Args:
        without: Text attribution of the model without the adapter.
        with_: Text attribution of the same item with the adapter.
        shared_scale: One ``vmax`` from the union of both (``False``: one per text).
        vmax: Fixed top of the colour scale; overrides ``percentile``.
        percentile: See :func:`token_html`.
        normalise: See :func:`token_html`.
        signed: See :func:`token_html`.
        titles: Labels of the two texts.
        caption: Append a caption stating the normalisation.

    Returns:
        An HTML fragment with two labelled blocks of ``befa-token`` spans.

    Example:
        >>> from befa_viz.testing import synthetic_attribution as s
        >>> h = token_pair_html(s(0, "without", "text"), s(0, "with", "text"))
        >>> h.count('class="befa-token"')
        16
    """
    atts = [without, with_]
    vs, p = _scales(atts, shared=shared_scale, vmax=vmax, percentile=percentile,
                    normalise=normalise)
    out = [_DIV]
    for a, v, t in zip(atts, vs, titles, strict=True):
        tok = _Tokens(a, v, signed, normalise)
        out.append(f'<div class="befa-token-block"><b>{html.escape(t)}</b>: '
                   f"{_block_html(tok)}</div>")
    if caption:
        if shared_scale or vmax is not None:
            text = Scale("", vs[0], p, shared_scale, normalise, signed, "text").describe()
        else:
            text = "; ".join(f"{t}: " + Scale("", v, p, False, normalise, signed,
                                              "text").describe()
                             for t, v in zip(titles, vs, strict=True))
        out.append(_caption_html("Highlight: " + text + "."))
    out.append("</div>")
    return "".join(out)


# ---- figures -------------------------------------------------------------------------------


class _Block:
    """Token boxes of one text wrapped to a width, measured in points."""

    def __init__(self, tok: _Tokens, width_in: float, fontsize: float,
                 max_lines: int | None = None, label: str | None = None) -> None:
        self.tok, self.fs, self.label = tok, fontsize, label
        pad, gap = 0.22 * fontsize, 0.28 * fontsize
        self.pad = pad
        width = width_in * 72
        self.label_w = (L.text_width(label + ":", fontsize, "bold") + gap * 1.5) if label else 0.0
        x = self.label_w
        lines: list[list[tuple[int, float, float]]] = []
        line: list[tuple[int, float, float]] = []
        for i, t in enumerate(tok.tokens):
            w = L.text_width(t, fontsize) + 2 * pad
            if line and x + w > width:
                lines.append(line)
                line, x = [], self.label_w
            line.append((i, x, w))
            x += w + gap
        if line:
            lines.append(line)
        self.hidden = 0
        if max_lines is not None and len(lines) > max_lines:
            self.hidden = sum(len(ln) for ln in lines[max_lines:])
            lines = lines[:max_lines]
            # Make room for the "… (+N tokens)" marker at the end of the last line.
            while lines[-1]:
                marker = L.text_width(f"… (+{self.hidden + 1} tokens)", 0.85 * fontsize)
                _, x_last, w_last = lines[-1][-1]
                if x_last + w_last + 0.3 * fontsize + marker <= width:
                    break
                lines[-1].pop()
                self.hidden += 1
        self.lines = lines
        self.lh = 1.75 * fontsize  # line height in points

    @property
    def height(self) -> float:
        return len(self.lines) * self.lh / 72

    def draw(self, sheet: L.Sheet, x_in: float, top_in: float) -> None:
        ax, fs = sheet.canvas, self.fs
        if self.label:
            sheet.text(x_in, top_in + (self.lh / 2 + 0.32 * fs) / 72, self.label + ":",
                       va="baseline", fontsize=fs, fontweight="bold")
        for k, line in enumerate(self.lines):
            mid = top_in * 72 + k * self.lh + self.lh / 2  # points from the top
            for i, x, w in line:
                x0 = x_in * 72 + x
                ax.add_patch(FancyBboxPatch(
                    (x0 / 72, (mid - 0.62 * fs) / 72), w / 72, 1.24 * fs / 72,
                    boxstyle=f"round,pad=0,rounding_size={0.25 * fs / 72:.4f}",
                    facecolor=self.tok.rgba(i), edgecolor="none"))
                sheet.text((x0 + self.pad) / 72, (mid + 0.32 * fs) / 72, self.tok.tokens[i],
                           va="baseline", fontsize=fs)
        if self.hidden:
            last = self.lines[-1][-1]
            mid = top_in * 72 + (len(self.lines) - 1) * self.lh + self.lh / 2
            sheet.text((x_in * 72 + last[1] + last[2] + 0.3 * fs) / 72, (mid + 0.32 * fs) / 72,
                       f"… (+{self.hidden} tokens)", va="baseline", fontsize=fs * 0.85,
                       color=L.GREY)


def _token_bar_cmap(signed: bool) -> ListedColormap:
    t = np.linspace(0, 1, 256)[:, None] * MAX_OPACITY
    if not signed:
        return ListedColormap((1 - t) + t * np.array(_MAGNITUDE))
    neg = ((1 - t) + t * np.array(_NEGATIVE))[::-1]
    pos = (1 - t) + t * np.array(_POSITIVE)
    return ListedColormap(np.concatenate([neg, pos]))


def _token_bar(sheet: L.Sheet, x: float, top: float, vmax: float, signed: bool,
               normalise: str, clipped: bool = True) -> None:
    label = ("score ÷ mean |score|" if signed else "|score| ÷ mean") if normalise == "mean" \
        else ("score" if signed else "|score|")
    L.colourbar(sheet, x, top, 2.4, 0.11, _token_bar_cmap(signed), -vmax if signed else 0.0,
                vmax, label, horizontal=True,
                extend=("both" if signed else "max") if clipped else "neither")


_BAR_H = 0.75  # colour bar with ticks and label


def _token_sheet(atts: Sequence[Attribution], labels: Sequence[str | None], vs: list[float],
                 p: float | None, *, shared: bool, signed: bool, normalise: Normalise,
                 width: float, fontsize: float, title: str | None) -> Figure:
    inner = width - 2 * _MARGIN
    blocks = [_Block(_Tokens(a, v, signed, normalise), inner, fontsize, label=lab)
              for a, v, lab in zip(atts, vs, labels, strict=True)]
    scales = [Scale(lab or a.item_id, v, p, shared and len(atts) > 1, normalise, signed, "text")
              for a, v, lab in zip(atts, vs, labels, strict=True)]
    one_bar = len(set(vs)) == 1
    if one_bar:
        cap = "Highlight: " + scales[0].describe() + "."
    else:
        cap = "Highlight: " + "; ".join(f"{s.panel}: {s.describe()}" for s in scales) + "."
    from befa_viz.viz.heatmap import _caption, _describe

    caption = L.caption_lines([cap, _describe(atts) + "."], inner)
    title_h = 0.45 if title else 0.15
    block_gap = 0.12
    bars_h = _BAR_H if one_bar else _BAR_H * len(vs)
    height = (title_h + sum(b.height for b in blocks) + block_gap * (len(blocks) - 1) + 0.15
              + bars_h + len(caption) * L.line_height(L.SMALL) + 0.15)
    sheet = L.Sheet(width, height)
    if title:
        sheet.text(_MARGIN, 0.12, title, fontsize=L.TITLE, fontweight="bold")
    top = title_h
    for b in blocks:
        b.draw(sheet, _MARGIN, top)
        top += b.height + block_gap
    top += 0.15 - block_gap
    for k, s in enumerate(scales[:1] if one_bar else scales):
        _token_bar(sheet, _MARGIN, top, s.vmax, signed, normalise, s.percentile != 100)
        if not one_bar:
            sheet.text(_MARGIN + 2.55, top, s.panel, fontsize=L.SMALL, va="top")
        top += _BAR_H
        del k
    _caption(sheet, caption, top)
    _record(sheet.fig, scales)
    return sheet.fig


def token_figure(
    attribution: Attribution,
    *,
    vmax: float | None = None,
    percentile: float = 100,
    normalise: Normalise = "mean",
    signed: bool = False,
    width: float = 7.5,
    fontsize: float = 11,
    title: str | None = None,
) -> Figure:
    """Draw a text attribution as wrapped, highlighted tokens with a colour bar.

    Args:
        attribution: Text attribution.
        vmax: Fixed top of the colour scale; ``None`` uses ``percentile``.
        percentile: See :func:`token_html`.
        normalise: See :func:`token_html`.
        signed: See :func:`token_html`.
        width: Figure width in inches; tokens wrap to it.
        fontsize: Token font size in points.
        title: Figure title; default ``"Item <id>"``.

    Returns:
        A figure; :func:`~befa_viz.viz.figure_scales` gives its scale.

    Example:
        >>> from befa_viz.testing import synthetic_attribution
        >>> from befa_viz.viz import figure_scales
        >>> fig = token_figure(synthetic_attribution(0, modality="text"))
        >>> figure_scales(fig)[0].percentile
        100
    """
    vs, p = _scales([attribution], shared=False, vmax=vmax, percentile=percentile,
                    normalise=normalise)
    return _token_sheet([attribution], [None], vs, p, shared=False, signed=signed,
                        normalise=normalise, width=width, fontsize=fontsize,
                        title=title or f"Item {attribution.item_id}")


def token_pair_figure(
    without: Attribution,
    with_: Attribution,
    *,
    shared_scale: bool = True,
    vmax: float | None = None,
    percentile: float = 100,
    normalise: Normalise = "mean",
    signed: bool = False,
    titles: tuple[str, str] = ("without adapter", "with adapter"),
    width: float = 7.5,
    fontsize: float = 11,
    title: str | None = None,
) -> Figure:
    """Draw a text attribution without and with the adapter, on one shared scale by default.

    Args:
        without: Text attribution of the model without the adapter.
        with_: Text attribution of the same item with the adapter.
        shared_scale: One ``vmax`` from the union of both (``False``: one per text, each with
            its own colour bar).
        vmax: Fixed top of the colour scale; overrides ``percentile``.
        percentile: See :func:`token_html`.
        normalise: See :func:`token_html`.
        signed: See :func:`token_html`.
        titles: Labels of the two texts.
        width: Figure width in inches.
        fontsize: Token font size in points.
        title: Figure title; default ``"Item <id>"``.

    Returns:
        A figure; :func:`~befa_viz.viz.figure_scales` gives both scales.

    Raises:
        DataError: If the two are not text attributions of the same item.

    Example:
        >>> from befa_viz.testing import synthetic_attribution as s
        >>> from befa_viz.viz import figure_scales
        >>> fig = token_pair_figure(s(0, "without", "text"), s(0, "with", "text"))
        >>> len({sc.vmax for sc in figure_scales(fig)})
        1
    """
    if without.item_id != with_.item_id:
        raise DataError(f"token_pair_figure compares one item without and with the adapter, but "
                        f"got items '{without.item_id}' and '{with_.item_id}'.")
    vs, p = _scales([without, with_], shared=shared_scale, vmax=vmax, percentile=percentile,
                    normalise=normalise)
    return _token_sheet([without, with_], list(titles), vs, p, shared=shared_scale,
                        signed=signed, normalise=normalise, width=width, fontsize=fontsize,
                        title=title or f"Item {without.item_id}")
