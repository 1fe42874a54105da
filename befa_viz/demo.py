"""The main job behind ``make demo``: the whole pipeline on the synthetic shop, in minutes.

``befa-viz demo --dataset hm`` runs the same pipeline on the H&M fashion sample (real
packshots; ``../shared/data/hm-fashion-sample``, never copied): import it, make the garment
masks (its ground truth, :mod:`befa_viz.data.truth`), then encode, train, benchmark, explain
and report exactly as on the shop.

:func:`run_demo` generates the synthetic shop (planted ground truth), encodes it with the
real pretrained MobileNetV2 and all-MiniLM-L6-v2, trains FREEDOM without and with the BeFA
adapter, runs the attribution benchmark (:mod:`befa_viz.benchmark`), explains a sample of
items through the attribution pipeline (so the explorer finds their maps in the cache), and
writes one offline HTML page under ``<workspace>/reports/demo-<dataset>/``.

Every step reuses what an earlier run left in the workspace: the dataset (same knobs), the
features (same encoder and data), the runs (same config hash) and the attribution maps
(same inputs), so a second run costs the scoring and the report only.

Why FREEDOM, lr 5e-3, 40 epochs (measured on the default shop, one torch thread, test
Recall@20 at the best validation epoch): FREEDOM 0.244 without / 0.234 with the adapter
(VBPR: 0.203 / 0.126; BPR-MF, no content, 80 epochs at lr 1e-3: 0.112). At lr 1e-3 FREEDOM
needs 80+ epochs for the same quality.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from befa_viz.errors import ConfigError, DataError
from befa_viz.workspace import Workspace

__all__ = ["DEMO_SIZES", "DemoResult", "DemoSize", "run_demo"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoSize:
    """What one demo size runs (see :data:`DEMO_SIZES`)."""

    dataset: str  # dataset name in the workspace
    shop: Mapping[str, Any]  # knobs of befa_viz.data.synth.ShopConfig (others: defaults)
    image_encoder: str
    text_encoder: str
    model: str  # backbone trained without and with the adapter
    epochs: int
    overrides: Mapping[str, Any]  # further TrainConfig keys
    n_items: int  # benchmark items for cheap methods (and the explorer's default sample)
    n_items_expensive: int  # items explained with IG and the other path methods
    n_text_items: int
    n_steps: int
    methods: tuple[str, ...]  # benchmarked image methods
    expensive_targets: tuple[str, ...]  # targets of the path methods (cheap ones get all)
    demo_methods: tuple[str, ...]  # methods of the explained sample (explain_items)
    faithfulness_steps: int
    n_examples: int  # items per example grid in the benchmark report
    source: str = "synth"  # "synth" (generate the shop) or an importer name (real data)


#: ``"default"``: what ``make demo`` runs. ``"small"``: tiny random encoders, a 40-item shop
#: and two epochs — the scaled-down path the test suite runs (it shows nothing about BeFA).
DEMO_SIZES: dict[str, DemoSize] = {
    "default": DemoSize(
        dataset="shop", shop={}, image_encoder="torchvision:mobilenet_v2",
        text_encoder="hf:minilm", model="freedom", epochs=40, overrides={"lr": 5e-3},
        n_items=24, n_items_expensive=6, n_text_items=8, n_steps=16,
        methods=("ig", "layer_ig", "gradcam", "similarity"),
        expensive_targets=("content_focus", "content_score"), demo_methods=("ig", "gradcam"),
        faithfulness_steps=10, n_examples=4),
    "small": DemoSize(
        dataset="shop-small",
        shop={"n_items": 40, "n_users": 30, "image_size": 64, "interactions_per_user": (5, 10)},
        image_encoder="tiny:cnn", text_encoder="tiny:text", model="freedom", epochs=2,
        overrides={"lr": 5e-3}, n_items=6, n_items_expensive=2, n_text_items=3, n_steps=4,
        methods=("ig", "gradcam"), expensive_targets=("content_score",),
        demo_methods=("ig", "gradcam"), faithfulness_steps=4, n_examples=1),
}

#: The demo on real data, by dataset: ``befa-viz demo --dataset hm`` (the H&M sample, with
#: garment masks). FREEDOM with lr 5e-3, dropout 0.9 and MobileNetV2 + MiniLM features: the
#: best FREEDOM point of ``benches/hm_quality.py`` on validation.
REAL_DEMOS: dict[str, DemoSize] = {
    "hm": DemoSize(
        dataset="hm", shop={}, image_encoder="torchvision:mobilenet_v2",
        text_encoder="hf:minilm", model="freedom", epochs=300,
        overrides={"lr": 5e-3, "model_params.dropout": 0.9, "patience": 20},
        n_items=24, n_items_expensive=6, n_text_items=8, n_steps=16,
        methods=("ig", "layer_ig", "gradcam", "similarity"),
        expensive_targets=("content_focus", "content_score"), demo_methods=("ig", "gradcam"),
        faithfulness_steps=10, n_examples=4, source="hm"),
}
#: Where ``--dataset hm`` finds its data by default (beside the checkout, as the tests do).
DEFAULT_DATA = {"hm": Path(__file__).resolve().parents[1].parent / "shared" / "data"
                / "hm-fashion-sample"}

_STAGES = ("shop", "encode", "train without adapter", "train with adapter", "benchmark",
           "explain sample", "report")


@dataclass
class DemoResult:
    """What :func:`run_demo` did and found.

    Attributes:
        workspace: The workspace folder.
        size: ``"default"`` or ``"small"``.
        dataset: Dataset name.
        runs: Run name per variant (``"without"``, ``"with"``).
        ranking: Per variant: ``test`` and ``valid`` Recall/NDCG@10/20, best epoch.
        scores: Per method and variant: mean drift, omission, mass-in-mask, deletion and
            insertion AUC of the explained sample (against the planted product mask).
        gate: Adapter gate distribution per modality (run with the adapter).
        benchmark: The :class:`~befa_viz.benchmark.BenchmarkResult`.
        report: The HTML report.
        seconds: Wall time of the whole call.
        stages: Wall time per stage.
        reused: Per stage, whether it reused earlier results (dataset, features, runs,
            attribution maps, benchmark report).
        load: The machine's 1-minute load average at the start and at the end.
        main_method: The method of the main figure (the benchmark's best on behaviour-driven
            targets among ``demo_methods``).
        first_stages: Wall time per stage when the stage's work was last actually done: a
            stage this call reused keeps the time of the run that computed it (from the
            earlier ``summary.json``), so a rerun that reuses everything still reports what
            the work costs.
    """

    workspace: Path
    size: str
    dataset: str
    runs: dict[str, str]
    ranking: dict[str, dict[str, Any]]
    scores: dict[str, dict[str, dict[str, float]]]
    gate: dict[str, dict[str, float]]
    benchmark: Any
    report: Path
    seconds: float
    stages: dict[str, float] = field(default_factory=dict)
    reused: dict[str, bool] = field(default_factory=dict)
    load: tuple[float, float] = (float("nan"), float("nan"))
    main_method: str = ""
    first_stages: dict[str, float] = field(default_factory=dict)

    @property
    def explorer_command(self) -> str:
        """The command that opens the explorer on this workspace."""
        return f"streamlit run apps/explorer.py -- --workspace {self.workspace}"

    def summary(self) -> str:
        """A short plain-text summary: quality, drift/omission, benchmark headline, paths."""
        lines = [f"befa-viz demo ({self.size}) on {self.dataset!r} in {self.seconds:.0f} s "
                 f"(load average {self.load[0]:.1f} → {self.load[1]:.1f} on "
                 f"{os.cpu_count()} CPUs); reused: "
                 + (", ".join(k for k, v in self.reused.items() if v) or "nothing")]
        for v in ("without", "with"):
            r = self.ranking.get(v, {})
            t = r.get("test", {})
            lines.append(f"  {v:>7} adapter: test Recall@20 {t.get('Recall@20', float('nan')):.4f}"
                         f"  NDCG@20 {t.get('NDCG@20', float('nan')):.4f}  ({r.get('run', '')})")
        for mod, g in self.gate.items():
            lines.append(f"  BeFA gate ({mod}): mean {g['mean']:.3f}, q05–q95 "
                         f"{g.get('q05', float('nan')):.3f}–{g.get('q95', float('nan')):.3f}")
        for method, per in self.scores.items():
            parts = [f"{v} drift {s['drift']:.2f} / omission {s['omission']:.2f}"
                     + ("" if s.get("n_scored", s["n_items"]) == s["n_items"]
                        else f" ({s['n_scored']} of {s['n_items']} maps scored)")
                     if s.get("n_scored", 1) else
                     f"{v}: no map scored (all-zero maps or a target that barely moves; the "
                     "report gives each map's reason)"
                     for v, s in per.items()]
            lines.append(f"  {method} (content score, {self._n_sample(method)} items): "
                         + "; ".join(parts))
        head = self.benchmark.headline()
        img = head[(head["modality"] == "image") & (head["target"] == "content_score")]
        lines.append("  benchmark (content score; Δ = mass-in-mask margin over the random-target"
                     " / |x − blur(x)| control; pass = both > 0, sign test p < 0.05):")
        for r in img.itertuples(index=False):
            lines.append(f"    {r.method:<10} {r.variant:>7}: mass {r.mass_in_mask:.2f} (chance "
                         f"{r.chance:.2f}), Δ {r.margin_random_target:+.3f} / "
                         f"{r.margin_input:+.3f}, {'passes' if r.passes else 'fails'}")
        other = head[(head["modality"] == "image") & (head["target"] != "content_score")
                     & (head["passes"] == True)]  # noqa: E712 - a column of True/False/None
        for r in other.itertuples(index=False):
            lines.append(f"    {r.method:<10} {r.variant:>7}: {r.target} passes too: mass "
                         f"{r.mass_in_mask:.2f}, Δ {r.margin_random_target:+.3f} / "
                         f"{r.margin_input:+.3f}")
        txt = head[head["modality"] == "text"]
        for r in txt.itertuples(index=False):
            lines.append(f"    text {r.method:<5} {r.variant:>7}: precision {r.precision:.2f}, "
                         f"Δ {r.margin_random_target:+.3f} / {r.margin_input:+.3f}, "
                         f"{'passes' if r.passes else 'fails'}")
        lines.append(f"report: {self.report}")
        lines.append(f"benchmark: {self.benchmark.out_dir}")
        lines.append(f"explore: {self.explorer_command}")
        return "\n".join(lines)

    def _n_sample(self, method: str) -> int:
        return int(next(iter(self.scores[method].values())).get("n_items", 0))


def _loadavg() -> float:
    try:
        return float(os.getloadavg()[0])
    except OSError:  # pragma: no cover - not on every platform
        return float("nan")


class _Stages:
    """An outer progress bar over the demo's stages (when ``progress``), and their timings."""

    def __init__(self, progress: bool) -> None:
        self.times: dict[str, float] = {}
        self.bar = None
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=len(_STAGES), desc="demo", unit="stage",
                            bar_format="{desc}: {n_fmt}/{total_fmt} stages |{bar}| "
                                       "{elapsed}", position=0)
        self._name: str | None = None
        self._t0 = 0.0

    def start(self, name: str, label: str | None = None) -> None:
        """Start stage ``name`` (the key of its timing); ``label`` is what is shown."""
        self._name, self._t0 = name, time.perf_counter()
        log.info("demo: %s", label or name)
        if self.bar is not None:
            self.bar.set_description_str(f"demo [{label or name}]")

    def done(self) -> None:
        assert self._name is not None
        self.times[self._name] = round(time.perf_counter() - self._t0, 1)
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.set_description_str("demo")
            self.bar.close()


