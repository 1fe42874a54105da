"""Fixtures for the training tests: a planted-preference dataset and a toy multimodal model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from befa_viz.data.types import Catalog, Interactions, RecDataset
from befa_viz.models import MODELS, Recommender

TOY_MM = "toymm"


class ToyMM(Recommender):
    """VBPR-like toy: s(u, i) = <p_u, q_i> + <c_u, content_i> (content through item_content)."""

    def __init__(self, n_users: int, n_items: int, *, dim: int = 64, reg_weight: float = 0.0,
                 **kwargs) -> None:
        super().__init__(n_users, n_items, dim=dim, **kwargs)
        self.reg_weight = reg_weight
        self.user_emb = nn.Embedding(self.n_users, self.dim)
        self.item_emb = nn.Embedding(self.n_items, self.dim)
        self.user_content = nn.Embedding(self.n_users, self.dim)
        for e in (self.user_emb, self.item_emb, self.user_content):
            nn.init.normal_(e.weight, std=0.1)

    def _items(self) -> torch.Tensor:
        content = sum(self.item_content(m) for m in self.modalities)
        return torch.cat([self.item_emb.weight, content], dim=1)

    def _users(self) -> torch.Tensor:
        return torch.cat([self.user_emb.weight, self.user_content.weight], dim=1)

    def loss(self, users, pos, neg):
        u, items = self._users()[users], self._items()
        diff = (u * items[pos]).sum(-1) - (u * items[neg]).sum(-1)
        return F.softplus(-diff).mean() + self.reg_weight * u.pow(2).sum(-1).mean()

    def score_users(self, user_idx):
        return self._users()[user_idx] @ self._items().T


class ToyImageOnly(ToyMM):
    required_modalities = ("image",)


@pytest.fixture(scope="module")
def toy_models():
    """Register the toy models for this module only (collection-time lists never see them)."""
    MODELS.register(TOY_MM)(ToyMM)
    MODELS.register("toyimage")(ToyImageOnly)
    yield TOY_MM
    MODELS._items.pop(TOY_MM)
    MODELS._items.pop("toyimage")


def planted(n_users: int = 48, n_items: int = 36, n_groups: int = 4, seed: int = 0,
            name: str = "planted") -> tuple[RecDataset, np.ndarray]:
    """Users of group g like items of group g (8 of them + 1 random); features = group + noise."""
    rng = np.random.default_rng(seed)
    item_group = np.arange(n_items) % n_groups
    users, items = [], []
    for u in range(n_users):
        g = u % n_groups
        liked = rng.permutation(np.flatnonzero(item_group == g))[:7]
        other = rng.choice(np.flatnonzero(item_group != g), size=1)
        chosen = np.concatenate([other, liked])
        users += [u] * len(chosen)
        items += chosen.tolist()
    u_a, i_a = np.array(users), np.array(items)
    split = np.zeros(len(u_a), dtype=np.int8)
    for u in range(n_users):
        rows = np.flatnonzero(u_a == u)
        split[rows[-2]], split[rows[-1]] = 1, 2
    ids = [f"i{i}" for i in range(n_items)]
    cat = Catalog(ids, ids, ["" for _ in ids])
    inter = Interactions(u_a, i_a, split, n_users, n_items)
    feats = np.eye(n_groups, dtype=np.float32)[item_group] * 2.0
    feats = np.concatenate([feats, rng.normal(size=(n_items, 12)).astype(np.float32)], axis=1)
    return RecDataset(name, cat, inter), feats


def write_features(folder: Path, values: np.ndarray, modality: str = "image",
                   encoder: str = "tiny:cnn") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f"{modality}_feat.npy", values.astype(np.float32))
    (folder / "manifest.json").write_text(json.dumps(
        {"modality": modality, "encoder": encoder, "fingerprint": "test"}))
    return folder


@pytest.fixture
def planted_data(tmp_path):
    ds, feats = planted()
    ds = RecDataset.load(ds.save(tmp_path / "datasets" / ds.name))
    feat_dir = write_features(tmp_path / "features" / ds.name / "img", feats)
    return ds, feat_dir
