"""Every registered backbone, without and with the BeFA adapter, on tiny toy data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from safetensors.torch import load_file, save_file

from befa_viz.errors import ConfigError
from befa_viz.models import MODELS
from befa_viz.testing import toy_dataset

DIM = 8
SMALL = {"knn_k": 3}  # kNN graphs on 12 items


def _extra(name: str) -> dict:
    import inspect

    params = inspect.signature(MODELS.get(name)).parameters
    return {k: v for k, v in SMALL.items() if k in params}


def _cases() -> list[tuple[str, str | None]]:
    cases: list[tuple[str, str | None]] = []
    for name in MODELS.names():
        cases.append((name, None))
        if MODELS.get(name).multimodal:
            cases.append((name, "befa"))
    return cases


CASES = _cases()
IDS = [f"{n}-{a or 'none'}" for n, a in CASES]


@pytest.fixture(scope="module")
def toy_parts():
    ds = toy_dataset()
    it = ds.interactions
    g = torch.Generator().manual_seed(1)
    feats = {"image": torch.randn(it.n_items, 16, generator=g),
             "text": torch.randn(it.n_items, 8, generator=g)}
    train = it.train()
    return it, it.train().csr(), feats, train


def _build(name, adapter, toy_parts, seed=0, features=None, **kw):
    it, graph, feats, _ = toy_parts
    torch.manual_seed(seed)
    return MODELS.create(name, n_users=it.n_users, n_items=it.n_items, train_graph=graph,
                         features=feats if features is None else features, adapter=adapter,
                         dim=DIM, **{**_extra(name), **kw})


def _triples(toy_parts, seed=0):
    _, _, _, train = toy_parts
    g = torch.Generator().manual_seed(seed)
    users = torch.as_tensor(train.user_idx)
    pos = torch.as_tensor(train.item_idx)
    neg = torch.randint(0, train.n_items, pos.shape, generator=g)
    return users, pos, neg


def _fit(model, toy_parts, steps=25, lr=0.02):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    users, pos, neg = _triples(toy_parts)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model.loss(users, pos, neg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


@pytest.mark.parametrize(("name", "adapter"), CASES, ids=IDS)
def test_trains_scores_and_round_trips(name, adapter, toy_parts, tmp_path: Path):
    model = _build(name, adapter, toy_parts)
    losses = _fit(model, toy_parts)
    assert all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < np.mean(losses[:5]), losses

    model.eval()
    users = torch.tensor([0, 3, 5])
    with torch.no_grad():
        scores = model.score_users(users)
    assert scores.shape == (3, model.n_items)
    assert torch.isfinite(scores).all()

    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    fresh = _build(name, adapter, toy_parts, seed=123)
    fresh.load_state_dict(load_file(str(path)))
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh.score_users(users), scores)

    has_adapter = any(k.startswith("adapters.") for k in model.state_dict())
    assert has_adapter == (adapter is not None)
    assert not any(k.startswith("feat_") for k in model.state_dict())  # features not saved


MM_CASES = [c for c in CASES if MODELS.get(c[0]).multimodal]


@pytest.mark.parametrize(("name", "adapter"), MM_CASES,
                         ids=[f"{n}-{a or 'none'}" for n, a in MM_CASES])
def test_content_pathway_is_live(name, adapter, toy_parts):
    """The loss reaches the content projection (and the adapter), through item_content."""
    model = _build(name, adapter, toy_parts)
    model.train()
    model.loss(*_triples(toy_parts)).backward()
    for m in model.modalities:
        grad = model.projections[m].weight.grad
        assert grad is not None and grad.abs().sum() > 0, m
        if adapter:
            g = model.adapters[m].mlp[0].weight.grad
            assert g is not None and g.abs().sum() > 0, m
        cu = model.content_user_vectors(m)
        assert cu.shape == (model.n_users, DIM)


@pytest.mark.parametrize("name", [n for n in MODELS.names() if MODELS.get(n).multimodal])
def test_adapter_switch_changes_content_pathway(name, toy_parts):
    plain = _build(name, None, toy_parts)
    adapted = _build(name, "befa", toy_parts)
    plain.eval()
    adapted.eval()
    idx = torch.arange(plain.n_items)
    for m in plain.modalities:
        feat = plain.raw_features(m)
        with torch.no_grad():
            ċ = plain.projections[m](feat)
            assert torch.equal(plain.item_content(m), ċ)  # without adapter: the projection
            e = adapted.behaviour_embedding(idx)
            g = adapted.gate(m, feat)
            assert torch.allclose(adapted.item_content(m), g * e)  # with: g(ċ) ⊙ e
            assert not torch.allclose(adapted.item_content(m), adapted.projections[m](feat))
    with pytest.raises(ConfigError, match="without an adapter"):
        plain.gate(plain.modalities[0], plain.raw_features(plain.modalities[0]))
    assert not list(plain.adapters.parameters())


@pytest.mark.parametrize("name", [n for n in MODELS.names() if not MODELS.get(n).multimodal])
def test_behaviour_only_rejects_adapter(name, toy_parts):
    with pytest.raises(ConfigError, match="behaviour-only"):
        _build(name, "befa", toy_parts)


@pytest.mark.parametrize("name", [n for n in MODELS.names() if MODELS.get(n).multimodal])
def test_bad_features_are_config_errors(name, toy_parts):
    it, _, feats, _ = toy_parts
    with pytest.raises(ConfigError, match="one row per item"):
        _build(name, None, toy_parts, features={"image": torch.randn(it.n_items - 1, 4)})
    with pytest.raises(ConfigError, match="at least one content modality"):
        _build(name, None, toy_parts, features={})
    model = _build(name, None, toy_parts)
    with pytest.raises(ConfigError, match="no modality 'audio'"):
        model.content_user_vectors("audio")
    with pytest.raises(ConfigError, match="no modality 'audio'"):
        model.item_content("audio")


@pytest.mark.parametrize("name", [n for n in MODELS.names() if n != "bprmf" and n != "vbpr"])
def test_graph_models_check_train_graph(name, toy_parts):
    it, _, feats, _ = toy_parts
    kw = {**_extra(name), "dim": DIM}
    if MODELS.get(name).multimodal:
        kw["features"] = feats
    with pytest.raises(ConfigError, match="train_graph"):
        MODELS.create(name, n_users=it.n_users, n_items=it.n_items, **kw)
    with pytest.raises(ConfigError, match="expected"):
        MODELS.create(name, n_users=it.n_users, n_items=it.n_items,
                      train_graph=sp.csr_matrix((it.n_users, it.n_items + 1)), **kw)


@pytest.mark.parametrize("name", [n for n in MODELS.names() if MODELS.get(n).multimodal])
def test_three_modalities(name, toy_parts):
    it = toy_parts[0]
    g = torch.Generator().manual_seed(2)
    feats = {m: torch.randn(it.n_items, d, generator=g)
             for m, d in (("image", 16), ("text", 8), ("audio", 5))}
    model = _build(name, "befa", toy_parts, features=feats)
    assert model.modalities == ["audio", "image", "text"]
    losses = _fit(model, toy_parts, steps=3)
    assert all(np.isfinite(losses))
    model.eval()
    with torch.no_grad():
        assert model.score_users(torch.tensor([1])).shape == (1, it.n_items)
        for m in feats:
            assert model.content_user_vectors(m).shape == (it.n_users, DIM)


@pytest.mark.parametrize("name", ["freedom", "bm3", "lattice"])
def test_same_seed_same_losses(name, toy_parts):
    """Random parts (edge pruning, target dropout, graph rebuilds) follow torch's seed."""
    runs = []
    for _ in range(2):
        model = _build(name, "befa", toy_parts, seed=7)
        runs.append(_fit(model, toy_parts, steps=4))
    assert runs[0] == runs[1]


