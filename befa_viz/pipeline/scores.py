"""Scores computed from a map: faithfulness curves, drift/omission against the truth, gates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from befa_viz.pipeline.maps import DEFAULT_BASELINES, _inputs, _Job, _key
from befa_viz.pipeline.memos import _COMPUTE_LOCK, _GROUND_TRUTHS, _dir_stamp, _file_stamp
from befa_viz.pipeline.runs import _variant_of

__all__ = ["SCORING_VERSION"]


#: Version of the score definitions; part of every score cache key (2: the faithfulness AUCs
#: are NaN when f(x) − f(baseline) cannot normalise the curve, see metrics.perturbation_auc).
SCORING_VERSION = 2


def _ground_truth(ds: Any) -> Any:
    """The dataset's ground truth (synthetic shop or garment masks; ``None`` without),
    memoised by file stats."""
    from befa_viz.data.truth import has_ground_truth, load_ground_truth

    folder = getattr(ds, "path", None)
    if folder is None or not has_ground_truth(folder):
        return None
    folder = Path(folder)
    key = (str(folder.resolve()), _file_stamp(folder / "generator.json"),
           _dir_stamp(folder / "ground_truth"))
    hit = _GROUND_TRUTHS.get(key)
    return hit if hit is not None else _GROUND_TRUTHS.put(key, load_ground_truth(folder))


def _text_truth(gt: Any, item_id: str, field_: str, text: str, att: Any) -> np.ndarray | None:
    """Ground-truth word labels aligned to the attribution's words (``None`` if they differ)."""
    entry = gt.tokens.get(item_id, {}).get(field_)
    if entry is None or att.tokens is None:
        return None
    labels = np.zeros(len(att.tokens), dtype=bool)
    special = att.params.get("special") or [False] * len(att.tokens)
    low, cursor = text.lower(), 0
    for j, (word, is_special) in enumerate(zip(att.tokens, special, strict=True)):
        if is_special or not word.strip():
            continue
        pos = low.find(word.lower(), cursor)
        if pos < 0:
            return None  # the tokenizer changed the text (accents, casing): cannot align
        cursor = pos + len(word)
        for (a, b), lab in zip(entry["spans"], entry["labels"], strict=True):
            if a < cursor and pos < b and lab:
                labels[j] = True
    return labels


