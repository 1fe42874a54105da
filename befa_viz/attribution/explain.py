"""Explain items: raw images/texts → targets → a registered method → :class:`Attribution` s.

This layer knows encoders and models, not workspaces: the pipeline finds the run, its dataset
and the matching encoder, then calls :func:`explain` or :func:`explain_pair`.

Image attributions record where the photo lies in the map (the encoder's resize mode, see
:mod:`befa_viz.encoders.base`): ``params["content_box"] = [top, left, height, width]`` in map
pixels, ``params["source_size"] = [height, width]`` of the original photo and
``params["resize"]`` the mode. Scores (:mod:`befa_viz.metrics.attribution`, ``box=``) read only
the box, so a ``"pad"`` input's pad never counts; figures (:mod:`befa_viz.viz`) crop it away
and draw the photo at its own aspect. Pixels passed in as a tensor carry no sizes: give their
boxes with ``content_boxes=`` (otherwise the whole map is the content, as for ``"squash"``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from befa_viz.attribution.methods import attribute, method_options
from befa_viz.attribution.result import Attribution
from befa_viz.attribution.targets import AttributionTarget, create_target
from befa_viz.errors import ConfigError

if TYPE_CHECKING:
    from befa_viz.encoders.base import ImageEncoder, TextEncoder

__all__ = ["content_params", "explain", "explain_pair", "image_boxes", "prepare_inputs"]


def prepare_inputs(encoder: nn.Module, items: Any) -> torch.Tensor | dict[str, torch.Tensor]:
    """Turn raw items into what methods take, on the encoder's device.

    Args:
        encoder: Image or text encoder.
        items: PIL images (image encoders) or strings (text encoders); already prepared pixels
            ``[B, 3, S, S]`` or a ``tokenize`` mapping pass through.

    Returns:
        Pixels in ``[0, 1]`` or the ``encoder.tokenize`` mapping.
    """
    dev = getattr(encoder, "device", torch.device("cpu"))
    modality = getattr(encoder, "modality", "")
    if isinstance(items, torch.Tensor):
        if modality != "image":
            raise ConfigError("A pixel tensor was given to a text encoder; pass strings.")
        return items.to(dev).float()
    if isinstance(items, Mapping):
        return {k: v.to(dev) for k, v in items.items()}
    items = list(items)
    if not items:
        raise ConfigError("No items to explain.")
    if modality == "image":
        bad = [i for i, im in enumerate(items) if im is None or isinstance(im, str)]
        if bad:
            raise ConfigError(
                f"Image encoder got {'no image' if items[bad[0]] is None else 'a string'} for "
                f"input {bad[0]}; pass PIL images (the item may have no image — choose the "
                f"text modality for it)."
            )
        return cast("ImageEncoder", encoder).load_pixels(items).to(dev)
    if modality == "text":
        bad = [i for i, t in enumerate(items) if not isinstance(t, str)]
        if bad:
            raise ConfigError(f"Text encoder got {type(items[bad[0]]).__name__} for input "
                              f"{bad[0]}; pass strings.")
        return {k: v.to(dev) for k, v in cast("TextEncoder", encoder).tokenize(items).items()}
    raise ConfigError(f"Encoder modality {modality!r} is neither 'image' nor 'text'.")


def image_boxes(encoder: nn.Module, items: Any) -> list[tuple[int, int, int, int]] | None:
    """Content boxes of PIL images in the encoder's input; ``None`` for tensors, mappings, text.

    Example:
        >>> from PIL import Image
        >>> from befa_viz.testing import tiny_image_encoder
        >>> image_boxes(tiny_image_encoder(), [Image.new("RGB", (36, 54))])
        [(0, 5, 32, 21)]
    """
    if getattr(encoder, "modality", "") != "image" or isinstance(items, (torch.Tensor, Mapping)):
        return None
    items = list(items)
    if not items or not all(hasattr(im, "size") and hasattr(im, "convert") for im in items):
        return None
    return list(cast("ImageEncoder", encoder).content_boxes(items))


def content_params(encoder: nn.Module, items: Any,
                   boxes: Sequence[Sequence[int]] | None = None) -> list[dict[str, Any]] | None:
    """Per item ``content_box`` / ``source_size`` / ``resize`` params (see the module docstring).

    Args:
        encoder: The image encoder.
        items: PIL images (their sizes give the boxes), or anything else with ``boxes``.
        boxes: Explicit ``(top, left, height, width)`` per item, in input pixels.

    Returns:
        One dict per item, or ``None`` when neither images nor boxes are given.
    """
    if getattr(encoder, "modality", "") != "image":
        return None
    if boxes is None:
        boxes = image_boxes(encoder, items)
        if boxes is None:
            return None
    sizes: list[list[int] | None] = [None] * len(boxes)
    if not isinstance(items, (torch.Tensor, Mapping)):
        listed = list(items)
        if len(listed) == len(boxes) and all(hasattr(im, "size") for im in listed):
            sizes = [[int(im.size[1]), int(im.size[0])] for im in listed]
    s = int(getattr(encoder, "image_size", 0))
    out = []
    for box, size in zip(boxes, sizes, strict=True):
        b = [int(v) for v in box]
        if len(b) != 4 or b[2] < 1 or b[3] < 1 or b[0] < 0 or b[1] < 0 or \
                (s and (b[0] + b[2] > s or b[1] + b[3] > s)):
            raise ConfigError(f"Content box {tuple(box)} is not (top, left, height, width) "
                              f"inside the {s}x{s} input.")
        p: dict[str, Any] = {"content_box": b,
                             "resize": str(getattr(encoder, "resize_mode", "squash"))}
        if size is not None:
            p["source_size"] = size
        out.append(p)
    return out


@torch.no_grad()
def _embed(encoder: nn.Module, inputs: Any, batch: int = 32) -> torch.Tensor:
    if isinstance(inputs, torch.Tensor):
        return torch.cat([encoder(inputs[s: s + batch]) for s in range(0, inputs.shape[0], batch)])
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    return torch.cat([encoder(ids[s: s + batch], mask[s: s + batch])
                      for s in range(0, ids.shape[0], batch)])


def _check_compatible(encoder: nn.Module, model: nn.Module | None, modality: str) -> None:
    if model is None:
        return
    proj = getattr(model, "projections", {})
    if modality in proj and proj[modality].in_features != getattr(encoder, "dim", -1):
        raise ConfigError(
            f"The model's {modality!r} features have {proj[modality].in_features} dimensions "
            f"but encoder {getattr(encoder, 'key', '?')!r} outputs {getattr(encoder, 'dim', '?')}:"
            f" the run's features came from another encoder. Use the encoder recorded in the "
            f"run's feature manifest."
        )


def explain(
    encoder: nn.Module,
    model: nn.Module | None,
    items: Any,
    item_idx: Sequence[int] | torch.Tensor | None = None,
    *,
    target: str | AttributionTarget = "behaviour_alignment",
    method: str = "ig",
    modality: str | None = None,
    item_ids: Sequence[str] | None = None,
    users: Any = None,
    user_idx: int | Sequence[int] | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    content_boxes: Sequence[Sequence[int]] | None = None,
    **options: Any,
) -> list[Attribution]:
    """Attribute a target to the raw input of each item.

    Args:
        encoder: The frozen image or text encoder that produced the model's features.
        model: The trained recommender (``None`` for model-free targets: ``content_focus``,
            ``random``).
        items: PIL images or strings (or prepared pixels / a ``tokenize`` mapping).
        item_idx: Each item's index in the model (needed by model targets).
        target: Name in :data:`~befa_viz.attribution.targets.TARGETS` or a built target.
        method: Name in :data:`~befa_viz.attribution.methods.ATTRIBUTIONS`.
        modality: The model's content modality the encoder feeds (default: the encoder's).
        item_ids: Raw item ids for the results (default: ``item_idx`` as strings).
        users: Training users per item for ``content_score``/``adapted_alignment`` (e.g.
            ``dataset.interactions.train()``).
        user_idx: User(s) for ``user_score``.
        seed: Seed for random targets and noisy methods.
        device: Move encoder and model there first (in place); ``None`` keeps them.
        content_boxes: Images given as pixels: each one's ``(top, left, height, width)`` in
            the input (PIL images give theirs from their size).
        **options: Method options (``n_steps``, ``baseline``, ``internal_batch_size``, ...).

    Returns:
        One attribution per item, in order; ``params`` records the target, method options,
        ``adapter``, the model class and, for images, ``content_box`` / ``source_size`` /
        ``resize`` (see the module docstring).

    Raises:
        ConfigError: Bad options, incompatible encoder/model, or missing target context.
        UnknownNameError: Unknown target or method.

    Example:
        >>> from befa_viz.testing import tiny_image_encoder, toy_images
        >>> images, _ = toy_images(2)
        >>> out = explain(tiny_image_encoder(), None, images, target="content_focus", n_steps=4)
        >>> [a.values.shape for a in out]
        [(32, 32), (32, 32)]
    """
    if device is not None:
        encoder.to(device)
        if model is not None:
            model.to(device)
    if not modality:
        modality = cast(str, getattr(encoder, "modality", "image"))
    _check_compatible(encoder, model, modality)
    if not isinstance(items, (torch.Tensor, Mapping)):
        items = list(items)  # read twice: sizes, then pixels
    content = content_params(encoder, items, content_boxes)
    inputs = prepare_inputs(encoder, items)
    n = inputs.shape[0] if isinstance(inputs, torch.Tensor) else inputs["input_ids"].shape[0]
    if item_idx is not None:
        idx = torch.as_tensor(item_idx, dtype=torch.long).reshape(-1)
        if idx.numel() != n:
            raise ConfigError(f"{n} items but {idx.numel()} entries in item_idx.")
    if content is not None and len(content) != n:
        raise ConfigError(f"{n} images but {len(content)} content boxes.")
    if item_ids is None:
        item_ids = [str(int(i)) for i in idx] if item_idx is not None else None
    if isinstance(target, AttributionTarget):
        tgt = target
    else:
        reference = _embed(encoder, inputs) if target == "content_focus" else None
        tgt = create_target(target, model=model, modality=modality, item_idx=item_idx,
                            reference=reference, users=users, user_idx=user_idx,
                            dim=int(getattr(encoder, "dim", 0)) or None, seed=seed)
    if model is not None:
        tgt = tgt.to(getattr(encoder, "device", torch.device("cpu")))
    if "seed" in method_options(method) and "seed" not in options:  # noisy methods
        options["seed"] = seed
    results = attribute(method, encoder, tgt, inputs, item_ids=item_ids, **options)
    extra: dict[str, Any] = {"modality_key": modality}
    if model is not None:
        extra["model"] = type(model).__name__
        extra.setdefault("adapter", bool(getattr(model, "adapters", None)))
    for j, r in enumerate(results):
        for k, v in extra.items():
            r.params.setdefault(k, v)
        if content is not None:
            r.params.update(content[j])
    return results


def explain_pair(
    encoder: nn.Module,
    model: nn.Module,
    paired_model: nn.Module,
    items: Any,
    item_idx: Sequence[int] | torch.Tensor,
    *,
    target: str = "content_score",
    method: str = "ig",
    **kwargs: Any,
) -> tuple[list[Attribution], list[Attribution]]:
    """Explain the same items with and without the adapter, with one method and target.

    The two models are a run trained with the adapter and its paired run without (same
    backbone, data and features). ``content_score`` is the comparable target (the content
    pathway's score for the item's users, through g(ċ) ⊙ e with the adapter and ċ without);
    ``adapted_alignment`` is accepted and means the same (it names the with-adapter side).
    ``behaviour_alignment`` uses each model's projection only.

    Args:
        encoder: The frozen encoder both runs' features came from.
        model: One of the two models (either order).
        paired_model: The other one.
        items: PIL images or strings.
        item_idx: Each item's index in the models.
        target: Target name (not a built target: each model needs its own).
        method: Method name.
        **kwargs: Passed to :func:`explain` (``users``, ``user_idx``, ``n_steps``, ...).

    Returns:
        ``(without_adapter, with_adapter)``: one attribution list per model, same order as
        the items; each result's ``params["pair"]`` says which side it is.

    Raises:
        ConfigError: If not exactly one of the two models has the adapter.
    """
    if not isinstance(target, str):
        raise ConfigError("explain_pair needs a target name; each model builds its own target.")
    has = [bool(getattr(m, "adapters", None)) for m in (model, paired_model)]
    if sum(has) != 1:
        which = "both have" if all(has) else "neither has"
        raise ConfigError(
            f"Comparing with and without the adapter needs one run with it and one without, but "
            f"{which} the adapter. Train the paired run (adapter 'none' / 'befa') first."
        )
    with_m, without_m = (model, paired_model) if has[0] else (paired_model, model)
    name_without = "content_score" if target == "adapted_alignment" else target
    name_with = "adapted_alignment" if target in ("content_score", "adapted_alignment") else target
    if not isinstance(items, (torch.Tensor, Mapping)):
        items = list(items)
    content = content_params(encoder, items, kwargs.pop("content_boxes", None))
    if content is not None:
        kwargs["content_boxes"] = [p["content_box"] for p in content]
    inputs = prepare_inputs(encoder, items)
    without = explain(encoder, without_m, inputs, item_idx, target=name_without, method=method,
                      **kwargs)
    with_ = explain(encoder, with_m, inputs, item_idx, target=name_with, method=method, **kwargs)
    for side in (without, with_):
        for r, p in zip(side, content or [], strict=False):
            r.params.update(p)  # keeps source_size, which pixels alone do not carry
    for r in without:
        r.params["pair"] = "without_adapter"
    for r in with_:
        r.params["pair"] = "with_adapter"
    return without, with_
