"""Report verbs: write an item's figures and files, the heatmap report, content heatmaps."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from befa_viz.pipeline.data import latest_features
from befa_viz.pipeline.encode import DEFAULT_IMAGE_ENCODER, DEFAULT_TEXT_ENCODER
from befa_viz.pipeline.explain import ItemExplanation, explain_items
from befa_viz.pipeline.maps import _VARIANT_TITLES, DEFAULT_BASELINES, _method_options
from befa_viz.pipeline.memos import _COMPUTE_LOCK
from befa_viz.pipeline.runs import _attr_ws
from befa_viz.workspace import Workspace

log = logging.getLogger(__name__)

__all__ = ["MODEL_FREE_TARGETS", "ContentHeatmaps", "HeatmapReport", "content_heatmaps",
           "has_explainable_run", "heatmap_report", "write_item_report", "write_item_reports"]


def _slug(s: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(s)).strip("_.") or "item"


def _write_error(path: Path, exc: OSError) -> Exception:
    from befa_viz.errors import ConfigError

    return ConfigError(f"Cannot write the report to '{path}': {exc.strerror or exc}. Choose a "
                       "writable output folder (--out).")


def _check_out_dir(out_dir: Path) -> None:
    from befa_viz.errors import ConfigError

    probe = out_dir
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"Cannot write the report to '{out_dir}': '{probe}' is a file, not a "
                          "folder. Choose another output folder (--out).")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"Cannot write the report to '{out_dir}': '{probe}' is not writable. "
                          "Choose a writable output folder (--out).")


def _write_files(e: ItemExplanation, folder: Path, formats: tuple[str, ...]) -> dict[str, Path]:
    from befa_viz import viz

    paths: dict[str, Path] = {}
    fig_formats = tuple(f for f in formats if f != "html")
    pair = e.figure_pairs()
    is_pair = isinstance(pair, tuple)
    title = f"{e.item_id}: {e.item.get('title', '')}".rstrip(": ")
    sanity_rows = ({_VARIANT_TITLES[v]: {**{f"ρ {c}": r for c, r in s["rho"].items()},
                                         "passes": s["passes"]}
                    for v, s in e.sanity.items()} if e.sanity else None)
    # the caption names the runs; say what drift and omission are measured against
    item_meta = {**e.item, "drift/omission vs": e.relevance["source"].replace("_", " ")}
    kwargs = {"image_pairs": pair} if e.modality == "image" else {"text_pairs": pair}
    report = None
    if fig_formats or "html" in formats:
        report = viz.item_report_figure(item_meta, scores=e.figure_scores(),
                                        sanity=sanity_rows, **kwargs)
    if fig_formats:
        assert report is not None
        for p in viz.save_figure(report, folder / "report", fig_formats):
            paths[f"report.{p.suffix[1:]}"] = p
        if e.modality == "image":
            heat = (viz.pair_figure(*pair, title=title) if is_pair
                    else viz.heatmap_figure(pair, title=title))
        else:
            heat = (viz.token_pair_figure(*pair, title=title) if is_pair
                    else viz.token_figure(pair, title=title))
        for p in viz.save_figure(heat, folder / "heatmap", fig_formats):
            paths[f"heatmap.{p.suffix[1:]}"] = p
    token_html = None
    if e.modality == "text":
        token_html = viz.token_pair_html(*pair) if is_pair else viz.token_html(pair)
        (folder / "tokens.html").write_text(
            f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>'
            f"{_slug(e.item_id)}</title></head><body>{token_html}</body></html>\n",
            encoding="utf-8")
        paths["tokens.html"] = folder / "tokens.html"
    if report is not None and "html" in formats:
        sections = [viz.Section(title="Item report", figures=[report]),
                    viz.Section(title="Scores", table=e.figure_scores(),
                                text=f"Drift and omission against the {e.relevance['source']} "
                                     f"map ({e.relevance['note']}).", html=token_html)]
        (folder / "report.html").write_text(viz.html_report(sections, title=title),
                                            encoding="utf-8")
        paths["report.html"] = folder / "report.html"
    paths["attributions.npz"] = viz.save_arrays(
        {v: e.attributions[v] for v in e.variants}, folder / "attributions.npz")
    np.save(folder / "relevance.npy", np.asarray(e.relevance["map"]), allow_pickle=False)
    paths["relevance.npy"] = folder / "relevance.npy"
    (folder / "scores.json").write_text(json.dumps(e.to_dict(), indent=2, default=str) + "\n")
    paths["scores.json"] = folder / "scores.json"
    return paths


def write_item_report(
    explanation: ItemExplanation,
    out_dir: str | os.PathLike[str],
    formats: Any = ("png", "svg"),
) -> dict[str, Path]:
    """Write one item's report into ``<out_dir>/<item>-<modality>-<method>-<target>/``.

    The folder holds ``report.<fmt>`` (item page: image/text heatmaps, scores, metadata;
    :func:`befa_viz.viz.item_report_figure`), ``heatmap.<fmt>`` (the with/without pair on one
    colour scale), ``tokens.html`` (text), ``report.html`` (when ``"html"`` is in
    ``formats``), ``attributions.npz`` (raw signed maps), ``relevance.npy`` and
    ``scores.json``. It is built in a temporary folder and moved into place, so a failed
    write leaves nothing half-written (an existing report of the same request is replaced).

    Args:
        explanation: From :func:`explain_item`.
        out_dir: Parent folder.
        formats: Figure formats (``png``, ``svg``, ``pdf``) and optionally ``html``; empty
            writes only the arrays, scores and token HTML (fast, for large batches).

    Returns:
        ``{file name: path}`` of the written files (paths in the final folder).

    Raises:
        ConfigError: If the folder cannot be written or a format is unknown.
    """
    from befa_viz.cache import atomic_dir
    from befa_viz.errors import ConfigError

    formats = tuple([formats] if isinstance(formats, str) else formats)
    bad = [f for f in formats if f not in ("png", "svg", "pdf", "html")]
    if bad:
        raise ConfigError(f"Unknown report format(s) {bad}; use png, svg, pdf or html.")
    e = explanation
    out = Path(out_dir).expanduser()
    _check_out_dir(out)
    folder = out / _slug(f"{e.item_id}-{e.modality}-{e.params['method']}-{e.params['target']}")
    try:
        with atomic_dir(folder) as tmp:
            written = _write_files(e, Path(tmp), formats)
    except OSError as exc:
        raise _write_error(folder, exc) from exc
    return {name: folder / p.name for name, p in written.items()}


def write_item_reports(
    explanations: Any,
    out_dir: str | os.PathLike[str],
    formats: Any = ("png", "svg"),
) -> dict[str, Any]:
    """Write a report per item plus ``scores.csv`` (one row per item) and ``scores.json``.

    Returns:
        ``{"items": {item_id: {file: path}}, "csv": path, "json": path}``.
    """
    import pandas as pd

    from befa_viz.cache import atomic_write_bytes

    out = Path(out_dir).expanduser()
    _check_out_dir(out)
    items = {e.item_id: write_item_report(e, out, formats) for e in explanations}
    rows = pd.DataFrame([e.csv_row() for e in explanations])
    try:
        atomic_write_bytes(out / "scores.csv", rows.to_csv(index=False).encode())
        atomic_write_bytes(out / "scores.json", (json.dumps(
            [e.to_dict() for e in explanations], indent=2, default=str) + "\n").encode())
    except OSError as exc:
        raise _write_error(out, exc) from exc
    return {"items": items, "csv": out / "scores.csv", "json": out / "scores.json"}


@dataclass
class HeatmapReport:
    """What :func:`heatmap_report` did: the explanations and where their reports went."""

    explanations: list[ItemExplanation]
    out_dir: Path
    paths: dict[str, Any]

    def table(self) -> str:
        """A compact fixed-width score table (one line per item and variant)."""
        cols = ("drift", "omission", "deletion_auc", "insertion_auc", "delta")
        head = ["item", "variant", "drift", "omission", "deletion", "insertion", "delta",
                "cached", "verdict"]
        rows = []
        for e in self.explanations:
            for v in e.variants:
                s = e.scores[v]
                vals = ["–" if s.get(k) is None else
                        (f"{s[k]:.2g}" if k == "delta" else f"{s[k]:.3f}") for k in cols]
                rows.append([e.item_id if v == e.variants[0] else "", v, *vals,
                             "yes" if e.cached.get(v) else "no", str(s.get("verdict", ""))])
            if len(e.variants) == 2:
                from befa_viz.viz.verdict import pair_ratio

                r = pair_ratio(e.attributions["without"], e.attributions["with"])
                rows.append(["", "Σ|with|/Σ|without|", "undefined" if r is None else f"{r:.3g}",
                             *[""] * (len(head) - 3)])
        widths = [max(len(r[c]) for r in [head, *rows]) for c in range(len(head))]
        return "\n".join("  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)).rstrip()
                         for r in [head, *rows])


def heatmap_report(
    item_ids: Any = None,
    *,
    top_drift: int | None = None,
    workspace: Workspace | str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    formats: Any = ("png", "svg"),
    **kwargs: Any,
) -> HeatmapReport:
    """Explain items and write their reports: what ``befa-viz heatmap`` runs.

    Args:
        item_ids: Raw item ids (one id or several).
        top_drift: Instead of ids, the N most drifting items (see :func:`explain_items`).
        workspace: Workspace (or its folder).
        out_dir: Output folder; default ``<workspace>/reports/heatmaps/<run name>``.
        formats: Figure formats (and ``html``).
        **kwargs: Passed to :func:`explain_items` (``run``, ``target``, ``method``, ...).

    Returns:
        The explanations, the output folder and the written paths (one id given as a string:
        ``{file: path}`` of its folder; a list or ``top_drift``: see
        :func:`write_item_reports`, with ``scores.csv``).
    """
    ws = _attr_ws(workspace)
    if out_dir is not None:  # fail before the (possibly long) attribution
        _check_out_dir(Path(out_dir).expanduser())
    exps = explain_items(item_ids, top_drift=top_drift, workspace=ws, **kwargs)
    out = Path(out_dir).expanduser() if out_dir is not None else (
        ws.reports_dir / "heatmaps" / exps[0].params["run"])
    single = top_drift is None and isinstance(item_ids, (str, int))
    paths = (write_item_report(exps[0], out, formats) if single
             else write_item_reports(exps, out, formats))
    return HeatmapReport(exps, out, paths)


#: Targets that need no trained model: they explain the pretrained encoder alone.
MODEL_FREE_TARGETS = ("content_focus", "random")


@dataclass
class ContentHeatmaps:
    """Model-free heatmaps of a dataset's items (:func:`content_heatmaps`).

    Attributes:
        dataset: The dataset explained.
        encoder: Key of the encoder whose features were explained.
        attributions: One per item, in the order asked.
        out_dir: Output folder (``None`` if nothing was written).
        paths: ``{item_id: [written files]}``.
    """

    dataset: str
    encoder: str
    attributions: list[Any]
    out_dir: Path | None = None
    paths: dict[str, list[Path]] = field(default_factory=dict)


def has_explainable_run(workspace: Workspace | str | os.PathLike[str] | None = None,
                        dataset: str | None = None, modality: str = "image") -> bool:
    """Whether ``dataset`` (default: the latest) has a complete run with ``modality``
    features, i.e. whether model targets can be explained at all."""
    ws = _attr_ws(workspace)
    name = ws.resolve_dataset(dataset)
    if ws.load_dataset(name).items_only:
        return False
    return any(modality in json.loads((p / "run.json").read_text()).get("features", {})
               for p in ws.run_dirs(dataset=name))


def content_heatmaps(
    item_ids: Any,
    *,
    workspace: Workspace | str | os.PathLike[str] | None = None,
    dataset: str | None = None,
    modality: str = "image",
    target: str = "content_focus",
    method: str | None = None,
    n_steps: int | None = None,
    baseline: str | None = None,
    encoder: str | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    formats: Any = ("png",),
    seed: int = 0,
    device: str | None = None,
    progress: bool = False,
) -> ContentHeatmaps:
    """Explain items with a model-free target (the pretrained encoder alone), no run needed.

    This is what an items-only catalog (imported without interactions) can be explained
    with, and what any dataset without a trained run offers: ``content_focus`` attributes
    ⟨E(x), E(x₀)/‖E(x₀)‖⟩, i.e. what the encoder's feature of the item is built from.

    Args:
        item_ids: Raw item ids, or one id.
        workspace: Workspace (or its folder).
        dataset: Dataset name; default the latest (announced).
        modality: ``"image"`` or ``"text"``.
        target: ``content_focus`` or ``random`` (:data:`MODEL_FREE_TARGETS`).
        method: Name in ``befa_viz.attribution.ATTRIBUTIONS``; default the evidence-chosen
            method of the encoder (:func:`befa_viz.attribution.defaults.default_method`) for
            images, ``ig`` for text.
        n_steps: Integration steps (path methods); default the chosen recipe's.
        baseline: Baseline of path methods (default ``blur`` / ``pad``).
        encoder: Encoder key; default the one that encoded the dataset's newest features
            of ``modality`` (``befa-viz encode``).
        out_dir: Write one figure (``formats``) and the attribution (``.npz``) per item
            here; ``None`` writes nothing.
        formats: Figure formats (``png``, ``svg``, ``pdf``).
        seed: Seed of random targets and noisy methods.
        device: Torch device.
        progress: Progress bar over the items.

    Returns:
        The attributions (and written paths).

    Raises:
        ConfigError: A target that needs a model, an unknown method or modality, or no
            encoder known for the dataset.
        UnknownNameError: An unknown item id.
        DataError: An item without an image (image) or text (text).
    """
    from befa_viz.attribution import ATTRIBUTIONS, explain
    from befa_viz.encoders import create_encoder
    from befa_viz.encoders.store import item_text
    from befa_viz.errors import ConfigError, DataError

    if target not in MODEL_FREE_TARGETS:
        raise ConfigError(
            f"Target {target!r} needs a trained recommender; without a run only the model-free "
            f"targets {', '.join(MODEL_FREE_TARGETS)} apply (--target content_focus)."
        )
    if modality not in DEFAULT_BASELINES:
        raise ConfigError(f"modality must be 'image' or 'text'; got {modality!r}.")
    if method is not None:
        ATTRIBUTIONS.get(method)
    ws = _attr_ws(workspace)
    name = ws.resolve_dataset(dataset)
    ds = ws.load_dataset(name)
    text_field = "text"
    if encoder is None:
        found = latest_features(ws, name, [modality]).get(modality)
        man = found / "manifest.json" if found is not None else None
        if man is None or not man.is_file() or not json.loads(man.read_text()).get("encoder"):
            raise ConfigError(
                f"No encoder is known for the {modality} of dataset {name!r}: encode it first "
                f"('befa-viz encode -d {name}') or name one (--encoder KEY, e.g. "
                f"{DEFAULT_IMAGE_ENCODER if modality == 'image' else DEFAULT_TEXT_ENCODER})."
            )
        manifest = json.loads(man.read_text())
        encoder = str(manifest["encoder"])
        text_field = str((manifest.get("policies") or {}).get("text_field", "text"))
        log.info("explaining with encoder %s (it encoded %s)", encoder, found)
    if method is None:  # the evidence-chosen default; its target needs a model, ours is model-free
        from befa_viz.attribution.defaults import default_method

        rec = default_method(encoder, workspace=ws) if modality == "image" else None
        method = rec.method if rec is not None else "ig"
        baseline = baseline or (rec.baseline if rec is not None else None)
        n_steps = n_steps if n_steps is not None or rec is None else rec.n_steps
        log.info("default attribution method for %s: %s", encoder, method)
    enc = create_encoder(encoder, modality=modality)
    if device is not None:
        enc.to(device)
    ids = [item_ids] if isinstance(item_ids, (str, int)) else list(item_ids)
    if not ids:
        raise ConfigError("No item ids given.")
    idx = [ds.catalog.index_of(i) for i in ids]
    inputs: list[Any] = []
    for i in idx:
        iid = ds.catalog.item_ids[i]
        if modality == "image":
            if not ds.catalog.has_image(i):
                raise DataError(f"Item {iid!r} has no image in dataset {name!r}; explain its "
                                "text instead (--modality text).")
            inputs.append(ds.catalog.image(i))
        else:
            text = item_text(ds.catalog, i, text_field)
            if not text.strip():
                raise DataError(f"Item {iid!r} has no text in dataset {name!r}; explain its "
                                "image instead (--modality image).")
            inputs.append(text)
    options = _method_options(method, modality, n_steps, baseline, ds, enc)
    atts: list[Any] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(idx), desc=f"{method} {modality}", unit="map")
    try:
        for j, i in enumerate(idx):  # one item at a time: content_focus's reference is per item
            with _COMPUTE_LOCK:
                (att,) = explain(enc, None, [inputs[j]], [i], target=target, method=method,
                                 modality=modality, item_ids=[ds.catalog.item_ids[i]],
                                 seed=seed, **dict(options))
            att.params.update({"dataset": name, "dataset_fingerprint": ds.fingerprint(),
                               "encoder": encoder, "encoder_fingerprint": enc.fingerprint()})
            atts.append(att)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    result = ContentHeatmaps(name, encoder, atts)
    if out_dir is not None:
        result.out_dir = _write_content_files(atts, Path(out_dir).expanduser(), formats)
        result.paths = {a.item_id: sorted(result.out_dir.glob(f"{_slug(a.item_id)}.*"))
                        for a in atts}
    return result


def _write_content_files(atts: list[Any], out: Path, formats: Any) -> Path:
    from befa_viz.viz import heatmap_figure, save_figure, token_figure

    _check_out_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    for att in atts:
        base = out / _slug(att.item_id)
        fig = heatmap_figure(att) if att.modality == "image" else token_figure(att)
        save_figure(fig, base, tuple(f for f in formats if f != "html"))
        att.save(base.with_suffix(".npz"))
    return out
