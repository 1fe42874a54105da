"""The benchmark's report: tables, margins figure, example grids and the HTML page."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from befa_viz.benchmark.result import BenchmarkResult
from befa_viz.benchmark.scoring import _CONTROL_METHOD, _P_PASS, CHEAP_METHODS, _mask_at
from befa_viz.errors import ConfigError
from befa_viz.workspace import Workspace

log = logging.getLogger(__name__)

_ROW_LABELS = (("model-free", "random", "random target (control)"),
               ("model-free", "content_focus", "content focus (raw feature)"),
               ("without", "behaviour_alignment", "behaviour alignment, without adapter"),
               ("without", "content_score", "content score, without adapter"),
               ("with", "content_score", "content score, with adapter"))


def _examples(store: Mapping[tuple[str, str, str], dict[int, Any]], gt: Any,
              methods: Sequence[str], idx: list[int]) -> dict[str, dict[str, list[Any]]]:
    """Example maps per method for the report's grids (rows: truth, control, targets)."""
    from befa_viz.attribution import Attribution

    ctrl = [store[("control", _CONTROL_METHOD, "-")][i] for i in idx]
    truth = []
    for a, i in zip(ctrl, idx, strict=True):
        m = _mask_at(gt.masks["product"][i], np.asarray(a.values).shape, a)
        truth.append(Attribution(a.item_id, "image", "ground truth",
                                 "product mask" if gt.planted else "garment mask",
                                 m.astype(np.float32), image=a.image, params={
                                     k: a.params[k] for k in ("content_box", "source_size")
                                     if k in a.params}))
    out: dict[str, dict[str, list[Any]]] = {}
    truth_label = "planted product mask" if gt.planted else "garment mask"
    for method in methods:
        rows: dict[str, list[Any]] = {truth_label: truth,
                                      "control |x − blur(x)|": ctrl}
        for variant, target, label in _ROW_LABELS:
            maps = store.get((variant, method, target))
            if maps is not None and all(i in maps for i in idx):
                rows[label] = [maps[i] for i in idx]
        out[method] = rows
    return out


def _margins_figure(table: Any) -> Any:
    """Bar chart: mean margin over the random-target and input controls per method/target."""
    from matplotlib.figure import Figure

    t = table[(table["modality"] == "image") & (table["variant"] != "control")
              & (table["target"] != "random")]
    if t.empty:
        return None
    methods = list(dict.fromkeys(t["method"]))
    series = [("model-free", "content_focus", "content focus (raw feature)", "#9e9e9e"),
              ("without", "behaviour_alignment", "behaviour alignment (without)", "#6baed6"),
              ("without", "content_score", "content score, without adapter", "#2171b5"),
              ("with", "behaviour_alignment", "behaviour alignment (with)", "#fdae6b"),
              ("with", "content_score", "content score, with adapter", "#d94801")]
    series = [s for s in series if ((t["variant"] == s[0]) & (t["target"] == s[1])).any()]
    fig = Figure(figsize=(11, 3.8))
    axes = fig.subplots(1, 2, sharey=True)
    width = 0.8 / max(1, len(series))
    for ax, col, title in ((axes[0], "margin_random_target", "margin over the random-target "
                            "control"), (axes[1], "margin_input", "margin over |x − blur(x)|")):
        for k, (variant, target, label, colour) in enumerate(series):
            vals = []
            for m in methods:
                r = t[(t["method"] == m) & (t["variant"] == variant) & (t["target"] == target)]
                vals.append(float(r[col].iloc[0]) if len(r) else np.nan)
            x = np.arange(len(methods)) + (k - (len(series) - 1) / 2) * width
            ax.bar(x, vals, width, label=label, color=colour)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(np.arange(len(methods)), methods)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("Δ mass in the product mask")
    axes[1].legend(fontsize=7, loc="best")
    fig.suptitle("Localisation of the product / garment: margin of each method and target over "
                 "its controls (mean over items; > 0 = better than the control)", fontsize=10)
    fig.tight_layout()
    return fig


def _round(df: Any, digits: int = 3) -> list[dict[str, Any]]:
    out = []
    for r in df.to_dict(orient="records"):
        row = {}
        for k, v in r.items():
            if isinstance(v, float):
                v = None if not np.isfinite(v) else (round(v, digits) if abs(v) >= 1e-3 or v == 0
                                                     else float(f"{v:.2e}"))
            row[k] = v
        out.append(row)
    return out


def _truth_words(p: Mapping[str, Any]) -> str:
    if p.get("truth", "synthetic") == "synthetic":
        return "synthetic shop with planted truth"
    return (f"real photos with garment masks: {p.get('items_usable_mask', '?')} explainable "
            f"items have a usable mask, {p.get('items_unusable_mask', '?')} were skipped for an "
            "unusable one; text labels are weak (attribute words in the text)")