def _complete_runs(ws: Workspace) -> set[str]:
    return {p.name for p in ws.run_dirs()}


def run_demo(
    workspace: Workspace | str | os.PathLike[str] | None = None,
    *,
    size: Literal["default", "small"] = "default",
    dataset: str = "shop",
    data: str | os.PathLike[str] | None = None,
    threads: int | None = 1,
    progress: bool = True,
) -> DemoResult:
    """Run the whole pipeline on the synthetic shop and write one HTML report.

    Stages (each reuses what an earlier run left in the workspace): generate the shop, encode
    images and texts, train the backbone without and with BeFA, run the attribution benchmark
    (:func:`befa_viz.benchmark.run_benchmark`), explain a sample of items with the pipeline
    verbs (maps land in the attribution cache, so the explorer shows them at once), write
    ``<workspace>/reports/demo-<dataset>/report.html``.

    Args:
        workspace: Workspace (or its folder); default ``$BEFA_VIZ_WORKSPACE`` or
            ``./befa-workspace``.
        size: ``"default"`` (real MobileNetV2 and MiniLM; minutes) or ``"small"`` (tiny
            random encoders and a 40-item shop; seconds, for tests). Ignored for real data.
        dataset: ``"shop"`` (the synthetic shop) or a real dataset of :data:`REAL_DEMOS`
            (``"hm"``: the H&M sample, imported and masked first).
        data: Folder of the real dataset; default :data:`DEFAULT_DATA` (``../shared/data``).
        threads: Torch threads during the call (one is fastest on a 2-core machine);
            ``None`` leaves the setting alone.
        progress: Progress bars for the stages and their work.

    Returns:
        The :class:`DemoResult` (``summary()`` is what ``befa-viz demo`` prints).

    Raises:
        ConfigError: For an unknown ``size``.
        MissingWeightsError: If the default size's pretrained weights are not installed
            (``make setup`` installs them).
        DataError: If the workspace holds a dataset of the same name made differently.
    """
    import torch

    if dataset != "shop":
        if dataset not in REAL_DEMOS:
            raise ConfigError(f"Unknown demo dataset {dataset!r}; choose 'shop' or "
                              f"{', '.join(map(repr, REAL_DEMOS))}.")
        cfg = REAL_DEMOS[dataset]
        source = Path(data) if data is not None else DEFAULT_DATA[dataset]
        if not source.is_dir():
            raise DataError(f"The {dataset!r} demo needs its data at {source}, which does not "
                            "exist; pass its folder (befa-viz demo --dataset "
                            f"{dataset} --data PATH).")
        cfg = _with_source(cfg, str(source))
        size = "default"
    elif size not in DEMO_SIZES:
        raise ConfigError(f"Unknown demo size {size!r}; choose 'default' or 'small'.")
    else:
        cfg = DEMO_SIZES[size]
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    t_start, load0 = time.perf_counter(), _loadavg()
    prior_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    stages = _Stages(progress)
    try:
        result = _run(ws, size, cfg, stages, progress)
    finally:
        stages.close()
        if threads is not None:
            torch.set_num_threads(prior_threads)
    result.seconds = round(time.perf_counter() - t_start, 1)
    result.stages = stages.times
    result.first_stages = _first_stages(result, stages.times)
    result.load = (load0, _loadavg())
    _write_summary_json(result)
    return result


