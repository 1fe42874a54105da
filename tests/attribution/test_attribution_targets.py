"""Targets equal the quantities they are documented to be, at the stored features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from befa_viz.attribution import (
    TARGETS,
    BehaviourAlignmentTarget,
    ContentFocusTarget,
    ContentScoreTarget,
    RandomDirectionTarget,
    UserScoreTarget,
    create_target,
)
from befa_viz.errors import ConfigError, DataError, UnknownNameError


def test_registry_names():
    assert TARGETS.names() == ["adapted_alignment", "behaviour_alignment", "content_focus",
                               "content_score", "random", "user_score"]
    with pytest.raises(UnknownNameError, match="content_focus"):
        create_target("content_fokus", dim=4)


def test_content_focus_and_random_targets():
    ref = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    t = ContentFocusTarget(ref)
    x = torch.tensor([[1.0, 1.0], [5.0, 1.0]])
    np.testing.assert_allclose(t(x).numpy(), [7 / 5, 1.0])
    np.testing.assert_allclose(t(x, torch.tensor([1, 1])).numpy(), [1.0, 1.0])  # rows
    r = RandomDirectionTarget(16, seed=2, n_directions=3)
    assert torch.allclose(r.directions.norm(dim=1), torch.ones(3))
    assert torch.equal(r.directions, RandomDirectionTarget(16, seed=2, n_directions=3).directions)
    assert not torch.equal(r.directions, RandomDirectionTarget(16, seed=3, n_directions=3).directions)


@pytest.mark.parametrize("adapted", [False, True])
def test_model_targets_at_stored_features(toy_vbpr, adapted):
    enc, ds, plain, with_adapter = toy_vbpr
    model = with_adapter if adapted else plain
    items = torch.tensor([0, 3, 7])
    feats = model.raw_features("image")[items]
    train = ds.interactions.train()

    ba = BehaviourAlignmentTarget(model, "image", items)
    expect = F.cosine_similarity(model.projections["image"](feats), model.item_emb(items), dim=-1)
    torch.testing.assert_close(ba(feats), expect)
    assert ba.describe()["adapter"] is False  # projection only, even with the adapter

    cs = ContentScoreTarget(model, "image", items, users=train)
    csr = train.csr().tocsc()
    theta = model.content_user_vectors("image")
    content = model.content_pathway("image", feats, items)
    for b, i in enumerate(items.tolist()):
        users = csr.indices[csr.indptr[i]: csr.indptr[i + 1]]
        manual = (theta[torch.from_numpy(users).long()] @ content[b]).mean()
        torch.testing.assert_close(cs(feats)[b], manual, rtol=1e-5, atol=1e-6)
    assert cs.describe()["adapter"] is adapted

    us = UserScoreTarget(model, "image", items, user_idx=[1, 2, 5])
    full = model.score_users(torch.tensor([1, 2, 5]))
    torch.testing.assert_close(us(feats), full[torch.arange(3), items], rtol=1e-5, atol=1e-5)
    # Only the content term varies: moving the feature moves the score by ⟨θ_u, Δpathway⟩.
    moved = feats + 0.1
    delta = (theta[torch.tensor([1, 2, 5])] *
             (model.content_pathway("image", moved, items) - content)).sum(-1)
    torch.testing.assert_close(us(moved) - us(feats), delta, rtol=1e-4, atol=1e-5)


def test_adapted_alignment_needs_the_adapter(toy_vbpr):
    enc, ds, plain, adapted = toy_vbpr
    train = ds.interactions.train()
    with pytest.raises(ConfigError, match="trained with the adapter"):
        create_target("adapted_alignment", model=plain, item_idx=[0], users=train)
    t = create_target("adapted_alignment", model=adapted, item_idx=[0], users=train)
    assert t.name == "adapted_alignment"


def test_target_context_errors(toy_vbpr):
    enc, ds, plain, _ = toy_vbpr
    with pytest.raises(ConfigError, match="needs a trained recommender"):
        create_target("behaviour_alignment", model=None, item_idx=[0])
    with pytest.raises(ConfigError, match="content pathway"):
        create_target("behaviour_alignment", model=plain, modality="text", item_idx=[0])
    with pytest.raises(ConfigError, match="users="):
        create_target("content_score", model=plain, item_idx=[0])
    with pytest.raises(ConfigError, match="needs a user"):
        create_target("user_score", model=plain, item_idx=[0])
    with pytest.raises(ConfigError, match="item_idx"):
        create_target("content_score", model=plain)
    empty = [[] for _ in range(1)]
    with pytest.raises(DataError, match="no training users"):
        create_target("content_score", model=plain, item_idx=[0], users=empty)


def test_targets_do_not_change_training_mode(toy_vbpr):
    enc, ds, _, adapted = toy_vbpr
    adapted.train()
    try:
        a = UserScoreTarget(adapted, "image", [0, 1], 0)
        b = UserScoreTarget(adapted, "image", [0, 1], 0)
        torch.testing.assert_close(a.const, b.const)  # dropout was off while computing
        assert adapted.training
    finally:
        adapted.eval()
