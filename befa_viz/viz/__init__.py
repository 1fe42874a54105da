"""Figures from :class:`~befa_viz.attribution.Attribution` objects: matplotlib, numpy and PIL only.

Functions return a :class:`matplotlib.figure.Figure` (no pyplot state), an RGB array or a
string; the caller shows or saves them (:func:`save_figure`). ``viz`` never imports a model or
torch.
"""

from __future__ import annotations

from befa_viz.viz._scale import Scale, display_shape, figure_scales, magnitude_map, shared_vmax
from befa_viz.viz.heatmap import grid_figure, heatmap_figure, overlay, pair_figure
from befa_viz.viz.masks import mask_contact_sheet
from befa_viz.viz.report import Section, html_report, item_report_figure, save_arrays, save_figure
from befa_viz.viz.text import token_figure, token_html, token_pair_figure, token_pair_html

__all__ = [
    "Scale",
    "Section",
    "display_shape",
    "figure_scales",
    "grid_figure",
    "heatmap_figure",
    "html_report",
    "item_report_figure",
    "magnitude_map",
    "mask_contact_sheet",
    "overlay",
    "pair_figure",
    "save_arrays",
    "save_figure",
    "shared_vmax",
    "token_figure",
    "token_html",
    "token_pair_figure",
    "token_pair_html",
]
