"""open_clip image and text towers as frozen encoders (``clip:<model>:<weights>``).

``model`` is an open_clip architecture name (``ViT-B-32``, ``RN50``, or any config added with
``open_clip.add_model_config``). ``weights`` is one of

* a local checkpoint file (``.safetensors``, ``.pt``, ``.pth``, ``.bin``), loaded with
  ``open_clip.create_model(model, pretrained=path)``;
* ``random`` / ``random-<seed>`` / empty: a seeded random initialisation (``pretrained=None``);
  the key says ``random``;
* an open_clip pretrained tag (``openai``, ``laion2b_s34b_b79k``, ...): used only when its file is
  already in the local Hugging Face cache. Nothing is downloaded at run time; otherwise a
  :class:`~befa_viz.errors.MissingWeightsError` says how to pass a checkpoint file instead.

The image tower's normalisation and size come from the model's preprocess config
(``model.visual.preprocess_cfg``, which open_clip fills from the pretrained tag when there is
one); images become the square input by the resize mode of :mod:`befa_viz.encoders.base`
(default: aspect-preserving resize + pad).

Spatial features. ViT towers: the patch tokens entering the last transformer block (the output of
its first LayerNorm ``ln_1``, ``[B, 1 + h*w, width]``) reshaped to ``[B, width, h, w]``. That layer is
used because the class token is pooled *after* the last block, so the patch tokens leaving the
last block receive no gradient from the embedding, while those entering it do (as in Grad-CAM
for CLIP ViTs). ModifiedResNet towers (RN50, ...): the output of ``layer4``.

The text tower runs open_clip's ``encode_text`` from token embeddings: positional embeddings,
the transformer with its causal mask, ``ln_final``, pooling at the end-of-text token and the
text projection. Padding after the longest end-of-text token of a batch is trimmed, which
leaves the result unchanged under the causal mask.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from befa_viz.encoders.base import ENCODERS, ImageEncoder, TextEncoder
from befa_viz.errors import (
    ConfigError,
    MissingDependencyError,
    MissingWeightsError,
    UnknownNameError,
)
from befa_viz.registry import closest

__all__ = ["ClipImageEncoder", "ClipTextEncoder", "load_open_clip"]

log = logging.getLogger(__name__)

_CKPT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")


def _open_clip() -> Any:
    try:
        import open_clip
    except ImportError:
        raise MissingDependencyError(
            "open_clip is not installed. Install with: pip install 'befa-viz[clip]'."
        ) from None
    return open_clip


def _random_seed(weights: str | None) -> int | None:
    if weights in (None, "", "none", "None"):
        return 0
    w = str(weights).lower()
    if w == "random":
        return 0
    if w.startswith("random-") and w[7:].isdigit():
        return int(w[7:])
    return None


def _looks_like_path(weights: str) -> bool:
    return (os.sep in weights or "/" in weights or weights.lower().endswith(_CKPT_SUFFIXES)
            or Path(weights).exists())


def _cached_tag_file(cfg: dict[str, Any]) -> str | None:
    """Path of a pretrained tag's weights if already in the local Hugging Face cache."""
    hub = cfg.get("hf_hub", "")
    if not hub:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    if hub.endswith("/"):  # 'org/repo/' means open_clip's default file names
        repo_id, names = hub.rstrip("/"), ["open_clip_model.safetensors",
                                           "open_clip_pytorch_model.bin"]
    else:
        repo_id, filename = os.path.split(hub)
        names = [filename]
    for name in names:
        hit = try_to_load_from_cache(repo_id, name)
        if isinstance(hit, str) and os.path.isfile(hit):
            return hit
    return None


