"""Hand-built encoders with known gradients for the attribution tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import torch
from torch import nn

from befa_viz.encoders.base import ImageEncoder, TextEncoder


class RegionEncoder(ImageEncoder):
    """conv (k×k + tanh + 1x1, or one 1x1: linear) → masked average pool over a known region.

    With ``linear=True`` the encoder is affine in the pixels (mean 0, std 1: no normalisation),
    so IG of a linear target is exactly (x − b) · ∇.
    """

    def __init__(self, region: np.ndarray, dim: int = 6, linear: bool = False,
                 seed: int = 0, kernel: int = 3) -> None:
        super().__init__()
        self.key = "test:region"
        self.image_size = int(region.shape[0])
        self.mean, self.std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        self.dim = dim
        g = torch.Generator().manual_seed(seed)
        if linear:
            self.body = nn.Sequential(nn.Conv2d(3, dim, 1))
        else:
            self.body = nn.Sequential(nn.Conv2d(3, 8, kernel, padding=kernel // 2), nn.Tanh(),
                                      nn.Conv2d(8, dim, 1))
        with torch.no_grad():
            for p in self.body.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        w = torch.as_tensor(region, dtype=torch.float32)
        self.register_buffer("weight", w / w.sum())
        self.eval()
        self.requires_grad_(False)

    @property
    def feature_layer(self) -> nn.Module:
        return self.body

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return (self.body(x) * self.weight).sum(dim=(2, 3))


class PieceText(TextEncoder):
    """Word-piece toy: words longer than 4 letters split as ``abc`` + ``##rest``; [CLS]/[SEP].

    Mean pooling of embeddings then a linear layer: linear in the token embeddings.
    """

    def __init__(self, dim: int = 5, width: int = 6, seed: int = 0) -> None:
        super().__init__()
        self.key = "test:pieces"
        self.dim = dim
        self.pad_token_id = 0
        self.special_token_ids = {1, 2}
        self.vocab = {"[PAD]": 0, "[CLS]": 1, "[SEP]": 2}
        g = torch.Generator().manual_seed(seed)
        self.emb = nn.Embedding(64, width)
        self.proj = nn.Linear(width, dim)
        with torch.no_grad():
            self.emb.weight.copy_(torch.randn(64, width, generator=g))
            self.proj.weight.copy_(torch.randn(dim, width, generator=g))
        self.eval()
        self.requires_grad_(False)

    def _id(self, piece: str) -> int:
        return self.vocab.setdefault(piece, len(self.vocab))

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        rows = []
        for t in texts:
            pieces = ["[CLS]"]
            for w in t.split():
                pieces += [w[:3], "##" + w[3:]] if len(w) > 4 else [w]
            rows.append([self._id(p) for p in pieces + ["[SEP]"]])
        n = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), n, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for b, r in enumerate(rows):
            ids[b, : len(r)] = torch.tensor(r)
            mask[b, : len(r)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    @property
    def embedding_layer(self) -> nn.Module:
        return self.emb

    def forward_embeddings(self, embeds: torch.Tensor, attention_mask: torch.Tensor
                           ) -> torch.Tensor:
        m = attention_mask.unsqueeze(-1).to(embeds.dtype)
        return self.proj((embeds * m).sum(1) / m.sum(1))

    def tokens(self, input_ids: torch.Tensor) -> list[list[str]]:
        inv = {v: k for k, v in self.vocab.items()}
        return [[inv.get(int(t), "?") for t in row] for row in input_ids]


def square(size: int = 16, top: int = 4, left: int = 4, side: int = 6) -> np.ndarray:
    m = np.zeros((size, size), dtype=bool)
    m[top: top + side, left: left + side] = True
    return m


@pytest.fixture
def region_encoder():
    return RegionEncoder


@pytest.fixture
def piece_text():
    return PieceText


@pytest.fixture
def square_mask():
    return square


@pytest.fixture(scope="session")
def toy_vbpr():
    """(encoder, toy dataset, VBPR without adapter, VBPR with adapter) on tiny features."""
    from befa_viz.models import MODELS
    from befa_viz.testing import tiny_image_encoder, toy_dataset

    if "vbpr" not in MODELS:
        pytest.skip("VBPR is not registered yet")
    ds = toy_dataset()
    enc = tiny_image_encoder(dim=12)
    feats = enc.encode_images([ds.catalog.image(i) for i in range(ds.n_items)])
    torch.manual_seed(0)
    plain = MODELS.create("vbpr", n_users=ds.n_users, n_items=ds.n_items,
                          features={"image": feats}, dim=8)
    torch.manual_seed(0)
    adapted = MODELS.create("vbpr", n_users=ds.n_users, n_items=ds.n_items,
                            features={"image": feats}, dim=8, adapter="befa")
    plain.eval()
    adapted.eval()
    return enc, ds, plain, adapted
