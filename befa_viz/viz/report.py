"""Item reports (one page per item), saving figures and arrays, and offline HTML reports."""

from __future__ import annotations

import base64
import html
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union, cast

import numpy as np
from matplotlib.colors import Colormap
from matplotlib.figure import Figure

from befa_viz.cache import atomic_write_bytes
from befa_viz.errors import ConfigError, DataError
from befa_viz.registry import closest
from befa_viz.viz import _layout as L
from befa_viz.viz._scale import Normalise, Scale, _check, _is_attribution, _record
from befa_viz.viz.heatmap import _MARGIN, _describe, _Row, _short_status, _show, _Style, _verdict_of
from befa_viz.viz.text import _BAR_H, _Block, _scales, _token_bar, _Tokens

if TYPE_CHECKING:
    from befa_viz.attribution.result import Attribution

__all__ = ["Section", "html_report", "item_report_figure", "save_arrays", "save_figure"]

PairLike = Union["Attribution", tuple["Attribution", "Attribution"]]

_FORMATS = ("png", "svg", "pdf")
_META_SKIP = {"id", "item_id", "title", "text", "image"}


# ---- item report ---------------------------------------------------------------------------


def _rows_of(pairs: Any, modality: str, what: str) -> list[list[Attribution]]:
    """Normalise ``None`` / one Attribution / one (without, with) tuple / a list of those."""
    if pairs is None:
        return []
    if _is_attribution(pairs):
        rows = [[pairs]]
    elif isinstance(pairs, tuple) and len(pairs) == 2 and all(_is_attribution(p) for p in pairs):
        rows = [list(pairs)]
    elif isinstance(pairs, Sequence) and not isinstance(pairs, str | bytes):
        rows = []
        for p in pairs:
            if _is_attribution(p):
                rows.append([p])
            elif isinstance(p, Sequence) and len(p) == 2 and all(_is_attribution(q) for q in p):
                rows.append(list(p))
            else:
                raise DataError(f"{what}: each entry must be an Attribution or a (without, with) "
                                f"pair of Attributions; got {type(p).__name__}.")
    else:
        raise DataError(f"{what} must be an Attribution, a (without, with) tuple or a list of "
                        f"those; got {type(pairs).__name__}.")
    for r in rows:
        for a in r:
            _check(a, modality)
    return rows


def _sanity_rows(sanity: Any) -> Any:
    """A SanityReport (or its ``to_dict()``) as one row per control; anything else as is."""
    get = sanity.get if isinstance(sanity, Mapping) else lambda k: getattr(sanity, k, None)
    median, passes, limit = get("median_rho"), get("control_passes"), get("max_rho") or {}
    if not (isinstance(median, Mapping) and isinstance(passes, Mapping)):
        return sanity
    return {f"{c} control": {"median ρ": median[c], "max ρ": limit.get(c),
                             "passes": passes.get(c)} for c in median}


def _titles(row: list[Attribution], titles: tuple[str, str], verdict: bool = False) -> list[str]:
    """Pair titles for a pair; for a single map, the variant its params record, if any.
    With ``verdict``, a second line gives the map's verdict (passes / FAILS its controls)."""
    if len(row) == 2:
        names = list(titles)
    else:
        adapter = row[0].params.get("adapter")
        names = [row[0].method if adapter is None else titles[1] if adapter else titles[0]]
    if not verdict:
        return names
    return [f"{t}\n{_short_status(_verdict_of(a))}" for t, a in zip(names, row, strict=True)]


def _section_heading(sheet: L.Sheet, top: float, text: str, width: float) -> float:
    sheet.text(_MARGIN, top, text, fontsize=L.HEAD + 0.5, fontweight="bold")
    sheet.hline(_MARGIN, width - _MARGIN, top + 0.25, lw=0.5, color="#999999")
    return 0.3