def _with_source(cfg: DemoSize, path: str) -> DemoSize:
    import dataclasses

    return dataclasses.replace(cfg, shop={"path": path})


def _prepare_real(ws: Workspace, cfg: DemoSize, progress: bool) -> bool:
    """Import the real dataset and make its garment masks; whether both were reused."""
    from befa_viz import pipeline

    existed = (ws.dataset_dir(cfg.dataset) / "dataset.json").is_file()
    try:
        pipeline.import_dataset(cfg.source, cfg.shop["path"], workspace=ws, name=cfg.dataset,
                                check_images=True)
    except DataError as e:
        raise DataError(f"{e} The demo needs its own {cfg.dataset!r}: run it in another "
                        "workspace (befa-viz demo --workspace DIR).") from None
    masks = pipeline.make_masks(cfg.dataset, workspace=ws, progress=progress)
    s = masks.summary
    log.info("demo: garment masks usable for %d of %d photos (%d unusable)", s["usable"],
             s["items_with_photo"], s["unusable"])
    return existed and masks.reused


def _run(ws: Workspace, size: str, cfg: DemoSize, stages: _Stages, progress: bool
         ) -> DemoResult:
    from befa_viz import pipeline
    from befa_viz.benchmark import run_benchmark, sample_items

    reused: dict[str, bool] = {}
    stages.start("shop", None if cfg.source == "synth" else f"data ({cfg.dataset})")
    if cfg.source == "synth":
        existed = (ws.dataset_dir(cfg.dataset) / "dataset.json").is_file()
        try:
            pipeline.synth_dataset(ws, cfg.dataset, progress=progress, **dict(cfg.shop))
        except DataError as e:
            raise DataError(f"{e} The demo needs its own {cfg.dataset!r}: run it in another "
                            f"workspace (befa-viz demo --workspace DIR) or remove "
                            f"{ws.dataset_dir(cfg.dataset)}.") from None
        reused["shop"] = existed  # synth_dataset raises when an existing dataset differs
    else:
        reused["dataset and masks"] = _prepare_real(ws, cfg, progress)
    stages.done()

    stages.start("encode")
    # real data may have image-only items (H&M: articles without metadata): zero text rows,
    # recorded in the feature manifest
    enc = pipeline.encode_dataset(ws, cfg.dataset, image_encoder=cfg.image_encoder,
                                  text_encoder=cfg.text_encoder, progress=progress,
                                  missing="error" if cfg.source == "synth" else "zeros")
    reused["features"] = all(enc.reused.values())
    stages.done()

    runs: dict[str, Any] = {}
    for variant, adapter in (("without", "none"), ("with", "befa")):
        stages.start(f"train {variant} adapter")
        before = _complete_runs(ws)
        run = pipeline.train_model(
            ws, model=cfg.model, adapter=adapter, dataset=cfg.dataset,
            features={m: p for m, p in enc.items()}, overrides=dict(cfg.overrides),
            epochs=cfg.epochs, resume=True, progress=progress)
        reused[f"run {variant}"] = run.path.name in before
        runs[variant] = run
        stages.done()

    stages.start("benchmark")
    bench = run_benchmark(
        ws, dataset=cfg.dataset, runs=(runs["without"], runs["with"]), methods=cfg.methods,
        expensive_targets=cfg.expensive_targets, n_items=cfg.n_items,
        n_items_expensive=cfg.n_items_expensive,
        n_text_items=cfg.n_text_items, n_steps=cfg.n_steps, n_examples=cfg.n_examples,
        threads=None, progress=progress)
    reused["attribution maps"] = bench.params["maps_computed"] == 0
    stages.done()

    stages.start("explain sample")
    ds = runs["without"].dataset
    from befa_viz.data.truth import load_ground_truth

    usable = load_ground_truth(ws.dataset_dir(cfg.dataset)).usable
    _, expensive = sample_items(ds, cfg.n_items, cfg.n_items_expensive, eligible=usable)
    ids = [ds.catalog.item_ids[i] for i in expensive]
    explanations: dict[str, list[Any]] = {}
    for method in cfg.demo_methods:
        explanations[method] = pipeline.explain_items(
            ids, workspace=ws, run=runs["without"], method=method, n_steps=cfg.n_steps,
            faithfulness_steps=cfg.faithfulness_steps, progress=progress)
    stages.done()

    stages.start("report")
    result = DemoResult(
        workspace=ws.root, size=size, dataset=cfg.dataset,
        runs={v: r.name for v, r in runs.items()},
        ranking={v: bench.ranking[v] for v in ("without", "with")},
        scores=_sample_scores(explanations), gate=dict(runs["with"].gate), benchmark=bench,
        report=ws.reports_dir / f"demo-{cfg.dataset}" / "report.html", seconds=0.0,
        reused=reused, main_method=_main_method(bench, cfg.demo_methods))
    result.first_stages = _first_stages(result, stages.times)
    _write_report(result, cfg, explanations, stages.times)
    stages.done()
    return result