def load_open_clip(model: str, weights: str | None = None) -> tuple[nn.Module, str]:
    """Build an open_clip model offline; return it with the canonical weights label.

    Args:
        model: open_clip architecture name, e.g. ``ViT-B-32``.
        weights: Checkpoint path, ``random``/``random-<seed>``/``None``, or a pretrained tag
            whose file is already cached locally.

    Returns:
        The model in eval mode and the weights part of its key (``random``, an absolute path or
        the tag).

    Raises:
        UnknownNameError: Unknown architecture or pretrained tag.
        MissingWeightsError: A checkpoint file is missing, or a tag's weights are not cached.
        ConfigError: The checkpoint does not fit the architecture.
    """
    oc = _open_clip()
    known = oc.list_models()
    if model not in known:
        near = closest(model, known)
        hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
        raise UnknownNameError(
            f"Unknown open_clip model {model!r}.{hint} See open_clip.list_models()."
        )
    seed = _random_seed(weights)
    if seed is not None:
        label = "random" + (f"-{seed}" if seed else "")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = _create(oc, model, None, label)
        return net.eval(), label
    assert weights is not None
    if _looks_like_path(weights):
        path = Path(weights).expanduser().resolve()
        if not path.is_file():
            raise MissingWeightsError(
                f"open_clip checkpoint {path} does not exist (key 'clip:{model}:{weights}'). "
                "Pass an existing .safetensors/.pt file, or 'random' for random weights."
            )
        return _create(oc, model, str(path), str(path)).eval(), str(path)
    cfg = oc.get_pretrained_cfg(model, weights)
    if not cfg:
        tags = oc.list_pretrained_tags_by_model(model)
        near = closest(weights, tags)
        hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
        raise UnknownNameError(
            f"{weights!r} is neither a checkpoint file nor a pretrained tag of open_clip model "
            f"{model!r}.{hint} Tags: {', '.join(tags) or 'none'}; or use 'random'."
        )
    local = _cached_tag_file(cfg)
    if local is None:
        raise MissingWeightsError(
            f"Pretrained open_clip weights 'clip:{model}:{weights}' are not available offline "
            "and befa-viz never downloads at run time. Download the checkpoint on a machine with "
            f"network (e.g. open_clip.create_model('{model}', pretrained='{weights}') there, or "
            f"from the Hugging Face repo {cfg.get('hf_hub') or cfg.get('url')}) and pass the file: "
            f"'clip:{model}:/path/to/open_clip_model.safetensors'. For tests and demos "
            f"'clip:{model}:random' gives a randomly initialised (not pretrained) model."
        )
    pre = {k: cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in cfg}
    kwargs = {"force_quick_gelu": bool(cfg.get("quick_gelu", False)),
              "force_preprocess_cfg": pre}
    return _create(oc, model, local, weights, **kwargs).eval(), weights


def _create(oc: Any, model: str, pretrained: str | None, label: str, **kwargs: Any) -> nn.Module:
    try:
        return oc.create_model(model, pretrained=pretrained, **kwargs)
    except RuntimeError as e:
        if pretrained is None:
            raise
        raise ConfigError(
            f"Checkpoint {label} does not fit open_clip architecture {model!r} ({e}). Check that "
            "the model name matches the checkpoint (e.g. ViT-B-32 vs ViT-B-32-quickgelu)."
        ) from None