def _blank(v: Any) -> bool:
    """No value to show: None, an empty string or NaN (e.g. attributes of an image-only item)."""
    if v is None or (isinstance(v, str) and not v.strip()):
        return True
    return isinstance(v, float) and v != v


def item_report_figure(
    item: Mapping[str, Any],
    image_pairs: PairLike | Sequence[PairLike] | None = None,
    text_pairs: PairLike | Sequence[PairLike] | None = None,
    scores: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    sanity: Mapping[str, Any] | Sequence[Mapping[str, Any]] | Any | None = None,
    *,
    shared_scale: bool = True,
    percentile: float = 99,
    text_percentile: float = 100,
    normalise: Normalise = "none",
    alpha: float = 0.8,
    cmap: str | Colormap = "inferno",
    base: str = "grey",
    signed_text: bool = False,
    difference: bool = False,
    titles: tuple[str, str] = ("without adapter", "with adapter"),
    width: float = 11.0,
) -> Figure:
    """Compose one page for an item: metadata, image heatmaps, token highlighting and scores.

    Args:
        item: The item's metadata; ``id`` (or ``item_id``) and ``title`` head the page, a
            ``text`` is shown when no text attribution is given, other scalar entries (year,
            genres, ...) are listed; an ``image`` (RGB array) is shown when no image
            attribution is given.
        image_pairs: Image attributions: a ``(without, with)`` tuple, a single Attribution, or
            a list of those (one row each, e.g. one per method or target).
        text_pairs: Text attributions, in the same forms.
        scores: Drift/omission/faithfulness numbers, e.g.
            ``{"without adapter": {"drift": 0.4, ...}, "with adapter": {...}}`` (rows = keys),
            a flat dict, or a list of dicts.
        sanity: Sanity-check results in the same forms, or a
            :class:`~befa_viz.attribution.sanity.SanityReport` (or its ``to_dict()``), shown as
            one row per control.
        shared_scale: One colour scale per pair (``False``: one per map).
        percentile: Image colour-scale percentile (see :func:`~befa_viz.viz.overlay`).
        text_percentile: Text colour-scale percentile (see :func:`~befa_viz.viz.token_html`).
        normalise: ``"none"`` (absolute: a weak map of a pair looks weak) or ``"mean"`` (each
            map divided by its mean, labelled; see :func:`~befa_viz.viz.magnitude_map`).
        alpha: Heat opacity at ``vmax``.
        cmap: Heat colour map.
        base: ``"grey"`` or ``"colour"`` base image.
        signed_text: Colour token signs red/blue.
        difference: Add a ``with − without`` panel to each image pair.
        titles: Labels of the two variants.
        width: Page width in inches; the height follows the content.

    Returns:
        A figure; :func:`~befa_viz.viz.figure_scales` lists the image then the text scales.

    Example:
        >>> from befa_viz.testing import synthetic_attribution as s
        >>> fig = item_report_figure({"id": "i0", "title": "red box"},
        ...                          (s(0, "without"), s(0)), (s(0, "without", "text"),
        ...                           s(0, "with", "text")), {"with adapter": {"drift": 0.2}})
        >>> len(fig.axes) > 3
        True
    """
    if not isinstance(item, Mapping):
        raise DataError(f"item must be a dict of metadata; got {type(item).__name__}.")
    st = _Style(percentile, alpha, cmap, normalise, base)
    st.check()
    img_rows = _rows_of(image_pairs, "image", "image_pairs")
    txt_rows = _rows_of(text_pairs, "text", "text_pairs")
    inner = width - 2 * _MARGIN
    item_id = str(item.get("id", item.get("item_id", "")))
    if not item_id:
        ids = {a.item_id for r in img_rows + txt_rows for a in r}
        item_id = ", ".join(sorted(ids))

    # -- measure ---------------------------------------------------------------------------
    head = f"Item {item_id}" + (f" — {item['title']}" if item.get("title") else "")
    head_lines = L.wrap(head, inner, L.TITLE)
    meta = [f"{k}: {L.shorten(v, 80)}" for k, v in item.items()
            if k not in _META_SKIP and np.ndim(v) == 0 and not _blank(v)]
    meta_lines = L.caption_lines([" · ".join(meta)], inner, L.BODY) if meta else []
    plain_text = item.get("text") if not txt_rows else None
    text_lines = L.wrap(str(plain_text), inner, L.BODY)[:5] if plain_text else []
    item_image = item.get("image") if not img_rows else None
    header_h = (len(head_lines) * L.line_height(L.TITLE) + 0.1
                + (len(meta_lines) + len(text_lines)) * L.line_height(L.BODY) + 0.15)
    rows = []
    for r in img_rows:
        row = _Row(r, _titles(r, titles, verdict=True), st, shared=shared_scale,
                   vmax=None, show_image=True, difference=difference and len(r) == 2,
                   panel_width=2.6, max_height=3.0)
        if row.width > inner:
            row.resize(2.6 * inner / row.width, 3.0)
        rows.append(row)
    txt = []
    for r in txt_rows:
        vs, p = _scales(r, shared=shared_scale, vmax=None, percentile=text_percentile,
                        normalise=normalise)
        labels = _titles(r, titles)
        blocks = [_Block(_Tokens(a, v, signed_text, normalise), inner, 10.5, max_lines=6,
                         label=lab) for a, v, lab in zip(r, vs, labels, strict=True)]
        scales = [Scale(lab, v, p, shared_scale and len(r) > 1, normalise, signed_text, "text")
                  for v, lab in zip(vs, labels, strict=True)]
        txt.append((r, blocks, scales))
    score_tab = L.table_rows(scores) if scores else None
    sanity_tab = L.table_rows(_sanity_rows(sanity)) if sanity else None

    notes: list[str] = []
    for k, row in enumerate(rows, 1):
        sc = row.scales()
        tag = f"Image {k}" if len(rows) > 1 else "Image"
        desc = sc[0].describe() if row.one_bar else "; ".join(
            f"{s.panel}: {s.describe()}" for s in sc)
        notes.append(f"{tag} colour: {desc}. {_describe(row.atts)}.")
    for k, (r, _, sc) in enumerate(txt, 1):
        tag = f"Text {k}" if len(txt) > 1 else "Text"
        desc = sc[0].describe() if len({s.vmax for s in sc}) == 1 else "; ".join(
            f"{s.panel}: {s.describe()}" for s in sc)
        notes.append(f"{tag} highlight: {desc}. {_describe(r)}.")
    note_lines = L.caption_lines(notes, inner, L.SMALL)

    sec_h = 0.3
    height = 0.25 + header_h
    if item_image is not None:
        height = max(height, 0.25 + 1.6)
    for row in rows:
        height += sec_h + row.height + 0.3
    for _, blocks, sc in txt:
        height += sec_h + sum(b.height + 0.08 for b in blocks) + 0.1
        height += _BAR_H if len({s.vmax for s in sc}) == 1 else _BAR_H * len(sc)
    tables = [(name, t) for name, t in (("scores", score_tab), ("sanity checks", sanity_tab))
              if t]
    side_by_side = sum(L.table_width(*t) for _, t in tables) + 0.5 * (len(tables) - 1) <= inner
    tab_hs = [L.table_height(len(t[1])) for _, t in tables]
    tab_h = (max(tab_hs) if side_by_side else sum(tab_hs) + 0.25 * (len(tables) - 1)) \
        if tables else 0.0
    if tables:
        height += sec_h + tab_h + 0.2
    height += 0.1 + len(note_lines) * L.line_height(L.SMALL) + 0.25

    # -- draw ------------------------------------------------------------------------------
    sheet = L.Sheet(width, height)
    top = 0.25
    for line in head_lines:
        sheet.text(_MARGIN, top, line, fontsize=L.TITLE, fontweight="bold")
        top += L.line_height(L.TITLE)
    top += 0.1
    for line in meta_lines:
        sheet.text(_MARGIN, top, line, fontsize=L.BODY, color=L.GREY)
        top += L.line_height(L.BODY)
    for line in text_lines:
        sheet.text(_MARGIN, top, line, fontsize=L.BODY)
        top += L.line_height(L.BODY)
    if item_image is not None:
        img = np.asarray(item_image)
        ph = 1.5
        pw = ph * img.shape[1] / img.shape[0]
        _show(sheet.axes(width - _MARGIN - pw, 0.25, pw, ph), img / 255.0
              if np.issubdtype(img.dtype, np.integer) else img, None)
        top = max(top, 0.25 + 1.6)
    top += 0.15
    all_scales: list[Scale] = []
    for k, row in enumerate(rows, 1):
        label = "Image attribution" + (f" {k}" if len(rows) > 1 else "")
        meth = " | ".join(dict.fromkeys(a.method for a in row.atts))
        targ = " | ".join(dict.fromkeys(a.target for a in row.atts))
        top += _section_heading(sheet, top, f"{label}  ·  {meth}  ·  {targ}", width)
        row.draw(sheet, _MARGIN, top)
        top += row.height + 0.3
        all_scales += row.scales()
    for k, (r, blocks, sc) in enumerate(txt, 1):
        label = "Text attribution" + (f" {k}" if len(txt) > 1 else "")
        meth = " | ".join(dict.fromkeys(a.method for a in r))
        targ = " | ".join(dict.fromkeys(a.target for a in r))
        top += _section_heading(sheet, top, f"{label}  ·  {meth}  ·  {targ}", width)
        for b in blocks:
            b.draw(sheet, _MARGIN, top)
            top += b.height + 0.08
        top += 0.1
        for s in sc[:1] if len({s.vmax for s in sc}) == 1 else sc:
            _token_bar(sheet, _MARGIN, top, s.vmax, signed_text, normalise, s.percentile != 100)
            if len({s.vmax for s in sc}) > 1:
                sheet.text(_MARGIN + 2.55, top, s.panel, fontsize=L.SMALL)
            top += _BAR_H
        all_scales += sc
    if tables:
        heading = " and ".join(n for n, _ in tables).capitalize()
        top += _section_heading(sheet, top, heading, width)
        x, y = _MARGIN, top
        for (name, (header, body)), th in zip(tables, tab_hs, strict=True):
            header = [name if k == 0 and h == "" else h for k, h in enumerate(header)]
            L.draw_table(sheet, x, y, inner, header, body)
            if side_by_side:
                x += L.table_width(header, body) + 0.5
            else:
                y += th + 0.25
        top += tab_h + 0.2
    top += 0.1
    for i, line in enumerate(note_lines):
        sheet.text(_MARGIN, top + i * L.line_height(L.SMALL), line, fontsize=L.SMALL,
                   color=L.GREY)
    _record(sheet.fig, all_scales)
    return sheet.fig