def test_eval_cache_is_invalidated_by_updates(toy_parts):
    model = _build("lightgcn", None, toy_parts)
    model.eval()
    users = torch.tensor([0, 1])
    with torch.no_grad():
        first = model.score_users(users).clone()
        assert model._eval_cache is not None
        assert torch.equal(model.score_users(users), first)
        model.user_emb.weight.add_(1.0)  # an in-place update, as an optimiser step
        assert not torch.equal(model.score_users(users), first)
    # with gradients enabled nothing is served from the cache
    assert model.score_users(users).requires_grad


def test_vbpr_content_user_vectors_are_exact(toy_parts):
    for fusion in ("sum", "concat"):
        model = _build("vbpr", "befa", toy_parts, fusion=fusion)
        model.eval()
        with torch.no_grad():
            scores = model.score_users(torch.arange(model.n_users))
            mf = model.user_emb.weight @ model.item_emb.weight.T
            content = sum(model.content_user_vectors(m) @ model.item_content(m).T
                          for m in model.modalities)
        assert torch.allclose(scores, mf + content, atol=1e-5), fusion


def test_bm3_content_user_vectors_score_content_as_an_item(toy_parts):
    model = _build("bm3", None, toy_parts)
    model.eval()
    with torch.no_grad():
        c = model.item_content("image")  # [I, d]
        exact = model.user_embeddings() @ model.predictor(c).T  # ⟨P(u), P(c)⟩
        approx = model.content_user_vectors("image") @ c.T  # ⟨W_Pᵀ P(u), c⟩
        # equal up to a per-user constant ⟨P(u), b⟩
        diff = exact - approx
        assert torch.allclose(diff, diff[:, :1].expand_as(diff), atol=1e-5)


