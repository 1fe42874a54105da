"""The ``befa-viz`` command line (typer). Commands parse options and call one pipeline verb."""

from __future__ import annotations

import logging
import sys
import warnings
from typing import Any

import typer
from typer.core import TyperGroup

from befa_viz.errors import BefaVizError


class _CliInterrupt(Exception):  # noqa: N818  # carries a KeyboardInterrupt past typer
    """Ctrl-C inside a command, carried past typer (which turns it into a bare exit 130)."""

    def __init__(self, interrupt: KeyboardInterrupt) -> None:
        super().__init__(str(interrupt))
        self.interrupt = interrupt


class _Group(TyperGroup):
    """The root group: keeps a command's Ctrl-C (and its message) for :func:`main`."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as e:
            raise _CliInterrupt(e) from e


app = typer.Typer(
    name="befa-viz",
    help="Attribution heatmaps for multimedia recommenders with and without the BeFA adapter.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=_Group,
)

_state = {"verbose": False}


def _progress(progress: bool) -> bool:
    """Whether to draw progress bars, and silence the libraries' own bars when not.

    Bars are drawn only on a terminal: redirected to a file, tqdm's carriage returns and
    cursor moves would clutter it. Without bars, transformers' and huggingface_hub's bars
    (e.g. "Loading weights") are switched off too, so ``--no-progress`` silences every bar.
    """
    show = bool(progress) and sys.stderr.isatty()
    if not show:
        import os

        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # read when these libraries load
        if "huggingface_hub" in sys.modules:
            from huggingface_hub.utils import disable_progress_bars

            disable_progress_bars()
        if "transformers" in sys.modules:
            from transformers.utils import logging as tr_logging

            tr_logging.disable_progress_bar()
    return show


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging and tracebacks."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors."),
) -> None:
    _state["verbose"] = verbose
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    root = logging.getLogger()
    for h in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(h)  # a previous invocation's (in-process callers, tests)
    handler = _StderrHandler()
    handler.setFormatter(_LineFormatter(verbose))
    root.addHandler(handler)
    root.setLevel(level)
    warnings.showwarning = _show_warning


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (CliRunner and pytest swap it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:  # StreamHandler.__init__ assigns it; ignore
        pass


class _LineFormatter(logging.Formatter):
    """Log records as one line: ``warning: ...`` / ``error: ...`` / the bare message."""

    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.levelno >= logging.WARNING:
            msg = f"{record.levelname.lower()}: {msg}"
        if self.verbose and record.exc_info:
            msg += "\n" + self.formatException(record.exc_info)
        return msg


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """Python warnings as one ``warning: ...`` line (the location only with ``--verbose``)."""
    text = " ".join(str(message).split())
    where = f" [{category.__name__} at {filename}:{lineno}]" if _state["verbose"] else ""
    typer.echo(f"warning: {text}{where}", err=True)


# ---- data commands ----------------------------------------------------------------------
from pathlib import Path  # noqa: E402
from typing import Protocol, cast  # noqa: E402

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
    import textwrap

    from befa_viz.data.registry import DATASETS, importer_option_specs

    for kind in DATASETS.names():
        doc = (DATASETS.get(kind).__doc__ or "").strip().splitlines()
        typer.echo(f"{kind}: {doc[0] if doc else ''}")
        for o in importer_option_specs(kind):
            if o.name == "name":
                continue
            default = o.default
            shown = ("none" if default is None else ",".join(map(str, default))
                     if isinstance(default, (list, tuple)) else str(default).lower()
                     if isinstance(default, bool) else str(default))
            typer.echo(f"  -o {o.name}={o.type if o.choices else f'<{o.type}>'}"
                       f"  (default: {shown or repr('')})")
            if o.help:
                typer.echo(textwrap.fill(o.help, width=96, initial_indent="      ",
                                         subsequent_indent="      "))
    typer.echo("Give options as -o key=value (repeatable); lists as -o key=a,b.")


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
    try:
        folder = pipeline.import_dataset(kind, path, workspace=ws, name=name,
                                         overwrite=overwrite, **opts)
    except BefaVizError as e:  # the importer's Python-form hints, in the command-line form
        from befa_viz.data.registry import cli_hint

        raise type(e)(cli_hint(kind, str(e))) from e
    s = pipeline.dataset_stats(folder.name, workspace=ws)
    typer.echo(f"Imported {s['name']!r} ({kind}) -> {folder}")
    if s["interactions"] == 0:
        typer.echo(f"  {s['items']:,} items only, no interactions: encode it and explain "
                   "items with model-free targets (content_focus); training needs interactions")
    else:
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
        ("items with text", f"{s['items_with_text']:,} ({s['text_coverage']:.1%} coverage; "
                            f"{s['image_only_items']:,} image-only, "
                            f"{s['text_only_items']:,} text-only)"),
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
    features: bool = typer.Option(True, "--features/--no-features",
                                  help="Also write the dataset's features (newest encoded, "
                                       "else imported) as <modality>_feat.npy."),
) -> None:
    """Export a dataset and its features (encoded or imported) to another format."""
    from befa_viz import pipeline

    if fmt != "mmrec":
        raise typer.BadParameter(f"unknown format {fmt!r}; choose one of: mmrec.",
                                 param_hint="--format")
    folder = pipeline.export_mmrec(out, dataset=dataset, workspace=_data_workspace(workspace),
                                   name=name, include_features=features)
    typer.echo(f"Exported to {folder}: " + ", ".join(sorted(p.name for p in folder.iterdir())))
    prov_path = folder / "features.json"
    if features and prov_path.is_file():
        import json

        for m, p in json.loads(prov_path.read_text())["modalities"].items():
            typer.echo(f"  {m}_feat.npy: {p.get('encoder') or p['source']} ({p['path']})")
    elif features:
        typer.echo("  no features: none encoded or imported (run 'befa-viz encode' first)")


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
    progress = _progress(progress)
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

@data_app.command("masks")
def data_masks(
    dataset: str | None = typer.Option(None, "--dataset", "-d", help=_DATASET_HELP),
    workspace: Path | None = typer.Option(None, "--workspace", "-w", help=_DATA_WS_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Remake masks made for another "
                                   "version of the dataset."),
    sheet_items: int = typer.Option(48, "--sheet-items", min=1, help="Items on the contact "
                                    "sheet."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar."),
) -> None:
    """Make garment masks (ground truth) of product photos on a light background."""
    from befa_viz import pipeline

    res = pipeline.make_masks(dataset, workspace=_data_workspace(workspace), overwrite=overwrite,
                              sheet_items=sheet_items, progress=progress)
    s = res.summary
    typer.echo(f"Garment masks of {res.dataset!r} -> {res.ground_truth}"
               + (" (up to date)" if res.reused else ""))
    typer.echo(f"  usable {s['usable']:,} of {s['items_with_photo']:,} photos "
               f"({s['usable_share']:.1%}; {s['low_contrast']:,} of them low-contrast), "
               f"unusable {s['unusable']:,}"
               + (": " + ", ".join(f"{k} {v}" for k, v in s["unusable_reasons"].items())
                  if s["unusable_reasons"] else ""))
    typer.echo(f"  weak token labels for {s['items_with_token_truth']:,} items")
    for label, path in res.sheets.items():
        typer.echo(f"  {label}: {path}")


# ---- encode command ---------------------------------------------------------------------


def _engine_option() -> Any:
    return typer.Option("local", "--engine", metavar="local|ray",
                        help="local: this process; ray: a pool of Ray actors (pip install "
                             "'befa-viz[ray]'), same results and cache.")


def _address_option() -> Any:
    return typer.Option(None, "--address",
                        help="--engine ray: 'auto' or HOST:PORT / ray://HOST:PORT to join a "
                             "cluster (shared filesystem); default a local Ray.")


def _workers_option() -> Any:
    return typer.Option(None, "--workers", min=1,
                        help="--engine ray: actors (default: one per CPU of the cluster).")


def _timeout_option() -> Any:
    return typer.Option(None, "--connect-timeout", min=1.0,
                        help="--engine ray with --address: give up joining the cluster after "
                             "this many seconds (30).")


def _engine(engine: str, address: str | None, workers: int | None, progress: bool,
            connect_timeout: float | None = None) -> Any:
    if engine not in ("local", "ray"):
        raise typer.BadParameter(f"{engine!r} is not one of local, ray.", param_hint="--engine")
    if engine != "ray":
        if address is not None or workers is not None or connect_timeout is not None:
            raise typer.BadParameter("--address, --workers and --connect-timeout need "
                                     "--engine ray.", param_hint="--engine")
        return None
    from befa_viz.distributed import RayEngine, require_ray

    require_ray()
    return RayEngine(address=address, num_workers=workers, progress=progress,
                     connect_timeout=30.0 if connect_timeout is None else connect_timeout)


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
    resize: str = typer.Option("pad", "--resize",
                               help="Images to the square input: pad (aspect kept, padded), "
                                    "squash (distorts portraits) or crop (cuts the ends)."),
    pad_fill: str = typer.Option("edge", "--pad-fill",
                                 help="Fill of --resize pad: edge (the photo's edge colour) "
                                      "or mean (the encoder's mean colour)."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    workspace: str = typer.Option(None, "--workspace", "-w",
                                  help="Workspace folder (default $BEFA_VIZ_WORKSPACE or "
                                       "./befa-workspace)."),
    engine: str = _engine_option(),
    address: str = _address_option(),
    workers: int = _workers_option(),
    connect_timeout: float = _timeout_option(),
) -> None:
    """Encode item images and texts into the workspace feature store (reused when unchanged)."""
    progress = _progress(progress)
    from befa_viz.pipeline import encode_dataset

    def _key(k: str | None) -> str | None:
        return None if k is None or k.lower() in ("", "none") else k

    result = encode_dataset(
        workspace, dataset, image_encoder=_key(image_encoder), text_encoder=_key(text_encoder),
        batch_size=batch_size, device=device, shard=shard, progress=progress, missing=missing,
        text_field=text_field, chunk_size=chunk_size,
        resize=resize if _key(image_encoder) else None,
        pad_fill=pad_fill if _key(image_encoder) else None,
        engine=_engine(engine, address, workers, progress, connect_timeout),
    )
    typer.echo(f"dataset: {result.dataset}")
    for modality, path in result.items():
        table = result.tables[modality]
        if not result.complete[modality]:
            state = f"shard {shard} written; other shards pending (run without --shard to merge)"
        elif result.reused[modality]:
            state = "reused cache"
        elif result.resumed.get(modality):
            state = f"encoded, resumed with {result.resumed[modality]} chunk(s) kept"
        else:
            state = "encoded"
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
_TRACK_HELP = ("Log the run(s) to an experiment tracker: 'mlflow' (params, per-epoch metrics, "
               "gate, figures; local store <workspace>/mlruns, no network). Off by default.")
_TRACK_URI_HELP = "Tracking store: a folder or URI (default <workspace>/mlruns)."


def _track_option() -> Any:
    return typer.Option(None, "--track", parser=_registry_parser("tracker", lambda: ["mlflow"]),
                        metavar="mlflow", help=_TRACK_HELP)


def _track(track: str | None, runs: Any, workspace: Any, uri: str | None, experiment: str | None,
           artifacts: Any = ()) -> None:
    """Log runs to the tracker (``--track``) and say where they went."""
    if track is None:
        return
    from befa_viz.pipeline import track_runs

    done = track_runs(runs, workspace, tracker=track, tracking_uri=uri, experiment=experiment,
                      artifacts=artifacts)
    for t in done:
        state = "already tracked" if t.reused else "tracked"
        typer.echo(f"{track}: {state} as run {t.run_id} (experiment {t.experiment!r})")
    if done:
        typer.echo(f"  view: {done[0].view_command()}")


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
    train_features: bool = typer.Option(None, "--train-features/--no-train-features",
                                        help="Fine-tune the raw feature tables (as MMRec and "
                                             "the official BeFA code); default: the config's."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    workspace: str = typer.Option(None, "--workspace", "-w", help=_WS_HELP),
    devices: int = typer.Option(1, "--devices", min=1,
                                help="Data-parallel processes (torch.distributed DDP: gloo on "
                                     "CPU, one GPU each with --device cuda)."),
    track: str = _track_option(),
    tracking_uri: str = typer.Option(None, "--tracking-uri", help=_TRACK_URI_HELP),
    experiment: str = typer.Option(None, "--experiment", help="Tracker experiment name "
                                   "(default befa-viz)."),
) -> None:
    """Train a recommender, with or without the BeFA adapter, MMRec protocol."""
    progress = _progress(progress)
    from befa_viz.pipeline import train_model

    if train_features is not None:  # an explicit flag wins over --set and the config
        set_ = [*(set_ or []), f"train_features={str(train_features).lower()}"]
    from befa_viz.distributed import torchrun_env

    launched = torchrun_env()  # torchrun ... -m befa_viz.cli train: one rank of its job
    if launched is not None and devices == 1:
        devices = launched[1]
    run = train_model(
        workspace, model=model, adapter=adapter, dataset=dataset,
        features=_features_arg(image_features, text_features, features), config_file=config,
        overrides=set_, seed=seed, epochs=epochs, device=device, resume=resume,
        overwrite=overwrite, progress=progress, devices=devices,
    )
    if launched is not None and launched[0] != 0:
        return  # rank 0 reports
    typer.echo(f"dataset: {run.info['dataset']}")
    for m, prov in run.info.get("features", {}).items():
        typer.echo(f"{m} features: {prov['path']} [{prov.get('encoder') or 'unknown encoder'}]")
    typer.echo(f"run: {run.path}")
    typer.echo(f"best epoch {run.metrics.get('best_epoch')} of {run.metrics.get('epochs_run')}: "
               f"valid {_fmt_metrics(run.valid_metrics)}")
    typer.echo(f"test (at best valid): {_fmt_metrics(run.test_metrics)}")
    for m, g in run.gate.items():
        typer.echo(f"BeFA gate ({m}): mean {g['mean']:.3f}, std {g['std']:.3f}, "
                   f"q05–q95 {g['q05']:.3f}–{g['q95']:.3f}; {run.gate_notes.get(m, '')}")
    for m, d in run.feature_drift.items():
        typer.echo(f"fine-tuned {m} features: cosine to the encoder output mean {d['mean']:.3f}, "
                   f"min {d['min']:.3f}")
    _track(track, run, workspace, tracking_uri, experiment)


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
    track: str = _track_option(),
    tracking_uri: str = typer.Option(None, "--tracking-uri", help=_TRACK_URI_HELP),
    experiment: str = typer.Option(None, "--experiment", help="Tracker experiment name "
                                   "(default befa-viz)."),
) -> None:
    """Train a backbone with and without BeFA over seeds; table, paired tests, figure."""
    progress = _progress(progress)
    from befa_viz.pipeline import compare_adapter

    result = compare_adapter(
        workspace, backbone=backbone, seeds=seeds, dataset=dataset,
        features=_features_arg(image_features, text_features, features), config_file=config,
        overrides=set_, epochs=epochs, device=device, progress=progress,
    )
    typer.echo(result.format())
    for kind, path in result.paths.items():
        typer.echo(f"{kind}: {path}")
    _track(track, [r for rs in result.runs.values() for r in rs], workspace, tracking_uri,
           experiment, artifacts=list(result.paths.values()))


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
    track: str = _track_option(),
    tracking_uri: str = typer.Option(None, "--tracking-uri", help=_TRACK_URI_HELP),
    experiment: str = typer.Option(None, "--experiment", help="Tracker experiment name "
                                   "(default befa-viz)."),
) -> None:
    """Train every combination of a sweep; best by validation metric (never test)."""
    progress = _progress(progress)
    from befa_viz.pipeline import run_sweep

    result = run_sweep(config, workspace, dataset=dataset,
                       features=_features_arg(image_features, text_features, features),
                       overrides=set_, progress=progress)
    typer.echo(result.format())
    for kind, path in result.paths.items():
        typer.echo(f"{kind}: {path}")
    _track(track, result.runs, workspace, tracking_uri, experiment,
           artifacts=list(result.paths.values()))


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
    dataset: str = typer.Option(None, "--dataset", "-d",
                                help="Dataset (default: the latest); its newest run is "
                                     "explained, or, without a run (e.g. items only), the "
                                     "encoder alone with a model-free target."),
    encoder: str = typer.Option(None, "--encoder",
                                help="Encoder key for model-free targets without a run "
                                     "(default: the one that encoded the dataset)."),
    engine: str = _engine_option(),
    address: str = _address_option(),
    workers: int = _workers_option(),
    connect_timeout: float = _timeout_option(),
) -> None:
    """Attribute items' images or texts without and with BeFA; write reports and scores.

    Item ids are the dataset's original ids (e.g. MovieLens movie ids). A dataset without a
    trained run (an items-only catalog) is explained with a model-free target
    (content_focus: what the encoder's feature is built from).
    """
    progress = _progress(progress)
    from befa_viz import pipeline
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
    ray_engine = _engine(engine, address, workers, progress, connect_timeout)
    if ray_engine is not None and no_cache:
        raise typer.BadParameter("--engine ray hands maps back through the cache; drop "
                                 "--no-cache.", param_hint="--engine")
    if run is None and not pipeline.has_explainable_run(workspace, dataset, modality):
        if ray_engine is not None:
            raise typer.BadParameter("--engine ray needs a trained run (model-free "
                                     "content heatmaps run locally).", param_hint="--engine")
        _content_heatmaps(ids, top_drift=top_drift, user=user, target=target, method=method,
                          steps=steps, baseline=baseline, modality=modality, out=out,
                          formats=formats, encoder=encoder, dataset=dataset,
                          workspace=workspace, progress=progress)
        return
    if run is None and dataset is not None:
        run = str(pipeline.resolve_attribution_run(workspace, None, modality, dataset).path)
    result = heatmap_report(
        ids, top_drift=top_drift, workspace=workspace, out_dir=out,
        formats=tuple(_id_list(formats)), run=run, user=user, target=target, method=method,
        n_steps=steps, baseline=baseline, compare_adapter=compare == "adapter",
        modality=modality, sanity=sanity, use_cache=not no_cache, cache=cache_dir,
        progress=progress, engine=ray_engine,
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


def _content_heatmaps(ids: Any, *, top_drift: int | None, user: str | None, target: str | None,
                      method: str | None, steps: int | None, baseline: str | None, modality: str,
                      out: Path | None, formats: str, encoder: str | None, dataset: str | None,
                      workspace: str | None, progress: bool) -> None:
    """``heatmap`` on a dataset without a trained run: the encoder alone (model-free)."""
    from befa_viz import pipeline
    from befa_viz.errors import ConfigError

    ws = pipeline.Workspace(workspace)
    name = ws.resolve_dataset(dataset)
    why = ("it was imported as items only" if ws.load_dataset(name).items_only
           else f"it has no complete run with {modality} features")
    if top_drift is not None or user is not None:
        raise ConfigError(f"Dataset {name!r} cannot use --top-drift or --user: {why}, and both "
                          "need a trained recommender. Explain items with --item/--items and "
                          "--target content_focus.")
    if target is not None and target not in pipeline.MODEL_FREE_TARGETS:
        raise ConfigError(f"Target {target!r} needs a trained recommender, but dataset {name!r} "
                          f"has none ({why}). Use --target content_focus (the encoder alone), "
                          "or train a run first.")
    typer.echo(f"dataset {name!r}: {why}; explaining the encoder alone "
               f"(target {target or 'content_focus'})")
    folder = out or ws.reports_dir / "heatmaps" / f"{name}-{modality}-{method or 'default'}-content"
    res = pipeline.content_heatmaps(
        ids, workspace=ws, dataset=name, modality=modality, target=target or "content_focus",
        method=method, n_steps=steps, baseline=baseline, encoder=encoder, out_dir=folder,
        formats=tuple(_id_list(formats)), progress=progress)
    p = res.attributions[0].params
    typer.echo(f"{modality}: encoder {res.encoder}, method {res.attributions[0].method}"
               + (f" ({p['n_steps']} steps, baseline {p.get('baseline')})" if "n_steps" in p
                  else ""))
    for a in res.attributions:
        delta = f", IG completeness error {a.delta:.2g}" if a.delta is not None else ""
        typer.echo(f"  {a.item_id}: {', '.join(x.name for x in res.paths[a.item_id])}{delta}")
    typer.echo(f"report: {res.out_dir}")


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
                                help="A dataset with ground truth: a synthetic shop, or one "
                                     "with garment masks ('befa-viz data masks')."),
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
    engine: str = _engine_option(),
    address: str = _address_option(),
    workers: int = _workers_option(),
    connect_timeout: float = _timeout_option(),
) -> None:
    """Score attribution methods against ground-truth masks (shop or garments), with controls."""
    progress = _progress(progress)
    from befa_viz.benchmark import benchmark_options, run_benchmark
    from befa_viz.config import read_yaml

    opts = benchmark_options(read_yaml(config) if config else {}, where=str(config))
    flags = {"dataset": dataset, "n_items": items, "n_items_expensive": items_expensive,
             "n_text_items": text_items, "n_steps": steps, "seed": seed,
             "runs": _id_list(runs) or None,
             "methods": _id_list(methods) if methods is not None else None,
             "targets": _id_list(targets) if targets is not None else None,
             "text_methods": _id_list(text_methods) if text_methods is not None else None}
    opts.update({k: v for k, v in flags.items() if v is not None})
    ray_engine = _engine(engine, address, workers, progress, connect_timeout)
    if ray_engine is not None and no_cache:
        raise typer.BadParameter("--engine ray hands maps back through the cache; drop "
                                 "--no-cache.", param_hint="--engine")
    result = run_benchmark(workspace, **opts, out_dir=out, use_cache=not no_cache,
                           cache_dir=cache_dir, progress=progress, engine=ray_engine)
    typer.echo(result.format())
    p = result.params
    if p.get("truth") != "synthetic":
        typer.echo(f"garment masks: {p['items_usable_mask']} explainable items with a usable "
                   f"mask, {p['items_unusable_mask']} skipped (unusable mask)")
    if ray_engine is not None:
        st = ray_engine.stats
        typer.echo(f"Ray: {st['maps']} maps computed by {st['workers']} worker(s) in "
                   f"{st['seconds']:.0f} s, then served from the cache" if st.get("maps") else
                   "Ray: not started, every map was in the cache")
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
    dataset: str = typer.Option("shop", "--dataset", "-d",
                                help="shop (the synthetic shop) or hm (the H&M sample from "
                                     "../shared/data/hm-fashion-sample, with garment masks)."),
    data: Path = typer.Option(None, "--data", help="Folder of the real dataset (default: "
                              "../shared/data/<its folder>)."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    workspace: str = typer.Option(None, "--workspace", "-w", help=_WS_HELP),
) -> None:
    """The main job: data (synthetic shop or H&M), encode, train with/without BeFA, benchmark,
    report."""
    progress = _progress(progress)
    from befa_viz.demo import run_demo

    # size is checked by its parser; the Literal type cannot be expressed in typer
    result = run_demo(workspace, size=size, dataset=dataset, data=data,  # type: ignore[arg-type]
                      progress=progress)
    typer.echo(result.summary())


def main() -> None:
    """Console entry point: a BefaVizError prints one line and exits 2."""
    try:
        code = app(standalone_mode=False)
    except _CliInterrupt as e:
        _interrupted(e.interrupt)
    except BefaVizError as e:
        if _state["verbose"]:
            raise
        typer.secho(f"error: {e}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except KeyboardInterrupt as e:  # outside a command (e.g. while parsing)
        _interrupted(e)
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        sys.exit(1)
    except click_exceptions() as e:  # usage errors: typer/click format them
        usage = cast("_UsageError", e)  # every class click_exceptions() returns has these
        usage.show()
        sys.exit(usage.exit_code)
    if isinstance(code, int) and code:  # typer.Exit(code) (130 for a Ctrl-C outside commands)
        sys.exit(code)


def _interrupted(e: KeyboardInterrupt) -> None:
    """Ctrl-C: one line saying what was kept (``Interrupted``'s message), exit status 130."""
    from befa_viz.errors import Interrupted

    if _state["verbose"]:
        import traceback

        traceback.print_exception(e)
    typer.echo(str(e) if isinstance(e, Interrupted) else "interrupted", err=True)
    sys.exit(130)


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


if __name__ == "__main__":  # python -m befa_viz.cli
    main()