def _report_text(res: BenchmarkResult) -> str:
    p = res.params
    opts = "; ".join(f"{m}: {', '.join(f'{k}={v}' for k, v in o.items()) or 'defaults'}"
                     for m, o in p["options"].items())
    return (
        f"Dataset {res.dataset!r} ({_truth_words(p)}), runs: "
        f"{res.runs['without']} (without adapter) and {res.runs['with']} (with adapter). "
        f"Image encoder {p['image_encoder']}. Cheap methods ({', '.join(sorted(CHEAP_METHODS))})"
        f" on {p['n_items']} items, the others on {p['n_items_expensive']} of them; text on "
        f"{p['n_text_items']} items. Options: {opts}. Seed {p['seed']}, q = {p['q']}."
        "\n\n"
        "Every score is measured next to three controls: the same method on a random target "
        "direction (random-target control), the model-free |x − blur(x)| map (input control) "
        "and smooth random blobs (random map). A map is evidence about the model only when it "
        "beats the first two: 'passes' means a positive mean margin over both with a sign "
        f"test p < {_P_PASS} over items. Mass-in-mask alone is not evidence: a method can "
        "localise the product at twice the chance level while showing only the input."
        "\n\n"
        "mass_in_mask: share of the map's evidence (|values|; similarity: max(cos, 0)) on the "
        "product (planted) or garment mask; chance: its area share; ratio = mass / chance; "
        "pointing: "
        "the map's maximum lies on the product; drift/omission: against the product mask at "
        "the top-q mass region; decoy: evidence on the product-coloured decoy blob (items "
        "that have one). Text: precision@k of the top-|attribution| words against the relevant "
        "attribute words (k = number of relevant words)."
        + (f"\n\nNote: {p['text_note']}." if p.get("text_note") else "")
        + f"\n\n{p['maps_computed']} maps computed, {p['maps_cached']} served from the "
          f"attribution cache."
    )


def _write_report(res: BenchmarkResult, ws: Workspace, out_dir: Any, reuse: bool) -> None:
    """Write tables, figures and the HTML page (skipped when an identical report exists)."""
    import matplotlib

    from befa_viz import viz
    from befa_viz.cache import atomic_dir

    key = res.params["key"]
    if out_dir is None:
        out = ws.reports_dir / f"benchmark-{res.dataset}-{key[:8]}"
    else:
        out = Path(out_dir).expanduser()
        if out.is_dir() and any(out.iterdir()) and not (out / "benchmark.json").is_file():
            raise ConfigError(f"Report folder '{out}' exists and is not a benchmark report; "
                              "it would be replaced. Choose an empty or new folder (--out).")
    names = ("report.html", "benchmark.json", "table.csv", "items.csv", "adapter.csv")
    if reuse and all((out / n).is_file() for n in names):
        try:
            old_key = json.loads((out / "benchmark.json").read_text()).get("params", {}).get("key")
        except (OSError, json.JSONDecodeError):
            old_key = None
        if old_key == key:
            log.info("benchmark report %s is up to date; not rewritten", out)
            res.out_dir = out
            res.paths = {**{p.name: p for p in sorted(out.glob("*.png"))},
                         **{n: out / n for n in names}}
            res.params["report_reused"] = True
            return
    res.params["report_reused"] = False
    sections: list[Any] = [viz.Section("What was measured", text=_report_text(res))]
    head = res.headline()
    sections.append(viz.Section(
        "Headline: behaviour-driven targets vs their controls", table=_round(head),
        text="Rows that carry the argument: does the method's map of a behaviour-driven target "
             "find the product (garment) better than its controls? Δ = mass-in-mask margin."))
    paths: dict[str, Path] = {}
    with matplotlib.rc_context({"font.size": 9}), atomic_dir(out) as tmp:
        tmp = Path(tmp)
        res.table.to_csv(tmp / "table.csv", index=False)
        res.items.to_csv(tmp / "items.csv", index=False)
        res.adapter.to_csv(tmp / "adapter.csv", index=False)

        def png(name: str, fig: Any) -> np.ndarray:
            """Save once as PNG and embed that raster (no second rendering for the HTML)."""
            from PIL import Image

            path = viz.save_figure(fig, tmp / name, ("png",), dpi=110)[0]
            paths[path.name] = out / path.name
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB"))

        margins = _margins_figure(res.table)
        if margins is not None:
            sections.append(viz.Section("Margins over the controls",
                                        figures=[png("margins", margins)]))
        sections.append(viz.Section(
            "Adapter: raw feature vs without vs with adapter", table=_round(res.adapter),
            text="Drift, omission and mass-in-mask against the product (garment) mask, paired "
                 "over the same items (p: sign test, with vs without). Only methods that pass "
                 "their controls say something about the representations."))
        rank = {f"{v} adapter ({r['model']})": {**{f"test {k}": x for k, x in r["test"].items()},
                                                **{f"valid {k}": x for k, x in r["valid"].items()},
                                                "best epoch": r["best_epoch"]}
                for v, r in res.ranking.items()}
        sections.append(viz.Section("Ranking quality with and without the adapter", table=rank,
                                    text="Full ranking, MMRec protocol, test at the best "
                                         "validation epoch (the runs' recorded metrics)."))
        if res.gate:
            sections.append(viz.Section(
                "Adapter gate distribution", table={m: g for m, g in res.gate.items()},
                text="Over all items and dimensions of the run with the adapter. A gate pinned "
                     "near 1 passes the behaviour embedding through unchanged: the adapter "
                     "then does nothing to the content pathway, whatever the heatmaps say."))
        for method, rows in res.examples.items():
            fig = viz.grid_figure(list(rows.values()), row_labels=list(rows),
                                  title=f"{method}: example maps", panel_width=1.5)
            sections.append(viz.Section(f"Example maps: {method}",
                                        figures=[png(f"grid-{method}", fig)]))
        sections.append(viz.Section("All rows", table=_round(res.table),
                                    text="Every (modality, variant, method, target); "
                                         "items.csv has the per-item scores."))
        page = viz.html_report(sections, title=f"Attribution benchmark on {res.dataset!r}")
        (tmp / "report.html").write_text(page, encoding="utf-8")
        (tmp / "benchmark.json").write_text(json.dumps({
            "dataset": res.dataset, "runs": res.runs, "params": res.params,
            "ranking": res.ranking, "gate": res.gate, "table": _round(res.table, 6),
            "adapter": _round(res.adapter, 6)}, indent=2, default=str) + "\n")
    for name in ("report.html", "benchmark.json", "table.csv", "items.csv", "adapter.csv"):
        paths[name] = out / name
    res.out_dir, res.paths = out, paths