def _faithfulness(job: _Job, variant: str, item: int, target: str, att: Any,
                  n_steps: int) -> dict[str, float | str | None]:
    """Deletion / insertion AUC of the attributed target, perturbing in |map| order."""
    import warnings

    import torch

    from befa_viz.attribution import create_target, make_baseline
    from befa_viz.attribution.explain import prepare_inputs
    from befa_viz.attribution.methods import special_token_ids
    from befa_viz.metrics import perturbation_auc

    run = job.runs[variant]
    model = run.model
    inputs = prepare_inputs(job.encoder, _inputs(job, [item]))
    # prepare_inputs gives pixels for the image modality, the tokenize mapping for text
    with torch.no_grad():
        if isinstance(inputs, torch.Tensor):
            reference = job.encoder(inputs)
        else:
            reference = job.encoder(inputs["input_ids"], inputs["attention_mask"])
    tgt = create_target(target, model=model, modality=job.modality, item_idx=[item],
                        reference=reference, users=job.ds.interactions.train(),
                        user_idx=job.user_idx, dim=int(job.encoder.dim), seed=job.seed)
    tgt = tgt.to(job.encoder.device).eval()
    dev = job.encoder.device
    if isinstance(inputs, torch.Tensor):
        base = make_baseline(inputs, _faithfulness_baseline(job),
                             mean_pixel=job.options.get("mean_pixel"))
        x, b = inputs[0].cpu().numpy(), base[0].cpu().numpy()
        amap = np.abs(np.asarray(att.values, dtype=np.float64))
        box = att.params.get("content_box")  # a padded input: perturb the photo only

        def f(batch: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                t = torch.from_numpy(np.ascontiguousarray(batch)).to(dev)
                rows = torch.zeros(t.shape[0], dtype=torch.long, device=dev)
                return tgt(job.encoder(t), rows).cpu().numpy()
    else:
        token_values = att.extras.get("token_values")
        box = None
        ids = inputs["input_ids"][0]
        keep = inputs["attention_mask"][0].bool()
        ids = ids[keep]
        if token_values is None or len(token_values) != ids.numel():
            return {"deletion_auc": None, "insertion_auc": None,
                    "faithfulness_steps": int(n_steps)}
        pad = int(getattr(job.encoder, "pad_token_id", 0))
        special = special_token_ids(job.encoder)
        base_ids = torch.tensor([int(t) if int(t) in special else pad for t in ids.tolist()])
        x, b = ids.cpu().numpy().astype(np.float32), base_ids.numpy().astype(np.float32)
        amap = np.abs(np.asarray(token_values, dtype=np.float64))

        def f(batch: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                t = torch.from_numpy(np.rint(batch)).long().to(dev)
                rows = torch.zeros(t.shape[0], dtype=torch.long, device=dev)
                return tgt(job.encoder(t, torch.ones_like(t)), rows).cpu().numpy()
    # f(x) == f(baseline), or a curve whose ends are too close to normalise it (resolution
    # below metrics.MIN_RESOLUTION), gives NaN: recorded as null, with the resolution beside it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        d = perturbation_auc(f, x, b, amap, n_steps=n_steps, seed=job.seed, box=box)
        ins = perturbation_auc(f, x, b, amap, insert=True, n_steps=n_steps, seed=job.seed,
                               box=box)
    return {"deletion_auc": _num(d["auc"]), "insertion_auc": _num(ins["auc"]),
            "deletion_resolution": _num(d["resolution"]),
            "insertion_resolution": _num(ins["resolution"]),
            "faithfulness_f_x": _num(d["f_x"]), "faithfulness_f_baseline": _num(d["f_baseline"]),
            "faithfulness_baseline": _faithfulness_baseline(job),
            "faithfulness_steps": int(n_steps)}


def _faithfulness_baseline(job: _Job) -> str:
    return (str(job.options.get("baseline", DEFAULT_BASELINES["image"]))
            if job.modality == "image" else "pad")


def _variant_scores(job: _Job, variant: str, item: int, target: str, att: Any,
                    rel_map: np.ndarray, is_mask: bool, q: float, faithfulness_steps: int
                    ) -> tuple[dict[str, Any], bool]:
    """One variant's scores, from the score cache when possible; and whether they all were.

    Two entries per map (:class:`~befa_viz.attribution.cache.ScoreCache`): ``regions``
    (drift, omission, mass in mask: keyed by the map's and the relevance map's digests and
    ``q``) and ``faithfulness`` (the deletion / insertion curves, the only part that runs the
    encoder: keyed by the map's digest, the curve points and baseline), so changing ``q``
    never reruns the curves.
    """
    from befa_viz.attribution.cache import array_digest, attribution_digest
    from befa_viz.viz.verdict import unscored_reason

    reason = unscored_reason(att)
    if reason is not None:  # numbers from such a map would look like evidence: the reason
        empty = {k: None for k in ("drift", "omission", "deletion_auc", "insertion_auc")}
        return {**empty, **({"mass_in_mask": None} if is_mask else {}), "q": float(q),
                "delta": _num(att.delta), "unscored": reason}, False
    key = _key(job, job.runs[variant], item, target, job.options) if job.use_cache else None
    digest = attribution_digest(att) if job.use_cache else ""

    def cached(part: str, inputs: dict[str, str], params: dict[str, Any],
               compute: Any) -> tuple[dict[str, Any], bool]:
        params = {**params, "version": SCORING_VERSION}
        if key is not None:
            hit = job.scores.get(key, part, inputs, params)
            if hit is not None:
                return hit, True
        out = compute()
        if key is not None:
            job.scores.put(key, part, inputs, params, out)
        return out, False

    def faithfulness() -> dict[str, Any]:
        with _COMPUTE_LOCK:
            return _faithfulness(job, variant, item, target, att, faithfulness_steps)

    # a padded input's scores read only its content box: the box is part of their key (a
    # whole-map box is left out, so entries scored before boxes existed stay valid)
    box = att.params.get("content_box") if att.modality == "image" else None
    shape = list(np.asarray(att.values).shape)
    boxed = {"content_box": [int(v) for v in box]} \
        if box is not None and [int(v) for v in box] != [0, 0, *shape] else {}
    regions, hit_r = cached(
        "regions",
        {"map": digest, "relevance": array_digest(rel_map) if key is not None else ""},
        {"q": float(q), "is_mask": bool(is_mask), **boxed},
        lambda: _scores(att, rel_map, is_mask, q))
    faith, hit_f = cached(
        "faithfulness", {"map": digest},
        {"steps": int(faithfulness_steps), "baseline": _faithfulness_baseline(job), **boxed},
        faithfulness)
    return {**regions, **faith}, hit_r and hit_f


def _num(v: Any) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)


def _scores(att: Any, relevance: np.ndarray, is_mask: bool, q: float) -> dict[str, Any]:
    import warnings

    from befa_viz.metrics import drift_omission, fit_to_box, mass_in_mask

    values = np.asarray(att.values, dtype=np.float64)
    rel = relevance
    # a padded input's photo is its content box: masks at the photo's aspect go into the box,
    # and only the box is scored (the pad counts nowhere)
    box = att.params.get("content_box") if att.modality == "image" else None
    if rel.ndim == 2 and rel.shape != values.shape:
        rel = fit_to_box(rel, values.shape, box)
    with warnings.catch_warnings():  # all-zero map → NaN, recorded as null
        warnings.simplefilter("ignore", UserWarning)
        do = drift_omission(values, rel, q, box=box)
    out = {"drift": _num(do["drift"]), "omission": _num(do["omission"]), "q": float(q),
           "delta": _num(att.delta)}
    if is_mask:
        out["mass_in_mask"] = _num(mass_in_mask(values, rel, box=box))
    return out


def _item_gate(run: Any, modality: str, item: int) -> dict[str, Any]:
    import torch

    out: dict[str, Any] = dict(run.gate.get(modality, {}))
    if _variant_of(run) == "with":
        model = run.model
        with torch.no_grad():
            g = model.gate(modality, model.raw_features(modality)[item: item + 1])
        out.update(item_gate_mean=float(g.mean()), item_gate_min=float(g.min()),
                   item_gate_max=float(g.max()))
    return out