# ---- saving --------------------------------------------------------------------------------


def _write_error(path: Path, exc: OSError) -> ConfigError:
    reason = exc.strerror or str(exc)
    return ConfigError(f"Cannot write '{path}': {reason}. Choose a writable output folder "
                       "(e.g. --out) and try again.")


def save_figure(
    fig: Figure,
    path: str | Path,
    formats: Sequence[str] = ("png", "svg"),
    *,
    dpi: float = 150,
) -> list[Path]:
    """Save a figure in several formats, each file written atomically.

    All formats are rendered in memory first; each file then appears complete or not at all
    (:func:`befa_viz.cache.atomic_write_bytes`). If one write fails, the files this call
    created are removed again.

    Args:
        fig: The figure.
        path: Output path *without* suffix; ``report`` gives ``report.png``, ``report.svg``.
        formats: Any of ``"png"``, ``"svg"``, ``"pdf"``.
        dpi: Resolution of raster output.

    Returns:
        The written paths, in the order of ``formats``.

    Raises:
        ConfigError: If a format is unknown, ``path`` has a format suffix, or a file cannot
            be written (the message names the path).

    Example:
        >>> import tempfile
        >>> from befa_viz.testing import synthetic_attribution
        >>> from befa_viz.viz import heatmap_figure
        >>> d = tempfile.mkdtemp()
        >>> [p.name for p in save_figure(heatmap_figure(synthetic_attribution(0)), f"{d}/i0")]
        ['i0.png', 'i0.svg']
    """
    import matplotlib

    path = Path(path)
    bad = [f for f in formats if f not in _FORMATS]
    if bad or not formats:
        raise ConfigError(f"Unsupported figure format(s) {bad or list(formats)}; use any of "
                          f"{list(_FORMATS)}.")
    if path.suffix.lower().lstrip(".") in _FORMATS:
        raise ConfigError(f"save_figure takes a path without suffix and adds one per format; "
                          f"got '{path}'. Pass '{path.with_suffix('')}'.")
    blobs: list[tuple[Path, bytes]] = []
    with matplotlib.rc_context({"svg.hashsalt": "befa-viz", "svg.fonttype": "path"}):
        for fmt in dict.fromkeys(formats):
            buf = io.BytesIO()
            meta = {"Date": None} if fmt == "svg" else ({"CreationDate": None} if fmt == "pdf"
                                                        else {"Software": "befa-viz"})
            fig.savefig(buf, format=fmt, dpi=dpi, metadata=meta, facecolor="white")
            blobs.append((path.with_name(f"{path.name}.{fmt}"), buf.getvalue()))
    written: list[Path] = []
    for target, data in blobs:
        existed = target.exists()
        try:
            atomic_write_bytes(target, data)
        except OSError as exc:
            for p in written:
                p.unlink(missing_ok=True)
            raise _write_error(target, exc) from exc
        if not existed:
            written.append(target)
    return [t for t, _ in blobs]


