"""Which run and which encoder explain an item: paired runs, the default run, its encoder."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from befa_viz.pipeline.memos import _ENCODERS, _open_run, _run_identity
from befa_viz.pipeline.train import resolve_run
from befa_viz.workspace import Workspace

log = logging.getLogger(__name__)

__all__ = ["encoder_for_run", "find_paired_run", "resolve_attribution_run"]


def _variant_of(run: Any) -> str:
    return "without" if str(run.info.get("adapter", run.config.adapter)) == "none" else "with"


def _attr_ws(workspace: Workspace | str | os.PathLike[str] | None) -> Workspace:
    return workspace if isinstance(workspace, Workspace) else Workspace(workspace)


def _feature_of(run: Any, modality: str) -> Any:
    from befa_viz.errors import ConfigError

    feats = run.features
    if modality not in feats:
        have = ", ".join(sorted(feats)) or "none"
        raise ConfigError(
            f"Run {run.name} (model {run.config.model!r}) has no {modality} features (it has: "
            f"{have}), so its {modality} content cannot be attributed. Choose --modality "
            f"{next(iter(sorted(feats)), 'image')} or a run trained with {modality} features."
        )
    return feats[modality]


def encoder_for_run(run: Any, modality: str = "image", *, device: str | None = None,
                    reuse: bool = True) -> Any:
    """Rebuild the encoder that produced a run's features, checking its fingerprint.

    The encoder key comes from the run's feature manifest; the rebuilt encoder's fingerprint
    (key, weights, preprocessing) must equal the one the manifest recorded, so a heatmap is
    never computed with other weights than the features were made with.

    Encoders are memoised in-process by (key, modality, recorded fingerprint, device): the
    most recent :data:`ENCODER_MEMO_SIZE` are reused, their fingerprint checked again on every
    hit (see :func:`clear_memos`).

    Args:
        run: A :class:`~befa_viz.train.Run`.
        modality: ``"image"`` or ``"text"``.
        device: Torch device (default: the run's).
        reuse: Take the encoder from (and keep it in) the memo; ``False`` builds a private
            one that the caller may modify.

    Returns:
        The encoder, in eval mode (shared with other callers when ``reuse``: do not modify
        it).

    Raises:
        ConfigError: If the run has no features of ``modality``.
        DataError: If the features record no encoder (e.g. imported MMRec arrays).
        StaleArtifactError: If the encoder available now differs from the recorded one.

    Example:
        >>> from befa_viz.pipeline import load_run
        >>> from befa_viz.testing import toy_workspace
        >>> ws = toy_workspace()
        >>> encoder_for_run(load_run(ws), "image").key
        'tiny:cnn'
    """
    from befa_viz.encoders import create_encoder
    from befa_viz.errors import DataError, StaleArtifactError

    feat = _feature_of(run, modality)
    key = feat.encoder_key
    if not key:
        raise DataError(
            f"The {modality} features of run {run.name} ({feat.path}) record no encoder (they "
            "were imported, not encoded here), so their pixels/tokens cannot be attributed. "
            "Encode the dataset with 'befa-viz encode' and train the run on those features."
        )
    recorded = feat.encoder_fingerprint
    if not recorded:
        raise DataError(
            f"The {modality} feature manifest of run {run.name} ({feat.path}) records encoder "
            f"{key!r} but not its fingerprint; re-encode with 'befa-viz encode' and retrain."
        )
    memo_key = (key, modality, recorded, str(device or run.device))
    encoder = _ENCODERS.get(memo_key) if reuse else None
    built = encoder is None
    if encoder is None:
        # the resize mode the features were made with (stores from before "pad" say "squash")
        pre = getattr(feat, "manifest", {}).get("preprocessing") or {}
        resize = {"resize": pre["resize"], "pad_fill": pre.get("pad_fill")} \
            if modality == "image" and pre.get("resize") else {}
        encoder = create_encoder(key, modality=modality, **resize)
    current = encoder.fingerprint()
    if current != recorded:
        raise StaleArtifactError(
            f"Run {run.name}'s {modality} features were made by encoder {key!r} with "
            f"fingerprint {recorded}, but the {key!r} available now has fingerprint {current} "
            "(other weights or preprocessing). Attributions would explain another model: "
            "restore the original weights, or re-encode ('befa-viz encode') and retrain."
        )
    if built:
        encoder.eval()
        encoder = encoder.to(device or run.device)
        if reuse:
            _ENCODERS.put(memo_key, encoder)
    return encoder


def find_paired_run(
    workspace: Workspace | str | os.PathLike[str] | None, run: Any
) -> Any:  # -> Run | None
    """The run with the same dataset, backbone, seed and features but the other adapter setting.

    Candidates are the complete runs beside ``run`` (and in ``workspace``); among several, the
    one whose other hyper-parameters match most, then the newest, is chosen.

    Args:
        workspace: Workspace (or its folder); ``None`` looks only beside ``run``.
        run: A :class:`~befa_viz.train.Run`.

    Returns:
        The paired run, or ``None``.

    Example:
        >>> from befa_viz.pipeline import load_run
        >>> from befa_viz.testing import toy_workspace
        >>> ws = toy_workspace()
        >>> run = load_run(ws, ws.run_dirs()[0])
        >>> run.config.adapter, find_paired_run(ws, run).config.adapter
        ('none', 'befa')
    """
    from befa_viz.train import Run

    found = _find_paired_dir(workspace, run)
    return None if found is None else Run.load(found, device=run.device)


def _find_paired_dir(workspace: Workspace | str | os.PathLike[str] | None,
                     run: Any) -> Path | None:
    """The folder of :func:`find_paired_run`'s choice (candidate configs read via a memo)."""
    folders = {run.path.parent.resolve()}
    if workspace is not None:
        folders.add(_attr_ws(workspace).runs_dir.resolve())
    want_without = _variant_of(run) == "with"
    feats = {m: p.get("fingerprint") for m, p in run.info.get("features", {}).items()}
    ident = run.config.identity()
    best: tuple[tuple[int, float], Path] | None = None
    for folder in sorted(folders):
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            meta_path = p / "run.json"
            if p.resolve() == run.path.resolve() or not meta_path.is_file():
                continue
            try:
                info = json.loads(meta_path.read_text())
            except json.JSONDecodeError:
                log.warning("Skipping unreadable %s", meta_path)
                continue
            if (info.get("status", "complete") != "complete"
                    or info.get("dataset_fingerprint") != run.info.get("dataset_fingerprint")
                    or info.get("model") != run.info.get("model")
                    or info.get("seed") != run.info.get("seed")
                    or (str(info.get("adapter")) == "none") != want_without
                    or {m: q.get("fingerprint") for m, q in info.get("features", {}).items()}
                    != feats):
                continue
            other = _run_identity(p)
            same = sum(1 for k, v in ident.items()
                       if not k.startswith("adapter") and other.get(k) == v)
            rank = (same, meta_path.stat().st_mtime)
            if best is None or rank > best[0]:
                best = (rank, p)
    return None if best is None else best[1]


def resolve_attribution_run(
    workspace: Workspace | str | os.PathLike[str] | None = None,
    run: Any = None,
    modality: str = "image",
    dataset: str | None = None,
) -> Any:  # -> Run
    """The run to explain: a :class:`~befa_viz.train.Run`, a name or folder, or (``None``) the
    newest complete run of ``dataset`` (default: the latest) that has ``modality`` features.

    A name, folder or ``None`` opens the run through the in-process run memo (see
    :func:`clear_memos`): the returned run may be shared, treat it as read-only."""
    from befa_viz.errors import DataError
    from befa_viz.train import Run

    if isinstance(run, Run):
        return run
    ws = _attr_ws(workspace)
    if run is not None:
        return _open_run(resolve_run(ws, run))
    dataset = ws.resolve_dataset(dataset)
    runs = ws.run_dirs(dataset=dataset)
    with_mod = [p for p in runs
                if modality in json.loads((p / "run.json").read_text()).get("features", {})]
    if not with_mod:
        detail = (f"its runs ({', '.join(p.name for p in runs)}) have no {modality} features"
                  if runs else "it has no complete run")
        raise DataError(
            f"Nothing to explain for dataset {dataset!r} in {ws.root}: {detail}. Train a "
            f"multimodal run, e.g. 'befa-viz train --model vbpr --adapter none' and "
            f"'--adapter befa', or pass --run."
        )
    log.log(logging.WARNING if len(with_mod) > 1 else logging.INFO,
            "using run %s, the newest of %d run(s) of dataset %r with %s features; pass --run "
            "to choose another", with_mod[-1].name, len(with_mod), dataset, modality)
    return _open_run(with_mod[-1])
