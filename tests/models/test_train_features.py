"""Trainable feature tables (``train_features``) and the official BeFA backbone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from befa_viz.errors import ConfigError
from befa_viz.models import MODELS
from befa_viz.models._common import knn_graph, propagate_mean, ui_adjacency
from befa_viz.testing import toy_dataset

TRAINABLE = [n for n in MODELS.names() if MODELS.get(n).supports_train_features]


@pytest.fixture(scope="module")
def parts():
    it = toy_dataset().interactions
    g = torch.Generator().manual_seed(1)
    feats = {"image": torch.randn(it.n_items, 16, generator=g),
             "text": torch.randn(it.n_items, 8, generator=g)}
    return it, feats


def _build(name, parts, **kw):
    import inspect

    it, feats = parts
    torch.manual_seed(0)
    knn = {"knn_k": 3} if "knn_k" in inspect.signature(MODELS.get(name)).parameters else {}
    return MODELS.create(name, n_users=it.n_users, n_items=it.n_items, features=feats, dim=8,
                         train_graph=it.train().csr(), **knn, **kw)


def test_the_reference_backbones_support_it():
    assert set(TRAINABLE) == {"bm3", "freedom", "lattice", "lightgcn_knn", "mgcn"}


@pytest.mark.parametrize("adapter", [None, "befa"])
@pytest.mark.parametrize("name", TRAINABLE)
def test_tables_train_and_the_encoder_output_stays(name, adapter, parts):
    _, feats = parts
    model = _build(name, parts, adapter=adapter, train_features=True)
    table = model.raw_features("image")
    assert isinstance(table, nn.Parameter) and "feat_image" in model.state_dict()
    torch.testing.assert_close(model.feature_cosine("image"), torch.ones(12))
    it = parts[0].train()
    users, pos = torch.as_tensor(it.user_idx), torch.as_tensor(it.item_idx)
    neg = (pos + 5) % 12
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    model.train()
    for _ in range(3):
        loss = model.loss(users, pos, neg)
        opt.zero_grad()
        loss.backward()
        opt.step()
    cos = model.feature_cosine("image")
    assert not torch.equal(table.detach(), feats["image"])  # the table moved
    assert cos.min() < 1 - 1e-5 and cos.max() <= 1.0 + 1e-6
    assert torch.equal(model.encoder_features("image"), feats["image"])  # the original did not
    # attribution differentiates the encoder-output path, as with frozen features
    x = feats["image"][:2].clone().requires_grad_(True)
    model.content_pathway("image", x, torch.tensor([0, 1])).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_frozen_tables_are_buffers_with_cosine_one(parts):
    model = _build("freedom", parts)
    assert "feat_image" not in model.state_dict()
    assert model.encoder_features("image") is model.raw_features("image")
    assert torch.equal(model.feature_cosine("image"), torch.ones(12))


@pytest.mark.parametrize("name", ["vbpr", "bprmf", "lightgcn"])
def test_other_backbones_refuse_it(name, parts):
    it, feats = parts
    with pytest.raises(ConfigError, match="train_features=True is for: .*FREEDOM"):
        MODELS.create(name, n_users=it.n_users, n_items=it.n_items,
                      features=feats if MODELS.get(name).multimodal else None, dim=8,
                      train_graph=it.train().csr(), train_features=True)


@pytest.mark.parametrize("adapter", [None, "befa"])
def test_lightgcn_knn_is_lightgcn_plus_mean_knn_content_views(adapter, parts):
    """final = LightGCN(IDs) + mean_m [R̂ S_m x_m ; S_m x_m] with dense reference matrices."""
    it, feats = parts
    model = _build("lightgcn_knn", parts, adapter=adapter).eval()
    n_u, n_i = it.n_users, it.n_items
    csr = it.train().csr().toarray()
    deg_u, deg_i = csr.sum(1), csr.sum(0)
    r_hat = torch.tensor(csr / np.sqrt(np.outer(np.maximum(deg_u, 1), np.maximum(deg_i, 1))),
                         dtype=torch.float32)  # D_u^-½ R D_i^-½
    adj = torch.zeros(n_u + n_i, n_u + n_i)
    adj[:n_u, n_u:], adj[n_u:, :n_u] = r_hat, r_hat.T
    ego = torch.cat([model.user_emb.weight, model.item_emb.weight])
    ids = (ego + adj @ ego + adj @ adj @ ego) / 3  # 2 LightGCN layers, mean readout
    side = torch.zeros_like(ids)
    for m in ("image", "text"):
        s = knn_graph(feats[m], 3, weighted=True).to_dense()
        x = s @ model.item_content(m)
        side += torch.cat([r_hat @ x, x])
    with torch.no_grad():
        users, items = model.final_embeddings()
        expected = ids + side / 2
    torch.testing.assert_close(users, expected[:n_u], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(items, expected[n_u:], atol=1e-5, rtol=1e-5)
    # the building blocks agree with the shared helpers
    u, i = np.nonzero(csr)
    sparse = ui_adjacency(torch.as_tensor(u), torch.as_tensor(i), n_u, n_i)
    torch.testing.assert_close(propagate_mean(sparse, ego, 2), ids, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("adapter", [None, "befa"])
def test_batch_content_projects_each_item_once_with_the_same_values_and_gradients(parts, adapter):
    """A batch with repeated items: the same rows and table gradient as content_pathway."""
    model = _build("freedom", parts, adapter=adapter, train_features=True).eval()  # no dropout
    idx = torch.tensor([3, 1, 3, 3, 0, 1, 7])
    table = model.raw_features("image")
    ref = model.content_pathway("image", table[idx], idx)
    (ref * torch.arange(1.0, 9.0)).sum().backward()
    ref_grad = table.grad.clone()
    model.zero_grad()
    out = model.batch_content("image", idx)
    (out * torch.arange(1.0, 9.0)).sum().backward()
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(table.grad, ref_grad)
    assert table.grad[[2, 4, 5, 6]].abs().sum() == 0  # rows outside the batch get no gradient