# Not usable as array names: np.savez_compressed's own parameters, and our metadata entry.
_RESERVED_KEYS = frozenset({"meta_json", "file", "allow_pickle"})


def _safe_key(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("_") or "map"


def save_arrays(
    attributions: Attribution | Sequence[Attribution] | Mapping[str, Attribution],
    path: str | Path,
) -> Path:
    """Write raw attribution values: one map as ``.npy``, several as one ``.npz``.

    The ``.npz`` holds, per map, ``<name>`` (the signed values as computed, not resized),
    ``<name>__tokens`` for text, and ``meta_json`` (a JSON object per name: item, modality,
    method, target, delta, params), loadable with ``np.load(path, allow_pickle=False)``.
    Use :meth:`Attribution.save` to keep one map with its image.

    Args:
        attributions: One Attribution (→ ``.npy`` of its values), a list (names
            ``<item>_<modality>_<method>_<target>``) or a dict name → Attribution (→ ``.npz``).
        path: Output file; the suffix (``.npy`` / ``.npz``) is added when missing.

    Returns:
        The written path.

    Raises:
        ConfigError: If the suffix does not match or the file cannot be written.

    Example:
        >>> import tempfile, numpy as np
        >>> from befa_viz.testing import synthetic_attribution as s
        >>> p = save_arrays({"without": s(0, "without"), "with": s(0)}, tempfile.mkdtemp() + "/a")
        >>> p.suffix, sorted(np.load(p).files)
        ('.npz', ['meta_json', 'with', 'without'])
    """
    path = Path(path)
    buf = io.BytesIO()
    if _is_attribution(attributions):
        single: Any = attributions
        suffix = ".npy"
        np.save(buf, np.asarray(_check(single)), allow_pickle=False)
    else:
        suffix = ".npz"
        if isinstance(attributions, Mapping):
            named = [(str(k), v) for k, v in attributions.items()]
        else:
            named = []
            for a in cast("Sequence[Attribution]", attributions):  # not one, not a Mapping
                base = _safe_key(f"{a.item_id}_{a.modality}_{a.method}_{a.target}")
                name, n = base, 2
                while name in dict(named):
                    name, n = f"{base}_{n}", n + 1
                named.append((name, a))
        if not named:
            raise DataError("save_arrays got no attributions to write.")
        arrays: dict[str, np.ndarray] = {}
        meta: dict[str, Any] = {}
        for name, a in named:
            key = _safe_key(name)
            if key in arrays or key in _RESERVED_KEYS:
                raise ConfigError(f"Array name '{name}' clashes with another name (as '{key}'); "
                                  f"{sorted(_RESERVED_KEYS)} are reserved.")
            arrays[key] = np.asarray(_check(a))
            if a.tokens is not None:
                arrays[f"{key}__tokens"] = np.asarray([str(t) for t in a.tokens], dtype=str)
            meta[key] = {"item_id": a.item_id, "modality": a.modality, "method": a.method,
                         "target": a.target, "delta": a.delta, "params": a.params}
        arrays["meta_json"] = np.frombuffer(json.dumps(meta, default=str).encode(), np.uint8)
        # numpy's stubs type **kwds like its `allow_pickle: bool` (reserved above).
        np.savez_compressed(buf, **cast("dict[str, Any]", arrays))
    if path.suffix == "":
        path = path.with_name(path.name + suffix)
    elif path.suffix != suffix:
        kind = "one map" if suffix == ".npy" else "several maps"
        raise ConfigError(f"save_arrays writes {kind} as '{suffix}', but the path is '{path}'. "
                          f"Use '{path.with_suffix(suffix)}'.")
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError as exc:
        raise _write_error(path, exc) from exc
    return path


# ---- HTML ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """One section of an HTML report.

    Attributes:
        title: Section heading.
        text: Paragraphs of plain text (escaped; blank lines separate paragraphs).
        figures: Matplotlib figures or RGB arrays, embedded as base64 PNG.
        table: A table as a dict of dicts (rows), a flat dict, or a list of dicts.
        html: A trusted HTML fragment inserted as is (e.g. from ``token_pair_html``).
    """

    title: str
    text: str | None = None
    figures: Sequence[Figure | np.ndarray] = field(default_factory=tuple)
    table: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None
    html: str | None = None


_CSS = """
body { font-family: 'DejaVu Sans', Arial, sans-serif; color: #222; max-width: 1150px;
       margin: 2em auto; padding: 0 1em; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; border-bottom: 1px solid #bbb; padding-bottom: 0.2em; margin-top: 1.6em; }
p, li { overflow-wrap: anywhere; }
a { color: #1f5fa8; }
img.figure { max-width: 100%; height: auto; display: block; margin: 0.6em 0; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; max-width: 100%; }
th, td { padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { overflow-wrap: break-word; hyphens: manual; }
td { overflow-wrap: break-word; }
thead th { border-top: 2px solid #222; border-bottom: 1px solid #222; }
tbody tr:last-child td { border-bottom: 2px solid #222; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
div.stack { display: grid; gap: 0.6em; margin: 0.6em 0; font-size: 0.92em; }
div.stack > div.rec { border-top: 2px solid #222; padding-top: 0.3em; }
div.stack h3 { font-size: 1em; margin: 0 0 0.3em 0; }
div.stack dl { display: grid; grid-template-columns: repeat(auto-fill, minmax(205px, 1fr));
               gap: 0.15em 1.2em; margin: 0; }
div.stack dl > div { display: flex; justify-content: space-between; gap: 0.5em;
                     border-bottom: 1px dotted #ccc; min-width: 0; }
div.stack dt { color: #555; overflow-wrap: anywhere; }
div.stack dd { margin: 0; text-align: right; font-variant-numeric: tabular-nums;
               white-space: nowrap; }
p.keys { font-size: 0.85em; color: #555; margin-bottom: 0; }
footer { margin-top: 2em; font-size: 0.8em; color: #777; }
"""


def _png_b64(obj: Figure | np.ndarray, dpi: float) -> str:
    buf = io.BytesIO()
    if isinstance(obj, Figure):
        obj.savefig(buf, format="png", dpi=dpi, facecolor="white")
    else:
        from PIL import Image

        arr = np.asarray(obj)
        if arr.dtype != np.uint8:
            arr = np.clip(np.round(arr * 255 if arr.max() <= 1 else arr), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


#: Width budget of a table in the report (px): the body's 1150 px less its padding. A table
#: whose columns cannot all fit (even with wrapped headers) is stacked instead, one block per
#: row, so that no column is cut off or scrolled away in a 1280-px window.
_TABLE_BUDGET_PX = 1100
_CHAR_PX = 7.6  # a DejaVu Sans character at the tables' 0.92 em of 16 px, with some slack
_CELL_PAD_PX = 20
#: Absolute POSIX paths with at least two parts (``/a/b``); a lone ``/`` between words is not one.
_PATH_RE = re.compile(r"(?<![\w:/.\-])(/[\w.@~+\-]+(?:/[\w.@~+\-]*)+)")


def _min_col_px(header: str, cells: Sequence[str]) -> float:
    """Narrowest a column gets: its longest header word (headers wrap) or its longest cell
    (numbers do not wrap; words in text cells do)."""
    longest_word = max((len(w) for c in cells for w in re.split(r"[\s_/]+", c)), default=0)
    head = max((len(w) for w in re.split(r"[\s_/]+", header)), default=0)
    return max(head, longest_word) * _CHAR_PX + _CELL_PAD_PX


def _fits(header: list[str], rows: list[list[str]], budget: float = _TABLE_BUDGET_PX) -> bool:
    return sum(_min_col_px(h, [r[j] for r in rows]) for j, h in enumerate(header)) <= budget


def _wbr(s: str) -> str:
    """Escape ``s`` and let the browser break it after ``_``, ``/`` and ``.`` (headers such as
    ``margin_random_target`` wrap instead of widening the table)."""
    return re.sub(r"([_/.])", r"\1<wbr>", html.escape(s))


def _breaks(escaped: str) -> str:
    """Let the browser break escaped text after ``/`` and ``_`` (run names, paths)."""
    return re.sub(r"([/_])", r"\1<wbr>", escaped)


def _link_paths(escaped: str, link_base: Path | None, breaks: bool = False) -> str:
    """Turn absolute paths in already escaped text into links.

    A path under ``link_base`` (the report's folder) links relatively, so the links survive
    moving the workspace; any other path links as a ``file://`` URI. ``breaks`` adds line-break
    opportunities after ``/`` and ``_`` (table cells: a long path or run name wraps instead of
    widening its column).
    """
    import os

    keep = _breaks if breaks else (lambda t: t)

    def repl(m: re.Match[str]) -> str:
        text = m.group(1)
        raw = html.unescape(text).rstrip(".")
        tail = text[len(html.escape(raw)):]
        path = Path(raw)
        href = path.as_uri()
        if link_base is not None:
            try:
                path.relative_to(link_base.parent)  # beside or below the report's folder
                href = Path(os.path.relpath(path, link_base)).as_posix()
            except ValueError:
                pass
        return (f'<a href="{html.escape(href, quote=True)}">{keep(html.escape(raw))}</a>'
                f"{keep(tail)}")

    out, last = [], 0
    for m in _PATH_RE.finditer(escaped):
        out += [keep(escaped[last:m.start()]), repl(m)]
        last = m.end()
    out.append(keep(escaped[last:]))
    return "".join(out)


def _table_html(data: Any, link_base: Path | None = None) -> str:
    """A table, or, when its columns cannot all fit the page, one block per row ("stacked")."""
    header, rows = L.table_rows(data)
    num = [j > 0 and all(L._looks_numeric(r[j]) for r in rows) for j in range(len(header))]

    def cell(c: str) -> str:
        return _link_paths(html.escape(c), link_base, breaks=not L._looks_numeric(c))

    if not _fits(header, rows):
        # the leading text columns (modality, variant, method, ...) name each block
        n_key = next((j for j in range(1, len(header)) if num[j]), len(header))
        n_key = min(max(n_key, 1), 4)
        blocks = []
        for k, r in enumerate(rows):
            name = " · ".join(c for c in r[:n_key] if c.strip()) or f"row {k + 1}"
            items = "".join(f"<div><dt>{_wbr(h)}</dt><dd>{cell(c)}</dd></div>"
                            for h, c in zip(header[n_key:], r[n_key:], strict=True))
            blocks.append(f'<div class="rec"><h3>{cell(name)}</h3><dl>{items}</dl></div>')
        keys = " · ".join(h for h in header[:n_key] if h)
        legend = f'<p class="keys">Each block: {html.escape(keys)}.</p>' if keys else ""
        return f'{legend}<div class="stack">{"".join(blocks)}</div>'
    head = "".join(f"<th>{_wbr(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td{" class=num" if num[j] else ""}>{cell(c)}</td>'
                         for j, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _section(s: Section | Mapping[str, Any]) -> Section:
    if isinstance(s, Section):
        return s
    if not isinstance(s, Mapping):
        raise DataError(f"A report section must be a Section or a dict; got {type(s).__name__}.")
    valid = [f.name for f in fields(Section)]
    for k in s:
        if k not in valid:
            near = closest(str(k), valid)
            hint = f" Did you mean '{near[0]}'?" if near else ""
            raise ConfigError(f"Unknown report section key '{k}'.{hint} Valid keys: {valid}.")
    if "title" not in s:
        raise ConfigError(f"A report section needs a 'title'; got keys {sorted(s)}.")
    return Section(**s)


def html_report(
    sections: Sequence[Section | Mapping[str, Any]],
    *,
    title: str = "befa-viz report",
    dpi: float = 110,
    link_base: str | Path | None = None,
) -> str:
    """Build a self-contained one-page HTML report (no external assets).

    Figures and arrays are embedded as base64 PNG; tables come from dicts or lists of dicts.
    Table headers wrap; a table whose columns would not all fit a 1280-px window even then is
    stacked (one block per row, every column labelled). Absolute paths in texts and table cells
    become links.

    Args:
        sections: :class:`Section` objects or dicts with the same keys.
        title: Page title.
        dpi: Resolution of embedded figures.
        link_base: The folder the page is written to: paths below its parent link relatively
            (the links survive moving the workspace); other paths link as ``file://`` URIs.

    Returns:
        The HTML document as a string; write it with ``Path.write_text(..., encoding="utf-8")``.

    Example:
        >>> page = html_report([{"title": "Scores", "table": {"with": {"drift": 0.2}}}])
        >>> page.startswith("<!DOCTYPE html>") and "<table>" in page
        True
    """
    from befa_viz import __version__

    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    base = Path(link_base).resolve() if link_base is not None else None
    for raw in sections:
        s = _section(raw)
        parts.append(f"<section><h2>{html.escape(s.title)}</h2>")
        if s.text:
            for para in re.split(r"\n\s*\n", s.text.strip()):
                parts.append(f"<p>{_link_paths(html.escape(para), base)}</p>")
        for f in s.figures:
            parts.append(f'<img class="figure" alt="{html.escape(s.title)}" '
                         f'src="data:image/png;base64,{_png_b64(f, dpi)}">')
        if s.table is not None:
            parts.append(_table_html(s.table, base))
        if s.html:
            parts.append(s.html)
        parts.append("</section>")
    parts.append(f"<footer>Generated by befa-viz {html.escape(__version__)}.</footer>")
    parts.append("</body></html>")
    return "\n".join(parts)