@pytest.mark.parametrize("target", [None, 0.3])
def test_gate_reg_adds_the_gate_penalty(toy_parts, target):
    users, pos, neg = _triples(toy_parts)
    losses = {}
    for reg in (0.0, 2.0):
        model = _build("vbpr", "befa", toy_parts,
                       adapter_kwargs={"gate_reg": reg, "gate_target": target})
        model.eval()  # no adapter dropout: the two losses differ only by the penalty
        losses[reg] = model.loss(users, pos, neg)
    items = torch.cat([pos, neg])
    with torch.no_grad():
        means = [model.gate(m, model.raw_features(m)[items]).mean() for m in model.modalities]
    expected = sum(2.0 * (g if target is None else (g - target) ** 2) for g in means)
    assert torch.allclose(losses[2.0] - losses[0.0], expected, atol=1e-6)
    with pytest.raises(ConfigError, match="gate_target"):
        _build("vbpr", "befa", toy_parts, adapter_kwargs={"gate_target": 1.5})


def test_vbpr_recovers_planted_colour_preference():
    """Users like one colour; held-out (cold) items are ranked by their colour feature."""
    rng = np.random.default_rng(0)
    n_users, n_items, n_colours = 30, 60, 3
    colour = np.arange(n_items) % n_colours
    cold = np.arange(n_items) >= 45  # never seen in training
    feats = np.eye(n_colours)[colour] + 0.1 * rng.standard_normal((n_items, n_colours))
    feats = np.hstack([feats, 0.1 * rng.standard_normal((n_items, 5))]).astype(np.float32)
    pref = np.arange(n_users) % n_colours
    users, items = [], []
    for u in range(n_users):
        liked = np.flatnonzero((colour == pref[u]) & ~cold)
        for i in rng.choice(liked, size=6, replace=False):
            users.append(u)
            items.append(i)
    graph = sp.csr_matrix((np.ones(len(users)), (users, items)), shape=(n_users, n_items))
    torch.manual_seed(0)
    model = MODELS.create("vbpr", n_users=n_users, n_items=n_items, dim=8, reg_weight=0.0,
                          features={"image": torch.from_numpy(feats)}, train_graph=graph)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    u_t, p_t = torch.tensor(users), torch.tensor(items)
    warm = torch.from_numpy(np.flatnonzero(~cold))
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        neg = warm[torch.randint(0, len(warm), p_t.shape, generator=g)]
        loss = model.loss(u_t, p_t, neg)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        scores = model.score_users(torch.arange(n_users)).numpy()[:, cold]  # [U, cold items]
    cold_colour = colour[cold]
    aucs = []
    for u in range(n_users):
        good = scores[u, cold_colour == pref[u]]
        bad = scores[u, cold_colour != pref[u]]
        aucs.append((good[:, None] > bad[None, :]).mean())
    assert np.mean(aucs) > 0.95, np.mean(aucs)


def test_lattice_learned_graph_has_gradients_once_per_epoch(toy_parts):
    """As MMRec's build_item_graph flag: gradients through the graph on an epoch's first batch."""
    model = _build("lattice", None, toy_parts)
    batch = _triples(toy_parts)
    model.train()
    model.on_epoch_start()
    model.loss(*batch).backward()
    assert model.modal_weight.grad is not None and model.modal_weight.grad.abs().sum() > 0
    model.zero_grad()
    model.loss(*batch).backward()  # same epoch: the detached graph is reused
    assert model.modal_weight.grad is None or model.modal_weight.grad.abs().sum() == 0
    model.on_epoch_start()
    model.loss(*batch).backward()
    assert model.modal_weight.grad.abs().sum() > 0


def test_freedom_prunes_in_training_only(toy_parts):
    model = _build("freedom", None, toy_parts, dropout=0.5)
    model.train()
    model.loss(*_triples(toy_parts))
    kept = model.masked_adj._nnz()
    assert kept == 2 * int(model.edge_values.shape[0] * 0.5)  # both directions
    model.eval()
    assert model._ui_graph() is model.adj
