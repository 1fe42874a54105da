"""Page layout in inches, text measurement, colour bars and tables for the viz figures.

Figures are laid out by hand (no layout engine) so that token wrapping, measured once in
points, stays exact and panels line up across rows.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties

# Font sizes in points: legible when the figure is shown at 100 % or printed on A4.
TITLE = 13.0
HEAD = 10.5
BODY = 9.5
SMALL = 8.5
GREY = "#444444"


class Sheet:
    """A figure addressed in inches from its top-left corner."""

    def __init__(self, width: float, height: float, dpi: float = 100) -> None:
        self.w, self.h = float(width), float(height)
        self.fig = Figure(figsize=(self.w, self.h), dpi=dpi, facecolor="white")
        self._canvas: Axes | None = None

    @property
    def canvas(self) -> Axes:
        """A transparent axes over the whole figure whose data units are inches from top-left."""
        if self._canvas is None:
            ax = self.fig.add_axes((0, 0, 1, 1))
            ax.set_xlim(0, self.w)
            ax.set_ylim(self.h, 0)
            ax.set_axis_off()
            ax.patch.set_visible(False)
            self._canvas = ax
        return self._canvas

    def axes(self, x: float, top: float, w: float, h: float, *, off: bool = True) -> Axes:
        ax = self.fig.add_axes((x / self.w, (self.h - top - h) / self.h, w / self.w, h / self.h))
        if off:
            ax.set_axis_off()
        return ax

    def text(self, x: float, top: float, s: str, **kw: Any) -> None:
        kw.setdefault("va", "top")
        kw.setdefault("fontsize", BODY)
        self.fig.text(x / self.w, 1 - top / self.h, s, parse_math=False, **kw)

    def hline(self, x0: float, x1: float, top: float, lw: float = 0.8,
              color: str = "#222222") -> None:
        from matplotlib.lines import Line2D

        y = 1 - top / self.h
        self.fig.add_artist(Line2D([x0 / self.w, x1 / self.w], [y, y], lw=lw, color=color,
                                   transform=self.fig.transFigure))


@lru_cache(maxsize=1)
def _renderer() -> Any:
    from matplotlib.backends.backend_agg import RendererAgg

    return RendererAgg(8, 8, 72)  # at 72 dpi one pixel is one point


@lru_cache(maxsize=4096)
def text_width(s: str, size: float, weight: str = "normal") -> float:
    """Width of ``s`` in points at font ``size``."""
    w, _, _ = _renderer().get_text_width_height_descent(
        s, FontProperties(size=size, weight=weight), ismath=False)
    return float(w)


def wrap(s: str, width_in: float, size: float) -> list[str]:
    """Wrap ``s`` into lines that fit ``width_in`` inches at font ``size``."""
    lines: list[str] = []
    for para in str(s).splitlines() or [""]:
        words: list[str] = []
        for word in para.split(" "):  # hard-break words wider than a line
            while len(word) > 1 and text_width(word, size) / 72 > width_in:
                k = len(word) - 1
                while k > 1 and text_width(word[:k], size) / 72 > width_in:
                    k -= 1
                cut = max(word.rfind(c, 0, k) for c in "_-/.")  # prefer a natural break
                k = cut + 1 if cut > 0 else k
                words.append(word[:k])
                word = word[k:]
            words.append(word)
        line = ""
        for word in words:
            cand = f"{line} {word}" if line else word
            if line and text_width(cand, size) / 72 > width_in:
                lines.append(line)
                line = word
            else:
                line = cand
        lines.append(line)
    return lines


def line_height(size: float, spacing: float = 1.35) -> float:
    """Height of one line in inches."""
    return size * spacing / 72


def fmt(v: Any) -> str:
    """Format a table cell: 3 decimals for ordinary numbers, scientific for tiny or huge."""
    if v is None:
        return "–"
    if isinstance(v, bool | np.bool_):
        return "yes" if v else "no"
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        f = float(v)
        if math.isnan(f):
            return "–"
        if f == 0 or 1e-3 <= abs(f) < 1e4:
            return f"{f:.3f}"
        return f"{f:.2e}"
    return shorten(str(v), 48)


def table_rows(data: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> tuple[list[str],
                                                                               list[list[str]]]:
    """Header and string rows of a table given as a dict of dicts, a dict, or a list of dicts.

    ``{"row": {"col": v}}`` gives one row per key (first column = the key); a flat
    ``{"name": v}`` gives two columns; a list of dicts gives one row per dict. Columns are the
    union of the keys in first-seen order.
    """
    if isinstance(data, Mapping):
        if data and all(isinstance(v, Mapping) for v in data.values()):
            cols: list[str] = []
            for v in data.values():
                cols += [str(k) for k in v if str(k) not in cols]
            rows = [[str(k)] + [fmt(dict(v).get(c)) for c in cols] for k, v in data.items()]
            return [""] + cols, rows
        return ["", "value"], [[str(k), fmt(v)] for k, v in data.items()]
    cols = []
    for r in data:
        if not isinstance(r, Mapping):
            from befa_viz.errors import DataError

            raise DataError(f"Table rows must be dicts; got {type(r).__name__}: {r!r}.")
        cols += [str(k) for k in r if str(k) not in cols]
    return cols, [[fmt(dict(r).get(c)) for c in cols] for r in data]


def _col_widths(header: list[str], rows: list[list[str]], size: float) -> list[float]:
    cells = [header] + rows
    return [max(text_width(r[j], size, "bold") for r in cells) / 72 + 0.22
            for j in range(len(header))]


def table_width(header: list[str], rows: list[list[str]], size: float = BODY) -> float:
    """Natural width of a table in inches."""
    return sum(_col_widths(header, rows, size))


def table_height(n_rows: int, size: float = BODY) -> float:
    return line_height(size, 1.7) * (n_rows + 1) + 0.08


def draw_table(sheet: Sheet, x: float, top: float, width: float,
               header: list[str], rows: list[list[str]], size: float = BODY) -> float:
    """Draw a booktabs-style table; return its height in inches."""
    lh = line_height(size, 1.7)
    cells = [header] + rows
    cw = _col_widths(header, rows, size)
    if len(cw) > 1 and sum(cw) > width:  # shrink the value columns evenly
        scale = max(width - cw[0], 0.1) / sum(cw[1:])
        cw = [cw[0]] + [w * scale for w in cw[1:]]
    xs = [x + sum(cw[:j]) for j in range(len(cw))]
    right = x + sum(cw)
    numeric = [_numeric_col(rows, j) for j in range(len(header))]
    sheet.hline(x, right, top, lw=1.0)
    for i, r in enumerate(cells):
        y = top + 0.04 + i * lh + lh / 2
        for j, s in enumerate(r):
            num = j > 0 and numeric[j]
            sheet.text(xs[j] + cw[j] - 0.12 if num else xs[j], y, s, va="center",
                       ha="right" if num else "left", fontsize=size,
                       fontweight="bold" if i == 0 or (j == 0 and header[0] == "") else "normal")
        if i == 0:
            sheet.hline(x, right, top + 0.04 + lh, lw=0.6)
    bottom = top + 0.08 + len(cells) * lh
    sheet.hline(x, right, bottom, lw=1.0)
    return bottom - top


def _numeric_col(rows: list[list[str]], j: int) -> bool:
    return bool(rows) and all(_looks_numeric(r[j]) for r in rows)


def _looks_numeric(s: str) -> bool:
    try:
        float(s.replace("–", "nan"))
        return True
    except ValueError:
        return False


def colourbar(sheet: Sheet, x: float, top: float, w: float, h: float, cmap: Colormap,
              vmin: float, vmax: float, label: str, *, horizontal: bool = False,
              extend: str = "max") -> None:
    """A labelled colour bar in its own axes."""
    cax = sheet.axes(x, top, w, h, off=False)
    mappable = ScalarMappable(norm=Normalize(vmin, vmax), cmap=cmap)
    cb = sheet.fig.colorbar(mappable, cax=cax, orientation="horizontal" if horizontal
                            else "vertical", extend=extend, extendfrac=0.04)
    cb.set_label(label, fontsize=SMALL)
    cb.ax.tick_params(labelsize=SMALL - 0.5, length=2.5, width=0.6)
    cb.outline.set_linewidth(0.6)


def caption_lines(parts: Sequence[str], width_in: float, size: float = SMALL) -> list[str]:
    out: list[str] = []
    for p in parts:
        if p:
            out += wrap(p, width_in, size)
    return out


def shorten(s: str, width: int) -> str:
    return textwrap.shorten(str(s), width=width, placeholder="…")