#: Which ``DemoResult.reused`` entry says that a stage's work was reused.
_STAGE_REUSE = {"shop": "shop", "encode": "features", "train without adapter": "run without",
                "train with adapter": "run with", "benchmark": "attribution maps",
                "explain sample": "attribution maps"}


def _first_stages(result: DemoResult, times: Mapping[str, float]) -> dict[str, float]:
    """Per stage, the time of the run that did its work: this run's unless it reused it.

    The earlier times come from the ``summary.json`` beside the report, and only when it
    describes the same runs (otherwise nothing was reused from it).
    """
    prev: dict[str, Any] = {}
    path = result.report.parent / "summary.json"
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        old = {}
    if isinstance(old, dict) and old.get("runs") == result.runs:
        prev = old.get("first_stages") or old.get("stages") or {}
    out: dict[str, float] = {}
    for stage, t in times.items():
        reused = result.reused.get(_STAGE_REUSE.get(stage, ""), False)
        earlier = prev.get(stage)
        out[stage] = float(earlier) if reused and isinstance(earlier, int | float) else t
    return out


def _sample_scores(explanations: Mapping[str, list[Any]]) -> dict[str, dict[str, Any]]:
    keys = ("drift", "omission", "mass_in_mask", "deletion_auc", "insertion_auc")
    out: dict[str, dict[str, Any]] = {}
    for method, exps in explanations.items():
        per: dict[str, Any] = {}
        for v in exps[0].variants:
            vals = {k: [e.scores[v].get(k) for e in exps] for k in keys}
            # unscored maps (all-zero, or a target that barely moves) carry None: left out
            got = {k: [float(x) for x in xs if x is not None and np.isfinite(x)]
                   for k, xs in vals.items()}
            per[v] = {k: float(np.mean(xs)) if xs else float("nan") for k, xs in got.items()}
            per[v]["n_items"] = len(exps)
            per[v]["n_scored"] = len(got["drift"])
        out[method] = per
    return out


