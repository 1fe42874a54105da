"""Attribution maps of one explain call: the job, its inputs, cache keys, cached maps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from befa_viz.pipeline.memos import _COMPUTE_LOCK, _MEAN_PIXELS, _weights_digest
from befa_viz.pipeline.runs import _variant_of
from befa_viz.workspace import Workspace

__all__ = ["DEFAULT_BASELINES", "DEFAULT_TARGET", "VARIANTS"]


#: Default target: comparable with and without the adapter (see DESIGN.md, "Attribution").
DEFAULT_TARGET = "content_score"
#: Default baseline per modality (an explicit, recorded choice; see befa_viz.attribution).
DEFAULT_BASELINES = {"image": "blur", "text": "pad"}
VARIANTS = ("without", "with")
_VARIANT_TITLES = {"without": "without adapter", "with": "with adapter"}
_MEAN_PIXEL_ITEMS = 64  # images averaged for the "mean" baseline


def _item_text(ds: Any, idx: int, feat: Any) -> str:
    """The text the features were computed from (the manifest's ``text_field``)."""
    from befa_viz.encoders.store import item_text

    return item_text(ds.catalog, idx, (feat.manifest.get("policies") or {}).get("text_field", "text"))


def _item_meta(ds: Any, idx: int, n_train_users: int) -> dict[str, Any]:
    cat = ds.catalog
    meta: dict[str, Any] = {"id": cat.item_ids[idx], "title": cat.titles[idx],
                            "text": cat.texts[idx], "dataset": ds.name,
                            "training users": n_train_users}
    if cat.meta is not None:
        for k, v in cat.meta.iloc[idx].items():
            if k not in meta and isinstance(v, (str, int, float, bool, np.generic)):
                meta[str(k)] = v.item() if isinstance(v, np.generic) else v
    return meta


def _dataset_mean_pixel(ds: Any, encoder: Any) -> list[float]:
    """Mean colour in [0, 1] of up to ``_MEAN_PIXEL_ITEMS`` evenly spaced item images."""
    import torch

    key = (str(ds.path), ds.fingerprint(), encoder.fingerprint())
    hit = _MEAN_PIXELS.get(key)
    if hit is not None:
        return list(hit)
    with_image = [i for i in range(ds.n_items) if ds.catalog.has_image(i)]
    pick = [with_image[int(j)] for j in
            np.linspace(0, len(with_image) - 1, min(_MEAN_PIXEL_ITEMS, len(with_image)))]
    images = [ds.catalog.image(i) for i in pick]
    with torch.no_grad():
        px = encoder.load_pixels(images)
    mean = px.mean(dim=(0, 2, 3))
    boxes = encoder.content_boxes(images)
    s = px.shape[-1]
    if any(tuple(b) != (0, 0, s, s) for b in boxes):  # padded photos: the pad is no colour of theirs
        inside = torch.zeros(px.shape[0], 1, s, s, dtype=torch.bool)
        for j, (top, left, h, w) in enumerate(boxes):
            inside[j, 0, top: top + h, left: left + w] = True
        mean = (px * inside).sum(dim=(0, 2, 3)) / inside.sum()
    return list(_MEAN_PIXELS.put(key, tuple(round(float(v), 6) for v in mean)))


def _method_options(method: str, modality: str, n_steps: int | None, baseline: str | None,
                    ds: Any, encoder: Any) -> dict[str, Any]:
    """The method's options from the common knobs; knobs it does not take are left out."""
    import inspect

    from befa_viz.attribution import ATTRIBUTIONS, method_modalities
    from befa_viz.errors import ConfigError

    if modality not in method_modalities(method):
        ok = [m for m in ATTRIBUTIONS.names() if modality in method_modalities(m)]
        raise ConfigError(f"Method {method!r} does not support the {modality} modality; "
                          f"choose one of {', '.join(ok)}.")
    from befa_viz.attribution.ig import DEFAULT_N_STEPS

    accepted = inspect.signature(ATTRIBUTIONS.get(method)).parameters
    opts: dict[str, Any] = {}
    if "n_steps" in accepted:
        if n_steps is not None:
            opts["n_steps"] = int(n_steps)
        elif accepted["n_steps"].default is not None:  # else: the method's adaptive schedule
            opts["n_steps"] = DEFAULT_N_STEPS
    if "baseline" in accepted:
        opts["baseline"] = baseline or DEFAULT_BASELINES[modality]
        if opts["baseline"] == "mean" and modality == "image":
            opts["mean_pixel"] = _dataset_mean_pixel(ds, encoder)
    return opts


def _target_for(variant: str, target: str) -> str:
    """Target name per side; ``content_score`` is called ``adapted_alignment`` with the adapter."""
    if target in ("content_score", "adapted_alignment"):
        return "adapted_alignment" if variant == "with" else "content_score"
    return target


@dataclass
class _Job:
    """Everything shared by the items of one explain_items call."""

    ws: Workspace
    ds: Any
    encoder: Any
    runs: dict[str, Any]  # variant -> Run
    modality: str
    target: str
    method: str
    options: dict[str, Any]
    user_idx: int | None
    user: str | None
    seed: int
    cache: Any  # AttributionCache
    scores: Any  # ScoreCache
    use_cache: bool
    batch_size: int
    dataset_fingerprint: str = ""
    bar: Any = None
    kept: int = 0  # maps computed and stored in the cache by this call (for Ctrl-C)


def _inputs(job: _Job, idx: list[int]) -> list[Any]:
    if job.modality == "image":
        return [job.ds.catalog.image(i) for i in idx]
    feat = next(iter(job.runs.values())).features[job.modality]
    return [_item_text(job.ds, i, feat) for i in idx]


def _key(job: _Job, run: Any, item: int, target: str, options: dict[str, Any]) -> Any:
    from befa_viz.attribution.cache import AttributionKey

    feat = run.features[job.modality]
    return AttributionKey(
        run=_weights_digest(run), dataset=job.dataset_fingerprint, encoder=job.encoder.key,
        encoder_fingerprint=job.encoder.fingerprint(), features=feat.fingerprint,
        item_id=job.ds.catalog.item_ids[item], modality=job.modality, target=target,
        method=job.method, adapter=_variant_of(run) == "with",
        target_params={"user": job.user} if target == "user_score" else {},
        method_params=options, seed=job.seed)


def _attributions(job: _Job, variant: str, items: list[int], target: str
                  ) -> tuple[list[Any], list[bool]]:
    """Maps of ``items`` for one variant (cached, misses computed in batches)."""
    from befa_viz.attribution import explain

    run = job.runs[variant]
    keys = [_key(job, run, i, target, job.options) for i in items]

    # a random target draws one direction per position in the batch: one item per call keeps
    # an item's direction (and so its cached map) independent of the other items asked for
    step = 1 if target == "random" else job.batch_size

    def compute(missing: list[int]) -> list[Any]:
        with _COMPUTE_LOCK:  # shared (memoised) encoder and model: one computation at a time
            return _compute(missing)

    def _compute(missing: list[int]) -> list[Any]:
        out: list[Any] = []
        for s in range(0, len(missing), step):
            chunk = [items[j] for j in missing[s: s + step]]
            res = explain(
                job.encoder, run.model, _inputs(job, chunk), chunk, target=target,
                method=job.method, modality=job.modality,
                item_ids=[job.ds.catalog.item_ids[i] for i in chunk],
                users=job.ds.interactions.train(), user_idx=job.user_idx, seed=job.seed,
                **job.options)
            for j, a in zip(missing[s: s + step], res, strict=True):
                a.params.update(run=run.name, variant=variant,
                                pair=f"{variant}_adapter", user=job.user)
                if job.use_cache:  # stored at once, so that Ctrl-C keeps what is done
                    job.cache.put(keys[j], a)
                    job.kept += 1
            out.extend(res)
            if job.bar is not None:
                job.bar.update(len(chunk))
        return out

    return job.cache.get_or_compute(keys, compute, use_cache=job.use_cache)
