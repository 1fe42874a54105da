"""Tiny seeded random-weight encoders for tests, doctests and the toy demo (no downloads).

They are *not* pretrained and say so in their key (``tiny:cnn``, ``tiny:text``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import torch
from torch import nn

from befa_viz.encoders.base import ENCODERS, ImageEncoder, TextEncoder

__all__ = ["TinyCNN", "TinyText"]


class TinyCNN(ImageEncoder):
    """A 3-block random CNN on 32 px images; feature map 8×8, global-average pooled.

    Example:
        >>> enc = TinyCNN(dim=16)
        >>> enc(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 16])
    """

    def __init__(self, dim: int = 32, image_size: int = 32, seed: int = 0) -> None:
        super().__init__()
        self.key = "tiny:cnn"
        self.dim = dim
        self.image_size = image_size
        self.mean, self.std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
        g = torch.Generator().manual_seed(seed)
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, dim, 3, stride=2, padding=1), nn.ReLU(),
        )
        with torch.no_grad():
            for p in self.body.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * (0.3 if p.dim() > 1 else 0.05))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.eval()
        self.requires_grad_(False)

    @property
    def feature_layer(self) -> nn.Module:
        return self.body

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.body(x)).flatten(1)


_WORD = re.compile(r"[A-Za-z0-9']+|[^\sA-Za-z0-9]")


class TinyText(TextEncoder):
    """Hashed-vocabulary word embeddings, masked mean pooling and a linear layer.

    Words hash into ``vocab_size`` ids (large by default so that the few hundred words of a
    toy corpus rarely collide; ``tokens()`` maps an id back to the first word seen with it).

    Example:
        >>> enc = TinyText(dim=8)
        >>> enc.encode_texts(["red shoe", "a blue hat"]).shape
        (2, 8)
    """

    def __init__(self, dim: int = 32, vocab_size: int = 65536, width: int = 32,
                 max_length: int = 32, seed: int = 0) -> None:
        super().__init__()
        self.key = "tiny:text"
        self.dim = dim
        self.vocab_size = vocab_size
        self.max_length = max_length
        self.pad_token_id = 0
        g = torch.Generator().manual_seed(seed)
        self.embeddings = nn.Embedding(vocab_size, width, padding_idx=0)
        self.proj = nn.Linear(width, dim)
        with torch.no_grad():
            self.embeddings.weight.copy_(torch.randn(vocab_size, width, generator=g))
            self.embeddings.weight[0].zero_()
            self.proj.weight.copy_(torch.randn(dim, width, generator=g) / width**0.5)
            self.proj.bias.zero_()
        self._vocab: dict[int, str] = {0: "[PAD]"}
        self.eval()
        self.requires_grad_(False)

    def _token_id(self, word: str) -> int:
        digest = hashlib.md5(word.lower().encode()).digest()
        tid = 1 + int.from_bytes(digest[:4], "little") % (self.vocab_size - 1)
        self._vocab.setdefault(tid, word.lower())
        return tid

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        rows = [[self._token_id(w) for w in _WORD.findall(t)][: self.max_length] or [0]
                for t in texts]
        n = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), n, dtype=torch.long)
        mask = torch.zeros(len(rows), n, dtype=torch.long)
        for b, r in enumerate(rows):
            ids[b, : len(r)] = torch.tensor(r)
            mask[b, : len(r)] = 1 if r != [0] else 0
        return {"input_ids": ids, "attention_mask": mask}

    @property
    def embedding_layer(self) -> nn.Module:
        return self.embeddings

    def forward_embeddings(self, embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        m = attention_mask.unsqueeze(-1).to(embeds.dtype)
        pooled = (embeds * m).sum(1) / m.sum(1).clamp_min(1.0)
        return self.proj(pooled)

    def tokens(self, input_ids: torch.Tensor) -> list[list[str]]:
        return [[self._vocab.get(int(t), f"#{int(t)}") for t in row] for row in input_ids]


@ENCODERS.register("tiny")
def _create_tiny(model: str = "cnn", weights: str | None = None, modality: str | None = None,
                 **kwargs: object) -> ImageEncoder | TextEncoder:
    """``tiny:cnn`` or ``tiny:text``; ``weights`` may be an integer seed."""
    seed = int(weights) if weights not in (None, "", "random") else 0
    if model == "cnn":
        return TinyCNN(seed=seed, **kwargs)  # type: ignore[arg-type]  # forwarded knobs
    if model == "text":
        return TinyText(seed=seed, **kwargs)  # type: ignore[arg-type]  # forwarded knobs
    from befa_viz.errors import UnknownNameError

    raise UnknownNameError(f"Unknown tiny encoder {model!r}; accepted: 'cnn', 'text'.")