def _main_method(bench: Any, methods: tuple[str, ...]) -> str:
    """The demo method whose behaviour-driven map beats its controls by the most.

    Score: the smaller of the two margins (random target, input) of the ``content_score``
    map without the adapter. Chosen by the benchmark, not by taste (DESIGN.md).
    """
    t = bench.table
    rows = t[(t["modality"] == "image") & (t["variant"] == "without")
             & (t["target"] == "content_score") & t["method"].isin(methods)]
    if rows.empty:
        return methods[0]
    score = np.minimum(rows["margin_random_target"].to_numpy(float),
                       rows["margin_input"].to_numpy(float))
    return str(rows["method"].iloc[int(np.nanargmax(score))]) if np.isfinite(score).any() \
        else methods[0]


def _main_item(exps: list[Any], gt: Any) -> Any:
    """The first explained item that has a decoy (the harder case), else the first one."""
    for e in exps:
        if "decoy" in gt.masks and gt.masks["decoy"][e.item_idx].any():
            return e
    return exps[0]


def _records(df: Any) -> list[dict[str, Any]]:
    """DataFrame rows as dicts, floats rounded to 3 decimals (NaN as empty)."""
    return [{k: (None if isinstance(v, float) and not np.isfinite(v)
                 else round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}
            for r in df.to_dict(orient="records")]


def _fmt_table(rows: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    def r(v: Any) -> Any:
        if isinstance(v, float):
            return None if not np.isfinite(v) else round(v, 4)
        return v

    return {k: {c: r(v) for c, v in row.items()} for k, row in rows.items()}


def _write_report(result: DemoResult, cfg: DemoSize, explanations: Mapping[str, list[Any]],
                  times: Mapping[str, float]) -> None:
    from PIL import Image

    from befa_viz import viz
    from befa_viz.attribution import Attribution
    from befa_viz.cache import atomic_write_bytes
    from befa_viz.data.truth import load_ground_truth
    from befa_viz.metrics import resize_map

    ws = Workspace(result.workspace)
    gt = load_ground_truth(ws.dataset_dir(result.dataset))
    bench = result.benchmark
    folder = result.report.parent
    folder.mkdir(parents=True, exist_ok=True)
    main_exps = explanations[result.main_method]
    main = _main_item(main_exps, gt)
    pair = main.figure_pairs()
    title = f"{main.item_id}: {main.item.get('title', '')}"
    fig_pair = viz.pair_figure(*pair, title=title, difference=True)
    viz.save_figure(fig_pair, folder / "main_pair", ("png",), dpi=110)
    with Image.open(folder / "main_pair.png") as im:
        main_png = np.asarray(im.convert("RGB"))

    # the sample: image, planted mask, then each method without / with the adapter
    first = explanations[cfg.demo_methods[0]]
    truth = []
    for e in first:
        a = next(iter(e.attributions.values()))
        m = resize_map(gt.masks["product"][e.item_idx], np.asarray(a.values).shape)
        truth.append(Attribution(e.item_id, "image", "ground truth", "product mask",
                                 m.astype(np.float32), image=a.image))
    mask_name = "planted product mask" if gt.planted else "garment mask"
    rows, labels = [truth], [mask_name]
    for method, exps in explanations.items():
        for v in exps[0].variants:
            rows.append([e.attributions[v] for e in exps])
            labels.append(f"{method}, {v} adapter")
    # one grid per method, its rows without / with the adapter on ONE colour scale, so each
    # item's pair is compared on the same scale (a scale per row would hide the difference)
    grids = [viz.grid_figure([truth], row_labels=["planted product mask"], scale="each",
                             panel_width=1.5, title="Sample items and their planted product mask")]
    for method, exps in explanations.items():
        pair_rows = [[e.attributions[v] for e in exps] for v in exps[0].variants]
        grids.append(viz.grid_figure(
            pair_rows, row_labels=[f"{v} adapter" for v in exps[0].variants], scale="all",
            show_images=False, panel_width=1.5,
            title=f"{method}: without vs with adapter, one scale"))
    grid_pngs = []
    for k, grid in enumerate(grids):
        name = "sample_grid" if k == 0 else f"sample_grid_{k}"
        viz.save_figure(grid, folder / name, ("png",), dpi=110)
        with Image.open(folder / f"{name}.png") as im:
            grid_pngs.append(np.asarray(im.convert("RGB")))

    ranking = {f"{v} adapter": {**{f"test {k}": x for k, x in r["test"].items()},
                                **{f"valid {k}": x for k, x in r["valid"].items()},
                                "best epoch": r["best_epoch"], "run": r["run"]}
               for v, r in result.ranking.items()}
    scores = {f"{m}, {v} adapter": s for m, per in result.scores.items() for v, s in per.items()}
    reused = ", ".join(k for k, v in result.reused.items() if v) or "nothing"
    first_times = result.first_stages or dict(times)
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in first_times.items())
    if first_times != dict(times):
        timing += (" (the run that computed each stage; this rerun: "
                   + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()) + ")")
    sections = [
        viz.Section("What the demo did", text=(
            (f"Generated the synthetic shop {result.dataset!r} (planted truth: users choose by "
             f"the product's kind, colour and pattern; props, decoy, sticker, price tag and "
             f"watermark are irrelevant)" if gt.planted else
             f"Imported the real dataset {result.dataset!r} and made its garment masks from "
             f"the light packshot background (ground truth of where the garment is; items "
             f"whose mask is unusable are left out; it is not a planted cause of the "
             f"purchases)") + f", encoded it with {cfg.image_encoder} and "
            f"{cfg.text_encoder}, trained {cfg.model.upper()} without and with the BeFA adapter "
            f"({cfg.epochs} epochs max, {', '.join(f'{k}={v}' for k, v in cfg.overrides.items())}"
            f"), benchmarked the attribution methods against the {mask_name}s, and explained "
            f"{len(first)} sample items with {', '.join(cfg.demo_methods)} "
            f"({cfg.n_steps} integration steps, blur baseline).\n\n"
            f"Stage times: {timing}. Reused from an earlier run: {reused}.\n\n"
            f"Open the explorer on this workspace: {result.explorer_command}")),
        viz.Section("What the numbers say", text=_findings(result)),
        viz.Section("Ranking quality with and without the adapter", table=_fmt_table(ranking),
                    text="Full ranking over all items, MMRec protocol; test at the best "
                         "validation epoch."),
        viz.Section(f"Main figure: {result.main_method}, without vs with the adapter",
                    figures=[main_png], text=(
                        f"Item {main.item_id} ({main.item.get('title', '')}). Target: the content"
                        " pathway's score for the item's training users (content_score; with "
                        "the adapter through g(ċ) ⊙ e). Both maps share one colour scale; the "
                        "third panel is with − without. Method chosen by the benchmark: the one "
                        "whose behaviour-driven map beats its controls by the most (see "
                        "below) — check that it passes before reading drift into it.")),
        viz.Section("Sample items", figures=grid_pngs,
                    table=_fmt_table(scores),
                     text=f"Drift / omission against the {mask_name} (top-50 % mass "
                          "region); deletion / insertion AUC of the attributed target. In each "
                          "method's grid the maps without and with the adapter share one colour "
                          "scale."),
    ]
    if result.gate:
        sections.append(viz.Section(
            "Adapter gate", table=_fmt_table(result.gate),
            text="Distribution of the BeFA gate over items and dimensions. A gate pinned near "
                 "1 passes the behaviour embedding through unchanged: then the adapted "
                 "representation hardly depends on the content at all, and its heatmaps show "
                 "little more than noise."))
    head = bench.headline()
    bench_figs = []
    if "margins.png" in bench.paths and Path(bench.paths["margins.png"]).is_file():
        with Image.open(bench.paths["margins.png"]) as im:
            bench_figs.append(np.asarray(im.convert("RGB")))
    sections.append(viz.Section(
        "Attribution benchmark (headline)", table=_records(head), figures=bench_figs,
        text=(f"Every method and target scored against the {mask_name} next to its "
              f"controls: the random-target map of the same method, the model-free "
              f"|x − blur(x)| map and random blobs. Raw mass-in-mask is not evidence; the "
              f"margins are. Full report: {bench.paths.get('report.html', bench.out_dir)}")))
    page = viz.html_report(sections, title=f"befa-viz demo on {result.dataset!r}",
                           link_base=folder)
    atomic_write_bytes(result.report, page.encode("utf-8"))


