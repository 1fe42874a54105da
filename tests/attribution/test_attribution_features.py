"""Precomputed-feature attribution on an MMRec-format toy with an audio modality."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from befa_viz.attribution.features import feature_attribution, modality_shares
from befa_viz.data import export_mmrec, import_mmrec
from befa_viz.errors import ConfigError
from befa_viz.models import MODELS
from befa_viz.testing import toy_dataset


@pytest.fixture(scope="module")
def audio_toy(tmp_path_factory):
    """VBPR over an imported MMRec folder with image and audio feature files (no media)."""
    rng = np.random.default_rng(0)
    feats = {"image": rng.normal(size=(12, 5)), "audio": rng.normal(size=(12, 7))}
    folder = export_mmrec(toy_dataset(), tmp_path_factory.mktemp("mm") / "toy", features=feats)
    ds, loaded = import_mmrec(folder)
    torch.manual_seed(0)
    model = MODELS.create("vbpr", n_users=ds.n_users, n_items=ds.n_items, dim=4,
                          features={m: torch.as_tensor(v) for m, v in loaded.items()}).eval()
    return ds, model


def test_feature_ig_is_exact_for_the_linear_content_score(audio_toy):
    ds, model = audio_toy
    users = ds.interactions.train()
    out = feature_attribution(model, "audio", [2, 5], users=users, baseline="zeros",
                              item_ids=["a", "b"])
    raw = model.raw_features("audio")
    for a, i in zip(out, [2, 5], strict=True):
        assert a.modality == "audio" and a.values.shape == (7,) and a.item_id in ("a", "b")
        # VBPR's content score is linear in the feature: IG = x ⊙ ∇f (zero baseline)
        from befa_viz.attribution import create_target

        t = create_target("content_score", model=model, modality="audio", item_idx=[i],
                          users=users)
        x = raw[i: i + 1].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(t(x).sum(), x)
        np.testing.assert_allclose(a.values, (x * g)[0].detach().numpy(), atol=1e-5)
        assert abs(a.delta) < 1e-5 and a.params["converged"]
        assert set(a.extras["top_dims"][:1]) == {int(np.argmax(np.abs(a.values)))}


def test_modality_shares_add_up_to_the_content_score(audio_toy):
    ds, model = audio_toy
    users = ds.interactions.train()
    shares = modality_shares(model, 4, users=users, baseline="zeros")
    assert sorted(shares) == ["audio", "image"]
    assert sum(v["share"] for v in shares.values()) == pytest.approx(1.0)
    ig_total = feature_attribution(model, "audio", [4], users=users, baseline="zeros")[0]
    assert float(ig_total.values.sum()) == pytest.approx(shares["audio"]["change"], abs=1e-5)


def test_feature_attribution_rejects_bad_requests(audio_toy):
    ds, model = audio_toy
    with pytest.raises(ConfigError, match="no modality 'video'"):
        feature_attribution(model, "video", [0], users=ds.interactions.train())
    with pytest.raises(ConfigError, match="out of range"):
        feature_attribution(model, "audio", [99], users=ds.interactions.train())
    with pytest.raises(ConfigError, match="feature baseline"):
        feature_attribution(model, "audio", [0], users=ds.interactions.train(), baseline="x")
