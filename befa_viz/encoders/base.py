"""Encoder interfaces: frozen pretrained models that turn item images or texts into features.

Every encoder is an ``nn.Module`` that owns its preprocessing and is differentiable from its
preprocessed input, so attribution methods can take gradients through it:

* :class:`ImageEncoder` — ``load_pixels(images) -> [B, 3, S, S]`` in ``[0, 1]`` (resize only);
  ``forward(pixels) -> [B, dim]`` applies the normalisation itself, so a black baseline is
  literally zeros; ``features(pixels) -> [B, C, h, w]`` is the spatial feature map (CNN last
  conv block or ViT patch tokens on their grid) and ``feature_layer`` the module producing it.
* :class:`TextEncoder` — ``tokenize(texts)`` → ``input_ids``/``attention_mask``;
  ``forward(input_ids, attention_mask) -> [B, dim]``; ``embedding_layer`` is the token
  embedding module (for LayerIntegratedGradients) and ``forward_embeddings`` runs from
  embeddings; ``tokens(ids)`` gives readable tokens.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from befa_viz.registry import Registry

__all__ = ["ENCODERS", "Encoder", "ImageEncoder", "TextEncoder", "module_digest"]

ENCODERS: Registry[Encoder] = Registry("encoder")


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
    resize_mode: str = "squash"  # squash the whole image to a square: nothing cropped away
    interpolation: str = "bicubic"  # PIL resampling filter name used by load_pixels

    def preprocessing(self) -> dict[str, Any]:
        return {"size": self.image_size, "mean": list(self.mean), "std": list(self.std),
                "resize": self.resize_mode, "interpolation": self.interpolation}

    def load_pixels(self, images: Sequence[Any]) -> torch.Tensor:
        """Resize PIL images to ``[B, 3, S, S]`` float pixels in ``[0, 1]`` (no normalisation)."""
        from PIL import Image

        s = self.image_size
        resample = Image.Resampling[self.interpolation.upper()]
        arrs = [
            np.asarray(im.convert("RGB").resize((s, s), resample), dtype=np.uint8)
            for im in images
        ]
        x = torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).float().div_(255.0)
        return x

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