def _findings(result: DemoResult) -> str:
    """Plain sentences built from the numbers (no interpretation beyond the pass rule)."""
    t = result.benchmark.table
    out = []
    r = {v: result.ranking[v]["test"] for v in ("without", "with")}
    out.append(f"Test Recall@20: {r['without'].get('Recall@20', float('nan')):.3f} without vs "
               f"{r['with'].get('Recall@20', float('nan')):.3f} with the adapter (NDCG@20 "
               f"{r['without'].get('NDCG@20', float('nan')):.3f} vs "
               f"{r['with'].get('NDCG@20', float('nan')):.3f}).")
    for mod, g in result.gate.items():
        pinned = " — pinned near 1" if g.get("q05", 0) > 0.95 else ""
        out.append(f"BeFA gate ({mod}): mean {g['mean']:.3f}, q05–q95 {g.get('q05', 0):.3f}–"
                   f"{g.get('q95', 0):.3f}{pinned}.")
    ok = t[(t["passes"] == True) & (t["modality"] == "image")]  # noqa: E712 - True/False/None
    if ok.empty:
        out.append("No image method passed its controls for any target on this data.")
    else:
        def side(v: str) -> str:
            return f"{v} adapter" if v in ("with", "without") else v

        out.append("Image methods that pass their controls: " + "; ".join(
            f"{x.method} ({x.target}, {side(x.variant)}: Δ {x.margin_random_target:+.3f} / "
            f"{x.margin_input:+.3f})" for x in ok.itertuples(index=False)) + ".")
    ig = t[(t["method"] == "ig") & (t["modality"] == "image") & (t["variant"] == "without")
           & (t["target"] == "content_score")]
    if len(ig) and "rho_random_target" in ig:
        out.append(f"Pixel IG (content score, without adapter) correlates ρ = "
                   f"{float(ig['rho_random_target'].iloc[0]):.2f} with IG of random target "
                   f"directions and ρ = {float(ig['rho_input'].iloc[0]):.2f} with "
                   f"|x − blur(x)|.")
    return "\n\n".join(out)


def _write_summary_json(result: DemoResult) -> None:
    """``summary.json`` beside the report: numbers and timings (read by tests and scripts)."""
    from befa_viz.cache import atomic_write_bytes

    data = {"size": result.size, "dataset": result.dataset, "runs": result.runs,
            "ranking": result.ranking, "scores": result.scores, "gate": result.gate,
            "seconds": result.seconds, "stages": result.stages, "reused": result.reused,
            "first_stages": result.first_stages,
            "load": list(result.load), "cpus": os.cpu_count(),
            "main_method": result.main_method,
            "benchmark": str(result.benchmark.out_dir), "report": str(result.report)}
    atomic_write_bytes(result.report.parent / "summary.json",
                       (json.dumps(data, indent=2, default=str) + "\n").encode())
