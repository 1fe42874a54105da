"""Encoder interfaces: frozen pretrained models that turn item images or texts into features.

Every encoder is an ``nn.Module`` that owns its preprocessing and is differentiable from its
preprocessed input, so attribution methods can take gradients through it:

* :class:`ImageEncoder` — ``load_pixels(images) -> [B, 3, S, S]`` in ``[0, 1]`` (resize only);
  ``forward(pixels) -> [B, dim]`` applies the normalisation itself, so a black baseline is
  literally zeros; ``features(pixels) -> [B, C, h, w]`` is the spatial feature map (CNN last
  conv block or ViT patch tokens on their grid) and ``feature_layer`` the module producing it.
  ``content_boxes(images)`` says where each photo lies in its ``S×S`` input.
* :class:`TextEncoder` — ``tokenize(texts)`` → ``input_ids``/``attention_mask``;
  ``forward(input_ids, attention_mask) -> [B, dim]``; ``embedding_layer`` is the token
  embedding module (for LayerIntegratedGradients) and ``forward_embeddings`` runs from
  embeddings; ``tokens(ids)`` gives readable tokens.

Resize modes (``ImageEncoder.resize_mode``, set with :meth:`ImageEncoder.set_resize` or
``create_encoder(key, resize=..., pad_fill=...)``; recorded in ``preprocessing()`` and so in the
encoder fingerprint and every feature-store key):

* ``"pad"`` (the default) — resize preserving the aspect ratio so the longer side is ``S``,
  centre it and fill the rest of the ``S×S`` input. Nothing is distorted or cut away; the
  photo's place is its **content box** ``(top, left, height, width)`` in input pixels, which
  attributions record (``params["content_box"]``) so that scores exclude the pad and figures
  crop it away. A square image needs no pad: its pixels are exactly those of ``"squash"``.
  The fill (``pad_fill``) is ``"edge"`` (default: per channel, the median colour of the photo's
  two edges that touch the pad) or ``"mean"`` (the encoder's normalisation mean, i.e. zero after
  normalisation). Packshots sit on light, near-uniform backgrounds: a mean-grey pad draws a hard
  vertical edge beside them that a CNN responds to, an edge-colour pad continues the
  background. Measured by ``benches/pad.py`` on 128 H&M photos (360×540) with MobileNetV2:
  the pad is 33.5 % of the input; Grad-CAM (content focus) put 8.3 % of its mass on an
  edge-colour pad vs 9.8 % on a mean pad (less on 125 of 128 photos), blur-baseline IG 1.5 %
  vs 8.4 % (31 of 32 photos) and 3.7 % vs 14.8 % in the 8-px bands around the seams.
* ``"squash"`` — resize the whole image to ``S×S``: nothing cut away, portraits distorted (the
  only mode before pad existed; stores encoded then keep their key and stay valid, and runs on
  them are attributed with the mode their manifest records).
* ``"crop"`` — resize the shorter side to ``S`` and cut the central ``S×S`` square (the
  torchvision/CLIP evaluation transform): undistorted, but the top and bottom of a portrait
  are lost; the content box is the whole input.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from befa_viz.errors import ConfigError
from befa_viz.registry import Registry

__all__ = [
    "DEFAULT_PAD_FILL",
    "DEFAULT_RESIZE",
    "ENCODERS",
    "PAD_FILLS",
    "RESIZE_MODES",
    "Box",
    "Encoder",
    "ImageEncoder",
    "TextEncoder",
    "content_box",
    "module_digest",
]

ENCODERS: Registry[Encoder] = Registry("encoder")

#: How images become the encoder's square input (see the module docstring).
RESIZE_MODES = ("pad", "squash", "crop")
#: What fills the pad of ``resize_mode="pad"``.
PAD_FILLS = ("edge", "mean")
DEFAULT_RESIZE = "pad"
DEFAULT_PAD_FILL = "edge"

#: ``(top, left, height, width)`` of the photo inside a map or input, in its pixels.
Box = tuple[int, int, int, int]


def _check_resize(mode: str, pad_fill: str) -> None:
    if mode not in RESIZE_MODES:
        raise ConfigError(f"Unknown resize mode {mode!r}; accepted: "
                          f"{', '.join(repr(m) for m in RESIZE_MODES)}.")
    if pad_fill not in PAD_FILLS:
        raise ConfigError(f"Unknown pad fill {pad_fill!r}; accepted: "
                          f"{', '.join(repr(m) for m in PAD_FILLS)}.")


def content_box(height: int, width: int, size: int, mode: str = DEFAULT_RESIZE) -> Box:
    """Where a ``height×width`` photo lands in the ``size×size`` input of a resize mode.

    Args:
        height: Photo height in pixels.
        width: Photo width in pixels.
        size: Side of the square input.
        mode: One of :data:`RESIZE_MODES`; only ``"pad"`` leaves part of the input empty.

    Returns:
        ``(top, left, height, width)`` in input pixels; the longer side fills the input and the
        box is centred (odd leftovers go to the bottom / right).

    Example:
        >>> content_box(540, 360, 224)
        (0, 37, 224, 149)
        >>> content_box(540, 360, 224, "squash")
        (0, 0, 224, 224)
    """
    _check_resize(mode, DEFAULT_PAD_FILL)
    if height < 1 or width < 1 or size < 1:
        raise ConfigError(f"content_box needs positive sizes; got {height}x{width} into {size}.")
    if mode != "pad" or height == width:
        return (0, 0, size, size)
    if height > width:
        h, w = size, max(1, min(size, round(width * size / height)))
    else:
        h, w = max(1, min(size, round(height * size / width))), size
    return ((size - h) // 2, (size - w) // 2, h, w)


def module_digest(module: nn.Module) -> str:
    """Short hash of a module's parameters and buffers (identifies the exact weights)."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        t = t.detach().cpu().contiguous()
        if t.is_floating_point():
            t = t.float()
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


