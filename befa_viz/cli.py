"""The ``befa-viz`` command line (typer). Commands parse options and call one pipeline verb."""

from __future__ import annotations

import logging
import sys

import typer

from befa_viz.errors import BefaVizError

app = typer.Typer(
    name="befa-viz",
    help="Attribution heatmaps for multimedia recommenders with and without the BeFA adapter.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_state = {"verbose": False}


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging and tracebacks."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors."),
) -> None:
    _state["verbose"] = verbose
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s")


# ---- data commands ----------------------------------------------------------------------
from pathlib import Path  # noqa: E402
from typing import Any, Protocol, cast  # noqa: E402

data_app = typer.Typer(
    help="Import, validate, summarise and export datasets.", no_args_is_help=True
)
app.add_typer(data_app, name="data")

_DATA_WS_HELP = "Workspace folder (default: $BEFA_VIZ_WORKSPACE or ./befa-workspace)."
_DATASET_HELP = "Dataset name in the workspace (default: the latest imported one)."


def _data_workspace(path: Path | None) -> Any:
    from befa_viz.workspace import Workspace

    return Workspace(path)


def _check_kind(value: str) -> str:
    from befa_viz.data.registry import DATASETS
    from befa_viz.registry import closest

    if value not in DATASETS:
        near = closest(value, DATASETS.names())
        hint = f" Did you mean {' or '.join(map(repr, near))}?" if near else ""
        raise typer.BadParameter(
            f"unknown importer {value!r}.{hint} Choose one of: {', '.join(DATASETS.names())}."
        )
    return value


def _fmt_split(split: dict[str, int]) -> str:
    return " / ".join(f"{k} {v:,}" for k, v in split.items())


@data_app.command("kinds")
def data_kinds() -> None:
    """List the dataset importers (befa_viz.data.DATASETS) and their options."""
    from befa_viz.data.registry import DATASETS, importer_options

    for kind in DATASETS.names():
        opts = ", ".join(o for o in importer_options(kind) if o != "name")
        typer.echo(f"{kind}: {opts}")


@data_app.command("import")
def data_import(
    kind: str = typer.Argument(..., callback=_check_kind,
                               help="Importer: mmrec, table, movielens, ... "
                                    "('befa-viz data kinds' lists them with their options)."),
    path: Path = typer.Argument(..., help="Source folder."),
    name: str | None = typer.Option(None, "--name", "-n", help="Dataset name."),
    workspace: Path | None = typer.Option(None, "--workspace", "-w", help=_DATA_WS_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a different dataset "
                                   "of the same name."),
    min_rating: float | None = typer.Option(None, "--min-rating",
                                               help="Keep ratings >= this (implicit feedback)."),
    k_core: int | None = typer.Option(None, "--k-core", help="Iterative k-core minimum."),
    seed: int | None = typer.Option(None, "--seed", help="Split seed."),
    split: str | None = typer.Option(None, "--split", help="Ratios train,valid,test, "
                                        "e.g. 0.8,0.1,0.1."),
    split_by: str | None = typer.Option(None, "--split-by", help="auto | time | random."),
    missing_image: str | None = typer.Option(None, "--missing-image",
                                                help="error | skip | keep."),
    empty_text: str | None = typer.Option(None, "--empty-text",
                                             help="title | keep | skip | error."),
    check_images: bool | None = typer.Option(None, "--check-images/--no-check-images",
                                                help="Decode every image with PIL."),
    option: list[str] | None = typer.Option(None, "--option", "-o", help="Any other importer "
                                               "option as key=value (repeatable)."),
    config: Path | None = typer.Option(None, "--config", help="YAML file of importer "
                                          "options (flags override it)."),
) -> None:
    """Import a dataset into the workspace (prepared, split, validated)."""
    from befa_viz import pipeline
    from befa_viz.config import parse_override, read_yaml

    opts: dict[str, Any] = dict(read_yaml(config)) if config else {}
    for text in option or []:
        key, value = parse_override(text)
        opts[key] = value
    flags = {"min_rating": min_rating, "k_core": k_core, "seed": seed, "split": split,
             "split_by": split_by, "missing_image": missing_image, "empty_text": empty_text,
             "check_images": check_images}
    opts.update({k: v for k, v in flags.items() if v is not None})
    ws = _data_workspace(workspace)
    folder = pipeline.import_dataset(kind, path, workspace=ws, name=name, overwrite=overwrite,
                                     **opts)
    s = pipeline.dataset_stats(folder.name, workspace=ws)
    typer.echo(f"Imported {s['name']!r} ({kind}) -> {folder}")
    typer.echo(f"  {s['users']:,} users, {s['items']:,} items, {s['interactions']:,} "
               f"interactions ({_fmt_split(s['split'])})")
    typer.echo(f"  items with image {s['items_with_image']:,}, with text {s['items_with_text']:,}"
               + (f"; features {s['imported_features']}" if s["imported_features"] else ""))