class ClipImageEncoder(ImageEncoder):
    """open_clip image tower (``clip:<model>:<weights>``, modality ``image``).

    Args:
        model: open_clip architecture name.
        weights: See :func:`load_open_clip`.

    Example:
        >>> enc = ClipImageEncoder("RN50", weights="random")  # doctest: +SKIP
        >>> enc.dim, enc.features(torch.rand(1, 3, 224, 224)).shape  # doctest: +SKIP
        (1024, torch.Size([1, 2048, 7, 7]))
    """

    def __init__(self, model: str = "ViT-B-32", weights: str | None = None,
                 clip_model: nn.Module | None = None, weights_label: str | None = None) -> None:
        super().__init__()
        if clip_model is None:
            clip_model, weights_label = load_open_clip(model, weights)
        self.key = f"clip:{model}:{weights_label}"
        self.pretrained = not str(weights_label).startswith("random")
        oc_model: Any = clip_model  # open_clip's towers carry untyped attributes
        visual = oc_model.visual
        self.visual = visual
        cfg = dict(getattr(visual, "preprocess_cfg", {}) or {})
        size = cfg.get("size", getattr(visual, "image_size", 224))
        size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        if size[0] != size[1]:
            raise ConfigError(f"open_clip model {model!r} takes non-square {size} inputs; "
                              "befa-viz supports square inputs only.")
        self.image_size = int(size[0])
        self.mean = tuple(float(v) for v in cfg.get("mean", self.mean))  # type: ignore[assignment]  # 3 floats
        self.std = tuple(float(v) for v in cfg.get("std", self.std))  # type: ignore[assignment]  # 3 floats
        self.interpolation = str(cfg.get("interpolation", "bicubic"))
        self.dim = int(getattr(visual, "output_dim", 0) or oc_model.text_projection.shape[-1])

        if hasattr(visual, "transformer") and hasattr(visual, "grid_size"):
            blocks = visual.transformer.resblocks
            if not hasattr(blocks[-1], "ln_1"):
                raise ConfigError(f"open_clip ViT {model!r} has an unsupported block type.")
            self._layer: nn.Module = blocks[-1].ln_1
            self.grid = tuple(int(g) for g in visual.grid_size)
            self._is_vit = True
        elif hasattr(visual, "layer4"):
            self._layer = visual.layer4
            self._is_vit = False
        else:
            raise ConfigError(
                f"open_clip image tower of {model!r} ({type(visual).__name__}) is not supported: "
                "befa-viz handles open_clip's VisionTransformer and ModifiedResNet towers."
            )
        self.eval()
        self.requires_grad_(False)

    @property
    def feature_layer(self) -> nn.Module:
        return self._layer

    def layer_to_map(self, output: torch.Tensor) -> torch.Tensor:
        if not self._is_vit:
            return output
        b, n, c = output.shape  # [B, 1 + h*w, width], class token first
        h, w = self.grid
        if n != 1 + h * w:
            raise ConfigError(f"Expected {1 + h * w} tokens from {self.key}, got {n}.")
        return output[:, 1:].reshape(b, h, w, c).permute(0, 3, 1, 2).contiguous()

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        out: list[torch.Tensor] = []
        handle = self._layer.register_forward_hook(lambda m, i, o: out.append(o))
        try:
            self.visual(x)
        finally:
            handle.remove()
        return self.layer_to_map(out[0])