class Encoder(nn.Module):
    """Common base: identity, output size, fingerprint and batched numpy encoding."""

    modality: str = ""
    #: Key as accepted by :func:`befa_viz.encoders.create_encoder`, e.g. ``torchvision:mobilenet_v2``.
    key: str = ""
    dim: int = 0

    def __init__(self) -> None:
        super().__init__()
        self._weights_digest: str | None = None

    @property
    def id(self) -> str:
        return self.key

    def preprocessing(self) -> dict[str, Any]:
        """JSON-able description of the preprocessing (recorded in feature manifests)."""
        return {}

    def weights_digest(self) -> str:
        if self._weights_digest is None:
            self._weights_digest = module_digest(self)
        return self._weights_digest

    def fingerprint(self) -> str:
        """Hash of key, weights and preprocessing: equal fingerprints give equal features."""
        blob = json.dumps(
            {"key": self.key, "weights": self.weights_digest(), "pre": self.preprocessing()},
            sort_keys=True, default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")


class ImageEncoder(Encoder):
    """Base of image encoders; subclasses set ``image_size``, ``mean``, ``std`` and implement
    ``embed`` (normalised pixels → embedding) and ``feature_map`` (normalised pixels → map)."""

    modality = "image"
    image_size: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    resize_mode: str = DEFAULT_RESIZE  # see the module docstring
    pad_fill: str = DEFAULT_PAD_FILL  # what fills the pad of resize_mode "pad"
    interpolation: str = "bicubic"  # PIL resampling filter name used by load_pixels

    def preprocessing(self) -> dict[str, Any]:
        pre = {"size": self.image_size, "mean": list(self.mean), "std": list(self.std),
               "resize": self.resize_mode, "interpolation": self.interpolation}
        if self.resize_mode == "pad":  # squash keeps its pre-pad description (and store keys)
            pre["pad_fill"] = self.pad_fill
        return pre

    def set_resize(self, mode: str | None = None, pad_fill: str | None = None) -> ImageEncoder:
        """Choose how images become the square input (changes :meth:`fingerprint`).

        Args:
            mode: One of :data:`RESIZE_MODES`; ``None`` keeps the current one.
            pad_fill: One of :data:`PAD_FILLS` (``"pad"`` mode); ``None`` keeps the current one.

        Returns:
            The encoder itself.

        Raises:
            ConfigError: For an unknown mode or fill.

        Example:
            >>> from befa_viz.encoders.tiny import TinyCNN
            >>> enc = TinyCNN().set_resize("squash")
            >>> enc.preprocessing()["resize"]
            'squash'
        """
        mode = self.resize_mode if mode is None else str(mode)
        fill = self.pad_fill if pad_fill is None else str(pad_fill)
        _check_resize(mode, fill)
        self.resize_mode, self.pad_fill = mode, fill
        return self

    def content_boxes(self, images: Sequence[Any]) -> list[Box]:
        """Each image's :func:`content_box` in the ``S×S`` input (from its size, no decoding)."""
        return [content_box(im.size[1], im.size[0], self.image_size, self.resize_mode)
                for im in images]

    def load_pixels(self, images: Sequence[Any]) -> torch.Tensor:
        """Resize PIL images to ``[B, 3, S, S]`` float pixels in ``[0, 1]`` (no normalisation).

        The resize mode decides how (see the module docstring); with ``"pad"`` each photo
        fills its :meth:`content_boxes` box and the rest is the pad fill.
        """
        from PIL import Image

        s = self.image_size
        resample = Image.Resampling[self.interpolation.upper()]
        arrs: list[np.ndarray] = []
        fills: list[tuple[Box, tuple[float, float, float]] | None] = []
        for im in images:
            rgb = im.convert("RGB")
            top, left, h, w = content_box(rgb.size[1], rgb.size[0], s, self.resize_mode)
            if self.resize_mode == "crop" and rgb.size[0] != rgb.size[1]:
                arrs.append(self._crop(rgb, resample))
                fills.append(None)
                continue
            if (h, w) == (s, s):  # squash, or a square photo in pad mode: the same pixels
                arrs.append(np.asarray(rgb.resize((s, s), resample), dtype=np.uint8))
                fills.append(None)
                continue
            body = np.asarray(rgb.resize((w, h), resample), dtype=np.uint8)  # [h, w, 3]
            canvas = np.zeros((s, s, 3), dtype=np.uint8)
            canvas[top: top + h, left: left + w] = body
            arrs.append(canvas)
            fills.append(((top, left, h, w), self._fill(body, portrait=h > w)))
        x = torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).float().div_(255.0)
        for b, fill in enumerate(fills):
            if fill is None:
                continue
            (top, left, h, w), colour = fill
            c = torch.tensor(colour, dtype=x.dtype).view(3, 1, 1)
            x[b, :, :top], x[b, :, top + h:] = c, c  # the pad: the strips around the box
            x[b, :, :, :left], x[b, :, :, left + w:] = c, c
        return x

    def _crop(self, rgb: Any, resample: Any) -> np.ndarray:
        """Shorter side to ``S``, then the central ``S×S`` square."""
        s = self.image_size
        wi, hi = rgb.size
        scale = s / min(wi, hi)
        w, h = max(s, round(wi * scale)), max(s, round(hi * scale))
        big = np.asarray(rgb.resize((w, h), resample), dtype=np.uint8)
        top, left = (h - s) // 2, (w - s) // 2
        return big[top: top + s, left: left + s]

    def _fill(self, body: np.ndarray, portrait: bool) -> tuple[float, float, float]:
        """The pad colour in ``[0, 1]``: the mean, or the median of the edges touching the pad."""
        if self.pad_fill == "mean":
            return (float(self.mean[0]), float(self.mean[1]), float(self.mean[2]))
        edges = (np.concatenate([body[:, 0], body[:, -1]]) if portrait  # left + right columns
                 else np.concatenate([body[0], body[-1]]))  # top + bottom rows; [n, 3]
        med = np.median(edges.astype(np.float64), axis=0) / 255.0
        return (float(med[0]), float(med[1]), float(med[2]))

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, device=pixels.device, dtype=pixels.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=pixels.device, dtype=pixels.dtype).view(1, 3, 1, 1)
        return (pixels - mean) / std

    def embed(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def feature_layer(self) -> nn.Module:  # pragma: no cover - abstract
        """Module whose output is the spatial feature map (for layer methods and hooks)."""
        raise NotImplementedError

    def layer_to_map(self, output: torch.Tensor) -> torch.Tensor:
        """Turn ``feature_layer``'s raw output into ``[B, C, h, w]``.

        The identity for CNNs; ViT towers override it (their layer emits ``[B, 1 + h*w, C]``
        tokens with a leading class token).
        """
        return output

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Embed ``[B, 3, S, S]`` pixels in ``[0, 1]`` → ``[B, dim]``."""
        return self.embed(self.normalize(pixels))

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Spatial features ``[B, C, h, w]`` of pixels in ``[0, 1]``."""
        return self.feature_map(self.normalize(pixels))

    @torch.no_grad()
    def encode_images(self, images: Sequence[Any]) -> np.ndarray:
        """Encode a batch of PIL images → float32 ``[B, dim]``."""
        x = self.load_pixels(images).to(self.device)
        return self(x).float().cpu().numpy()


class TextEncoder(Encoder):
    """Base of text encoders; subclasses implement tokenisation and the two forward paths."""

    modality = "text"
    max_length: int = 128
    pad_token_id: int = 0

    def preprocessing(self) -> dict[str, Any]:
        return {"max_length": self.max_length}

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    @property
    def embedding_layer(self) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_embeddings(
        self, embeds: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def tokens(self, input_ids: torch.Tensor) -> list[list[str]]:  # pragma: no cover
        raise NotImplementedError

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Embed token ids → ``[B, dim]``."""
        return self.forward_embeddings(self.embedding_layer(input_ids), attention_mask)

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Encode a batch of strings → float32 ``[B, dim]``."""
        tok = {k: v.to(self.device) for k, v in self.tokenize(texts).items()}
        return self(tok["input_ids"], tok["attention_mask"]).float().cpu().numpy()