@data_app.command("validate")
def data_validate(
    dataset: str | None = typer.Option(None, "--dataset", "-d", help=_DATASET_HELP),
    workspace: Path | None = typer.Option(None, "--workspace", "-w", help=_DATA_WS_HELP),
    check_images: bool = typer.Option(False, "--check-images", help="Decode every image."),
) -> None:
    """Check a dataset: splits, ids, image files, texts and imported features."""
    from befa_viz import pipeline

    report = pipeline.validate_dataset(dataset, workspace=_data_workspace(workspace),
                                       check_images=check_images)
    for w in report.warnings:
        typer.echo(f"  warning: {w}")
    for p in report.problems:
        typer.echo(f"  problem: {p}")
    typer.echo(f"Dataset {report.dataset!r}: "
               + ("OK" if report.ok else f"{len(report.problems)} problem(s)")
               + f", {len(report.warnings)} warning(s).")
    report.raise_for_problems()


@data_app.command("stats")
def data_stats(
    dataset: str | None = typer.Option(None, "--dataset", "-d", help=_DATASET_HELP),
    workspace: Path | None = typer.Option(None, "--workspace", "-w", help=_DATA_WS_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON."),
) -> None:
    """Print a dataset's size, density, splits and content coverage."""
    import json

    from befa_viz import pipeline

    s = pipeline.dataset_stats(dataset, workspace=_data_workspace(workspace))
    if as_json:
        typer.echo(json.dumps(s, indent=2, default=str))
        return
    per_user = s["interactions_per_user"]
    rows = [
        ("dataset", f"{s['name']} ({s['source']})"),
        ("path", s["path"]),
        ("users", f"{s['users']:,}"),
        ("items", f"{s['items']:,}"),
        ("interactions", f"{s['interactions']:,}"),
        ("density", f"{s['density']:.4%}"),
        ("train / valid / test", " / ".join(f"{v:,}" for v in s["split"].values())),
        ("per user min/median/max",
         f"{per_user['min']} / {per_user['median']:g} / {per_user['max']}"),
        ("items with image", f"{s['items_with_image']:,}"),
        ("items with text", f"{s['items_with_text']:,}"),
        ("imported features", ", ".join(f"{m} {shape}" for m, shape in
                                        s["imported_features"].items()) or "none"),
        ("fingerprint", s["fingerprint"]),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        typer.echo(f"{k:<{width}}  {v}")


@data_app.command("export")
def data_export(
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    fmt: str = typer.Option("mmrec", "--format", help="Export format (only 'mmrec')."),
    dataset: str | None = typer.Option(None, "--dataset", "-d", help=_DATASET_HELP),
    workspace: Path | None = typer.Option(None, "--workspace", "-w", help=_DATA_WS_HELP),
    name: str | None = typer.Option(None, "--name", help="Base name of the .inter file."),
) -> None:
    """Export a dataset (and its imported features) to another format."""
    from befa_viz import pipeline

    if fmt != "mmrec":
        raise typer.BadParameter(f"unknown format {fmt!r}; choose one of: mmrec.",
                                 param_hint="--format")
    folder = pipeline.export_mmrec(out, dataset=dataset, workspace=_data_workspace(workspace),
                                   name=name)
    typer.echo(f"Exported to {folder}: " + ", ".join(sorted(p.name for p in folder.iterdir())))


@data_app.command("synth")
def data_synth(
    name: str = typer.Option("shop", "--name", "-n", help="Dataset name."),
    workspace: Path | None = typer.Option(None, "--workspace", "-w", help=_DATA_WS_HELP),
    seed: int | None = typer.Option(None, "--seed", help="Generator seed (default 0)."),
    n_items: int | None = typer.Option(None, "--n-items", help="Products (default 400)."),
    n_users: int | None = typer.Option(None, "--n-users", help="Users (default 300)."),
    option: list[str] | None = typer.Option(None, "--option", "-o", help="Any other knob of "
                                            "befa_viz.data.synth.ShopConfig as key=value, e.g. "
                                            "decoy_rate=0.5 (repeatable)."),
    config: Path | None = typer.Option(None, "--config", help="YAML file of knobs (flags "
                                       "override it)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a dataset of the same "
                                   "name made with other knobs."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar."),
) -> None:
    """Generate the synthetic shop with planted ground truth (masks, token labels, tastes)."""
    from befa_viz import pipeline
    from befa_viz.config import parse_override, read_yaml

    knobs: dict[str, Any] = dict(read_yaml(config)) if config else {}
    knobs.update(parse_override(text) for text in option or [])
    knobs.update({k: v for k, v in {"seed": seed, "n_items": n_items,
                                    "n_users": n_users}.items() if v is not None})
    ws = _data_workspace(workspace)
    folder = pipeline.synth_dataset(ws, name, overwrite=overwrite, progress=progress, **knobs)
    s = pipeline.dataset_stats(folder.name, workspace=ws)
    typer.echo(f"Synthetic shop {s['name']!r} -> {folder}")
    typer.echo(f"  {s['users']:,} users, {s['items']:,} items, {s['interactions']:,} "
               f"interactions ({_fmt_split(s['split'])})")
    typer.echo(f"  ground truth: {folder / 'ground_truth'} (knobs in generator.json)")

# ---- encode command ---------------------------------------------------------------------


@app.command("encode")
def encode_cmd(
    dataset: str = typer.Option(None, "--dataset", "-d",
                                help="Dataset name (default: the most recent one)."),
    image_encoder: str = typer.Option(
        "torchvision:mobilenet_v2", "--image-encoder",
        help="backend:model[:weights], e.g. torchvision:mobilenet_v2, "
             "clip:ViT-B-32:/ckpt.safetensors, tiny:cnn; 'none' skips."),
    text_encoder: str = typer.Option(
        "hf:minilm", "--text-encoder",
        help="backend:model[:weights], e.g. hf:minilm or clip:ViT-B-32:/ckpt; 'none' skips."),
    device: str = typer.Option("cpu", "--device", help="Torch device, e.g. cpu or cuda."),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    chunk_size: int = typer.Option(512, "--chunk-size", min=1,
                                   help="Items per resumable chunk (and per shard block)."),
    shard: str = typer.Option(None, "--shard",
                              help="i/n: encode only shard i of n; a run without it merges."),
    missing: str = typer.Option("error", "--missing",
                                help="Items without image / empty text: error or zeros."),
    text_field: str = typer.Option("text", "--text-field", help="text, title or title+text."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    workspace: str = typer.Option(None, "--workspace", "-w",
                                  help="Workspace folder (default $BEFA_VIZ_WORKSPACE or "
                                       "./befa-workspace)."),
) -> None:
    """Encode item images and texts into the workspace feature store (reused when unchanged)."""
    from befa_viz.pipeline import encode_dataset

    def _key(k: str | None) -> str | None:
        return None if k is None or k.lower() in ("", "none") else k

    result = encode_dataset(
        workspace, dataset, image_encoder=_key(image_encoder), text_encoder=_key(text_encoder),
        batch_size=batch_size, device=device, shard=shard, progress=progress, missing=missing,
        text_field=text_field, chunk_size=chunk_size,
    )
    typer.echo(f"dataset: {result.dataset}")
    for modality, path in result.items():
        table = result.tables[modality]
        if not result.complete[modality]:
            state = f"shard {shard} written; other shards pending (run without --shard to merge)"
        else:
            state = "reused cache" if result.reused[modality] else "encoded"
        n_missing = len(table.manifest.get("missing_items", []))
        extra = f", {n_missing} item(s) as zero rows" if n_missing else ""
        typer.echo(f"{modality}: {path} [{table.encoder_key}, {table.n_items}x{table.dim}, "
                   f"{state}{extra}]")


# ---- train / evaluate / compare / sweep commands -----------------------------------------
def _registry_parser(kind: str, names: Any, extra: tuple[str, ...] = ()) -> Any:
    """A typer parser that checks a value against a registry, read only when a command runs.

    Keeps ``befa-viz --help`` fast: models (and torch) load only when a command needs them.
    """

    def parse(value: str) -> str:
        choices = [*extra, *names()]
        if value not in choices:
            from befa_viz.registry import closest

            near = closest(value, choices)
            hint = f" Did you mean {' or '.join(map(repr, near))}?" if near else ""
            raise typer.BadParameter(f"unknown {kind} {value!r}.{hint} Choices: "
                                     f"{', '.join(choices)}.")
        return value

    return parse


def _model_names() -> list[str]:
    from befa_viz.models import MODELS

    return MODELS.names()


def _adapter_names() -> list[str]:
    from befa_viz.models import ADAPTERS

    return ADAPTERS.names()


def _features_arg(image: Path | None, text: Path | None, extra: list[str] | None) -> dict[str, Path]:
    out: dict[str, Path] = {}
    if image is not None:
        out["image"] = image
    if text is not None:
        out["text"] = text
    for item in extra or []:
        mod, sep, path = item.partition("=")
        if not sep or not mod or not path:
            raise typer.BadParameter(f"--features expects MODALITY=PATH, got {item!r}.")
        out[mod.strip()] = Path(path)
    return out


_WS_HELP = "Workspace folder (default $BEFA_VIZ_WORKSPACE or ./befa-workspace)."
_SET_HELP = "Config override key=value (repeatable), e.g. --set lr=5e-4 --set model_params.reg_weight=1e-3."


def _fmt_metrics(m: dict[str, float], keys: tuple[str, ...] = ("Recall@10", "Recall@20",
                                                                  "NDCG@10", "NDCG@20")) -> str:
    return "  ".join(f"{k} {m[k]:.4f}" for k in keys if k in m)


@app.command("train")
def train_cmd(
    model: str = typer.Option(None, "--model", "-m", parser=_registry_parser("model", _model_names),
                              metavar="MODEL",
                              help="Backbone (from the model registry); default bprmf or the "
                                   "config's."),
    adapter: str = typer.Option(None, "--adapter",
                                parser=_registry_parser("adapter", _adapter_names, ("none",)),
                                metavar="none|befa",
                                help="Feature adapter: none or befa."),
    dataset: str = typer.Option(None, "--dataset", "-d", help="Dataset (default: the latest)."),
    image_features: Path = typer.Option(None, "--image-features",
                                        help="Image feature folder or .npy (default: latest "
                                             "encoded)."),
    text_features: Path = typer.Option(None, "--text-features",
                                       help="Text feature folder or .npy (default: latest "
                                            "encoded)."),
    features: list[str] = typer.Option(None, "--features", help="MODALITY=PATH (repeatable)."),
    config: Path = typer.Option(None, "--config", "-c", help="YAML config file."),
    set_: list[str] = typer.Option(None, "--set", help=_SET_HELP),
    seed: int = typer.Option(None, "--seed", help="Random seed (default 999)."),
    epochs: int = typer.Option(None, "--epochs", min=0, help="Maximum epochs."),
    device: str = typer.Option(None, "--device", help="Torch device, e.g. cpu or cuda."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run from its last "
                                                       "checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Retrain an existing run."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    workspace: str = typer.Option(None, "--workspace", "-w", help=_WS_HELP),
) -> None:
    """Train a recommender, with or without the BeFA adapter, MMRec protocol."""
    from befa_viz.pipeline import train_model

    run = train_model(
        workspace, model=model, adapter=adapter, dataset=dataset,
        features=_features_arg(image_features, text_features, features), config_file=config,
        overrides=set_, seed=seed, epochs=epochs, device=device, resume=resume,
        overwrite=overwrite, progress=progress,
    )
    typer.echo(f"dataset: {run.info['dataset']}")
    for m, prov in run.info.get("features", {}).items():
        typer.echo(f"{m} features: {prov['path']} [{prov.get('encoder') or 'unknown encoder'}]")
    typer.echo(f"run: {run.path}")
    typer.echo(f"best epoch {run.metrics.get('best_epoch')} of {run.metrics.get('epochs_run')}: "
               f"valid {_fmt_metrics(run.valid_metrics)}")
    typer.echo(f"test (at best valid): {_fmt_metrics(run.test_metrics)}")
    for m, g in run.gate.items():
        typer.echo(f"BeFA gate ({m}): mean {g['mean']:.3f}, std {g['std']:.3f}, "
                   f"q05–q95 {g['q05']:.3f}–{g['q95']:.3f}")


@app.command("evaluate")
def evaluate_cmd(
    run: str = typer.Option(None, "--run", "-r", help="Run name or folder (default: the latest)."),
    batch_size: int = typer.Option(None, "--batch-size", min=1, help="Users scored at once."),
    device: str = typer.Option(None, "--device", help="Torch device."),
    workspace: str = typer.Option(None, "--workspace", "-w", help=_WS_HELP),
) -> None:
    """Re-evaluate a trained run (full ranking) next to a most-popular baseline."""
    from befa_viz.pipeline import evaluate_run

    out = evaluate_run(workspace, run, batch_size=batch_size, device=device)
    keys = tuple(k for k in out["test"] if k.split("@")[0] in ("Recall", "NDCG"))
    typer.echo(f"run: {out['run']} (dataset {out['dataset']})")
    typer.echo(f"{'':14}" + "".join(f"{k:>12}" for k in keys))
    for label in ("valid", "test", "most_popular"):
        typer.echo(f"{label:14}" + "".join(f"{out[label][k]:12.4f}" for k in keys))


@app.command("compare")
def compare_cmd(
    backbone: str = typer.Option(..., "--backbone", "-b",
                                 parser=_registry_parser("model", _model_names),
                              metavar="MODEL",
                                 help="Multimodal backbone to compare without/with BeFA."),
    seeds: int = typer.Option(3, "--seeds", min=1, help="Number of seeds (from --set seed=)."),
    dataset: str = typer.Option(None, "--dataset", "-d", help="Dataset (default: the latest)."),
    image_features: Path = typer.Option(None, "--image-features"),
    text_features: Path = typer.Option(None, "--text-features"),
    features: list[str] = typer.Option(None, "--features", help="MODALITY=PATH (repeatable)."),
    config: Path = typer.Option(None, "--config", "-c", help="YAML config file."),
    set_: list[str] = typer.Option(None, "--set", help=_SET_HELP),
    epochs: int = typer.Option(None, "--epochs", min=0),
    device: str = typer.Option(None, "--device"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    workspace: str = typer.Option(None, "--workspace", "-w", help=_WS_HELP),
) -> None:
    """Train a backbone with and without BeFA over seeds; table, paired tests, figure."""
    from befa_viz.pipeline import compare_adapter

    result = compare_adapter(
        workspace, backbone=backbone, seeds=seeds, dataset=dataset,
        features=_features_arg(image_features, text_features, features), config_file=config,
        overrides=set_, epochs=epochs, device=device, progress=progress,
    )
    typer.echo(result.format())
    for kind, path in result.paths.items():
        typer.echo(f"{kind}: {path}")


@app.command("sweep")
def sweep_cmd(
    config: Path = typer.Option(..., "--config", "-c",
                                help="YAML config with a 'sweep:' section of value lists."),
    dataset: str = typer.Option(None, "--dataset", "-d", help="Dataset (default: the latest)."),
    image_features: Path = typer.Option(None, "--image-features"),
    text_features: Path = typer.Option(None, "--text-features"),
    features: list[str] = typer.Option(None, "--features", help="MODALITY=PATH (repeatable)."),
    set_: list[str] = typer.Option(None, "--set", help=_SET_HELP),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    workspace: str = typer.Option(None, "--workspace", "-w", help=_WS_HELP),
) -> None:
    """Train every combination of a sweep; best by validation metric (never test)."""
    from befa_viz.pipeline import run_sweep

    result = run_sweep(config, workspace, dataset=dataset,
                       features=_features_arg(image_features, text_features, features),
                       overrides=set_, progress=progress)
    typer.echo(result.format())
    for kind, path in result.paths.items():
        typer.echo(f"{kind}: {path}")


# ---- end train commands -----------------------------------------------------------------

# ---- heatmap / report commands ----------------------------------------------------------
def _target_names() -> list[str]:
    from befa_viz.attribution import TARGETS

    return TARGETS.names()


def _method_names() -> list[str]:
    from befa_viz.attribution import ATTRIBUTIONS

    return ATTRIBUTIONS.names()


def _choice(kind: str, choices: tuple[str, ...]) -> Any:
    return _registry_parser(kind, lambda: list(choices))


def _id_list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _feature_heatmap(item: str | None, items: str | None, *, workspace: str | None,
                     run: str | None, modality: str, target: str | None,
                     steps: int | None) -> None:
    """``heatmap --modality audio``: feature dimensions and modality shares, as a table."""
    from befa_viz.pipeline import explain_features

    ids = [item] if item is not None else _id_list(items)
    if not ids:
        raise typer.BadParameter(f"--modality {modality} needs --item or --items (no "
                                 "--top-drift: there is no map to rank).", param_hint="--item")
    exps = explain_features(ids, workspace=workspace, run=run, modality=modality,
                            target=target or "content_score", n_steps=steps)
    typer.echo(f"{modality}: precomputed features, no raw media — IG over the feature "
               f"dimensions (baseline: the dataset's mean vector), run {exps[0].run}")
    for e in exps:
        shares = ", ".join(f"{m} {v['share']:.0%}" for m, v in e.shares.items())
        top = ", ".join(f"dim {d} {v:+.3g}" for d, v in e.top_dims(5))
        typer.echo(f"item {e.item_id}: {e.verdict.label()}")
        typer.echo(f"  top dimensions: {top}")
        typer.echo(f"  content score by modality: {shares}")


@app.command("heatmap")
def heatmap_cmd(
    item: str = typer.Option(
        None, "--item", "-i",
        help="Item id as in the dataset: its ORIGINAL id (e.g. a MovieLens movie id such as "
             "123), not a row index."),
    items: str = typer.Option(None, "--items",
                              help="Several original item ids, comma-separated: 1,2,3."),
    top_drift: int = typer.Option(None, "--top-drift", min=1,
                                  help="Explain every item; report the N with the most drift."),
    run: str = typer.Option(None, "--run", "-r",
                            help="Run name or folder (default: the newest run of the current "
                                 "dataset)."),
    user: str = typer.Option(None, "--user", "-u",
                             help="Original user id; implies --target user_score."),
    target: str = typer.Option(None, "--target", "-t",
                               parser=_registry_parser("target", _target_names),
                               metavar="TARGET",
                               help="What is explained (targets registry; default "
                                    "content_score, or user_score with --user)."),
    method: str = typer.Option(None, "--method", "-m",
                               parser=_registry_parser("method", _method_names),
                               metavar="METHOD",
                               help="Attribution method (methods registry; default: the one "
                                    "the benchmark chose for the encoder, see "
                                    "befa_viz.attribution.default_method)."),
    steps: int = typer.Option(None, "--steps",
                              help="Integration steps (path methods; default: the chosen "
                                   "recipe's, or chosen per item by the completeness error)."),
    baseline: str = typer.Option(
        None, "--baseline", parser=_choice("baseline", ("black", "white", "blur", "mean", "pad")),
        metavar="black|white|blur|mean|pad",
        help="Baseline of path methods (default: blur for images, pad for text)."),
    compare: str = typer.Option("adapter", "--compare",
                                parser=_choice("comparison", ("adapter", "none")),
                                metavar="adapter|none",
                                help="adapter: also explain the paired run with the other "
                                     "adapter setting; none: this run only."),
    modality: str = typer.Option("image", "--modality", metavar="image|text|FEATURES",
                                 help="image or text maps; any other modality of the run "
                                      "(e.g. audio: precomputed features, no raw media) is "
                                      "explained over its feature dimensions and by its "
                                      "share of the content score."),
    out: Path = typer.Option(None, "--out", "-o",
                             help="Output folder (default: <workspace>/reports/heatmaps/<run>)."),
    formats: str = typer.Option("png,svg", "--formats",
                                help="Figure formats, comma-separated (png, svg, pdf, html)."),
    sanity: bool = typer.Option(False, "--sanity", help="Also run the sanity controls (slower)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute; do not store maps."),
    cache_dir: Path = typer.Option(None, "--cache-dir",
                                   help="Attribution cache folder (default: the workspace's)."),
    progress: bool = typer.Option(True, "--progress/--no-progress",
                                  help="Progress bar while maps are computed."),
    workspace: str = typer.Option(None, "--workspace", "-w", help=_WS_HELP),
) -> None:
    """Attribute items' images or texts without and with BeFA; write reports and scores.

    Item ids are the dataset's original ids (e.g. MovieLens movie ids).
    """
    from befa_viz.pipeline import heatmap_report

    given = [x for x in (item, items, top_drift) if x is not None]
    if modality not in ("image", "text"):
        _feature_heatmap(item, items, workspace=workspace, run=run, modality=modality,
                         target=target, steps=steps)
        return
    if len(given) != 1:
        raise typer.BadParameter("give exactly one of --item, --items or --top-drift.",
                                 param_hint="--item")
    ids: Any = item if item is not None else (_id_list(items) if items is not None else None)
    if items is not None and not ids:
        raise typer.BadParameter("no item ids in --items.", param_hint="--items")
    result = heatmap_report(
        ids, top_drift=top_drift, workspace=workspace, out_dir=out,
        formats=tuple(_id_list(formats)), run=run, user=user, target=target, method=method,
        n_steps=steps, baseline=baseline, compare_adapter=compare == "adapter",
        modality=modality, sanity=sanity, use_cache=not no_cache, cache=cache_dir,
        progress=progress,
    )
    first = result.explanations[0]
    p = first.params
    typer.echo("runs: " + ", ".join(f"{v} adapter {first.runs[v]}" for v in first.variants))
    steps_txt = f"{p['n_steps']} steps, " if "n_steps" in p else ""
    base_txt = f"baseline {p['baseline']}, " if "baseline" in p else ""
    typer.echo(f"{first.modality}: target {p['target']}, method {p['method']} ({steps_txt}"
               f"{base_txt}encoder {p['encoder']}); drift/omission vs the "
               f"{first.relevance['source'].replace('_', '-')} map (q={p['q']})")
    if p.get("default_from"):
        typer.echo(f"method and target: the default for {p['encoder']} "
                   f"(from {p['default_from']}; befa_viz.attribution.default_method)")
    gate = first.gate.get("with", {})
    if "mean" in gate:
        typer.echo(f"BeFA gate ({first.modality}): run mean {gate['mean']:.3f}, std "
                   f"{gate.get('std', float('nan')):.3f}")
    typer.echo(result.table())
    if "csv" in result.paths:
        typer.echo(f"reports: {result.out_dir} ({len(result.explanations)} items)")
        typer.echo(f"scores: {result.paths['csv']}")
    else:
        typer.echo(f"report: {result.paths['scores.json'].parent}")
        typer.echo(f"scores: {result.paths['scores.json']}")


# ---- demo / benchmark commands ----------------------------------------------------------
def _name_list(kind: str, names: Any) -> Any:
    """Parser of a comma-separated list checked against a registry ('none' = empty)."""

    def parse(value: str) -> str:
        if value.strip().lower() == "none":
            return ""
        for v in _id_list(value):
            _registry_parser(kind, names)(v)
        return value

    return parse


@app.command("benchmark")
def benchmark_cmd(
    dataset: str = typer.Option("shop", "--dataset", "-d",
                                help="A synthetic shop of the workspace (planted truth)."),
    runs: str = typer.Option(None, "--runs",
                             help="WITHOUT,WITH run names (default: the newest pair of the "
                                  "dataset)."),
    methods: str = typer.Option(None, "--methods", parser=_name_list("method", _method_names),
                                metavar="M1,M2",
                                help="Image methods (default ig,layer_ig,gradcam,similarity,"
                                     "occlusion)."),
    targets: str = typer.Option(None, "--targets", parser=_name_list("target", _target_names),
                                metavar="T1,T2", help="Targets (default content_focus,"
                                "behaviour_alignment,content_score,random)."),
    text_methods: str = typer.Option(None, "--text-methods",
                                     parser=_name_list("method", _method_names),
                                     metavar="M1,M2|none", help="Text methods (default ig)."),
    items: int = typer.Option(None, "--items", min=1, help="Items for cheap methods (24)."),
    items_expensive: int = typer.Option(None, "--items-expensive", min=1,
                                        help="Items for path methods and occlusion (6)."),
    text_items: int = typer.Option(None, "--text-items", min=1, help="Text items (8)."),
    steps: int = typer.Option(None, "--steps", help="Integration steps (16)."),
    seed: int = typer.Option(None, "--seed", help="Seed of random targets and maps (0)."),
    out: Path = typer.Option(None, "--out", "-o", help="Report folder (default "
                             "<workspace>/reports/benchmark-<dataset>-<key>)."),
    config: Path = typer.Option(None, "--config", "-c",
                                help="YAML of run_benchmark options (flags override it)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute; do not store maps."),
    cache_dir: Path = typer.Option(None, "--cache-dir", help="Attribution cache folder."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    workspace: str = typer.Option(None, "--workspace", "-w", help=_WS_HELP),
) -> None:
    """Score attribution methods against the synthetic shop's planted truth, with controls."""
    from befa_viz.benchmark import benchmark_options
    from befa_viz.config import read_yaml
    from befa_viz.pipeline import run_benchmark

    opts = benchmark_options(read_yaml(config) if config else {}, where=str(config))
    flags = {"dataset": dataset, "n_items": items, "n_items_expensive": items_expensive,
             "n_text_items": text_items, "n_steps": steps, "seed": seed,
             "runs": _id_list(runs) or None,
             "methods": _id_list(methods) if methods is not None else None,
             "targets": _id_list(targets) if targets is not None else None,
             "text_methods": _id_list(text_methods) if text_methods is not None else None}
    opts.update({k: v for k, v in flags.items() if v is not None})
    result = run_benchmark(workspace, **opts, out_dir=out, use_cache=not no_cache,
                           cache_dir=cache_dir, progress=progress)
    typer.echo(result.format())
    p = result.params
    typer.echo(f"maps: {p['maps_computed']} computed, {p['maps_cached']} from the cache; "
               f"{p['seconds']:.0f} s")
    typer.echo(f"report: {result.paths['report.html']}")
    typer.echo(f"table: {result.paths['table.csv']}")


@app.command("demo")
def demo_cmd(
    size: str = typer.Option("default", "--size", parser=_choice("size", ("default", "small")),
                             metavar="default|small",
                             help="default: MobileNetV2 + MiniLM, minutes; small: tiny random "
                                  "encoders, seconds (a smoke test)."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    workspace: str = typer.Option(None, "--workspace", "-w", help=_WS_HELP),
) -> None:
    """The main job: synthetic shop, encode, train with/without BeFA, benchmark, report."""
    from befa_viz.pipeline import run_demo

    # size is checked by its parser; the Literal type cannot be expressed in typer
    result = run_demo(workspace, size=size, progress=progress)  # type: ignore[arg-type]
    typer.echo(result.summary())


def main() -> None:
    """Console entry point: a BefaVizError prints one line and exits 2."""
    try:
        app(standalone_mode=False)
    except BefaVizError as e:
        if _state["verbose"]:
            raise
        typer.secho(f"error: {e}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        sys.exit(1)
    except click_exceptions() as e:  # usage errors: typer/click format them
        usage = cast("_UsageError", e)  # every class click_exceptions() returns has these
        usage.show()
        sys.exit(usage.exit_code)


class _UsageError(Protocol):
    """What click's and typer's vendored ``ClickException`` both provide."""

    exit_code: int

    def show(self) -> None: ...


def click_exceptions() -> tuple[type[Exception], ...]:
    import click

    found: list[type[Exception]] = [click.ClickException]
    try:  # recent typer vendors click: its usage errors do not derive from click's
        from typer._click.exceptions import ClickException as TyperClickException

        found.append(TyperClickException)
    except ImportError:
        pass
    return tuple(found)