class ClipTextEncoder(TextEncoder):
    """open_clip text tower (``clip:<model>:<weights>``, modality ``text``).

    ``tokenize`` returns the open_clip token ids trimmed after the longest end-of-text token and
    an ``attention_mask`` that is 1 up to and including each text's end-of-text token.
    """

    attn_mask: torch.Tensor | None  # buffer: the tower's causal mask (None: no mask)

    def __init__(self, model: str = "ViT-B-32", weights: str | None = None,
                 clip_model: nn.Module | None = None, weights_label: str | None = None) -> None:
        super().__init__()
        oc = _open_clip()
        if clip_model is None:
            clip_model, weights_label = load_open_clip(model, weights)
        self.key = f"clip:{model}:{weights_label}"
        self.pretrained = not str(weights_label).startswith("random")
        # CustomTextCLIP keeps a TextTransformer; open_clip's towers carry untyped attributes.
        src: Any = getattr(clip_model, "text", clip_model)
        needed = ("token_embedding", "positional_embedding", "transformer", "ln_final")
        if not all(hasattr(src, a) for a in needed) or getattr(src, "cls_emb", None) is not None \
                or getattr(src, "use_pad_mask", False):
            raise ConfigError(
                f"open_clip text tower of {model!r} ({type(src).__name__}) is not supported: "
                "befa-viz handles CLIP-style causal text transformers (no HF or CoCa towers)."
            )
        self.token_embedding = src.token_embedding
        self.positional_embedding = src.positional_embedding
        self.transformer = src.transformer
        self.ln_final = src.ln_final
        self.text_projection = src.text_projection
        self.register_buffer("attn_mask", src.attn_mask, persistent=False)
        self.pool_type = getattr(src, "text_pool_type", getattr(src, "pool_type", "argmax"))
        if self.pool_type not in ("argmax", "eos", "first", "last"):
            raise ConfigError(f"Unsupported text pooling {self.pool_type!r} in {model!r}.")
        self.eos_id: int | None = getattr(src, "text_eos_id", getattr(src, "eos_id", None))
        self.tokenizer = oc.get_tokenizer(model)
        self.max_length = int(getattr(src, "context_length", self.positional_embedding.shape[0]))
        self.pad_token_id = 0  # open_clip's SimpleTokenizer pads with 0
        proj = self.text_projection
        self.dim = int(proj.out_features if isinstance(proj, nn.Linear) else
                       proj.shape[-1] if proj is not None else self.positional_embedding.shape[1])
        self.eval()
        self.requires_grad_(False)

    def preprocessing(self) -> dict[str, Any]:
        return {"max_length": self.max_length, "tokenizer": type(self.tokenizer).__name__,
                "pool": self.pool_type}

    def _end_index(self, ids: torch.Tensor) -> torch.Tensor:
        """Index of each row's pooled (end-of-text) token."""
        if self.pool_type == "argmax":
            return ids.argmax(dim=-1)
        if self.pool_type == "eos":
            if self.eos_id is None:
                raise ConfigError(f"{self.key} pools at the end-of-text token, but its text "
                                  "tower defines no eos_id.")
            return (ids == self.eos_id).int().argmax(dim=-1)
        if self.pool_type == "first":
            return torch.zeros(len(ids), dtype=torch.long)
        return torch.full((len(ids),), ids.shape[1] - 1, dtype=torch.long)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        ids = self.tokenizer(list(texts), context_length=self.max_length)
        end = self._end_index(ids)
        if self.attn_mask is not None and self.pool_type in ("argmax", "eos", "first"):
            ids = ids[:, : int(end.max()) + 1]  # causal: later positions cannot change the pool
        mask = (torch.arange(ids.shape[1])[None, :] <= end[:, None]).long()
        return {"input_ids": ids, "attention_mask": mask}

    @property
    def embedding_layer(self) -> nn.Module:
        return self.token_embedding

    def forward_embeddings(self, embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token embeddings ``[B, L, width]`` → text embeddings ``[B, dim]`` (open_clip's
        ``encode_text`` after the token embedding, unnormalised)."""
        n = embeds.shape[1]
        x = embeds + self.positional_embedding[:n].to(embeds.dtype)
        mask = None if self.attn_mask is None else self.attn_mask[:n, :n]
        x = self.transformer(x, attn_mask=mask)
        x = self.ln_final(x)  # [B, L, width]
        if self.pool_type == "last":
            pooled = x[:, -1]
        else:
            idx = attention_mask.long().sum(dim=1) - 1  # end-of-text position
            pooled = x[torch.arange(x.shape[0], device=x.device), idx]
        proj = self.text_projection
        if isinstance(proj, nn.Linear):
            return proj(pooled)
        return pooled @ proj if proj is not None else pooled

    def tokens(self, input_ids: torch.Tensor) -> list[list[str]]:
        tok = self.tokenizer
        end = self._end_index(input_ids)
        out = []
        for row, e in zip(input_ids.tolist(), end.tolist(), strict=True):
            words = []
            for j, t in enumerate(row):
                if j > e:
                    words.append("<pad>")
                elif hasattr(tok, "decoder") and hasattr(tok, "byte_decoder"):
                    s = tok.decoder.get(t, f"#{t}")
                    words.append(bytearray([tok.byte_decoder.get(c, 63) for c in s])
                                 .decode("utf-8", errors="replace").replace("</w>", ""))
                else:
                    words.append(str(tok.decode([t])))
            out.append(words)
        return out


@ENCODERS.register("clip")
def _create_clip(model: str = "ViT-B-32", weights: str | None = None,
                 modality: str | None = None, **kwargs: Any) -> ImageEncoder | TextEncoder:
    """``clip:<model>:<weights>``; ``modality="text"`` selects the text tower."""
    modality = modality or "image"
    if modality == "image":
        return ClipImageEncoder(model=model, weights=weights, **kwargs)
    if modality == "text":
        return ClipTextEncoder(model=model, weights=weights, **kwargs)
    raise ConfigError(f"open_clip has 'image' and 'text' towers; got modality {modality!r}.")
