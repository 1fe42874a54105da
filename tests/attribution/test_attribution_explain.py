"""explain / explain_pair on the toy VBPR, and the sanity checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from befa_viz.attribution import (
    Attribution,
    explain,
    explain_pair,
    randomised_copy,
    sanity_check,
)
from befa_viz.errors import ConfigError
from befa_viz.testing import tiny_image_encoder, tiny_text_encoder


def _images(ds, idx):
    return [ds.catalog.image(i) for i in idx]


@pytest.mark.parametrize("target", ["behaviour_alignment", "content_score", "user_score",
                                    "content_focus", "random"])
def test_explain_every_target_on_toy_vbpr(toy_vbpr, target, tmp_path):
    enc, ds, plain, _ = toy_vbpr
    idx = [1, 4]
    out = explain(enc, plain, _images(ds, idx), idx, target=target, method="ig", n_steps=32,
                  users=ds.interactions.train(), user_idx=0, item_ids=["i1", "i4"])
    assert [a.item_id for a in out] == ["i1", "i4"]
    assert out[0].target == target and out[0].values.shape == (32, 32)
    assert out[0].params["adapter"] is False and out[0].params["model"] == "VBPR"
    span = out[0].params["target_value"] - out[0].params["baseline_value"]
    assert abs(out[0].values.sum() - span) <= 0.1 * abs(span) + 1e-4
    json.dumps(out[0].params)  # params stay JSON-able (cache manifests, reports)
    back = Attribution.load(out[0].save(tmp_path / "a.npz"))
    np.testing.assert_array_equal(back.values, out[0].values)


def test_explain_pair_with_and_without_adapter(toy_vbpr):
    enc, ds, plain, adapted = toy_vbpr
    idx = [0, 5]
    without, with_ = explain_pair(enc, adapted, plain, _images(ds, idx), idx,
                                  method="gradcam", users=ds.interactions.train())
    assert [a.params["pair"] for a in without + with_] == ["without_adapter"] * 2 + [
        "with_adapter"] * 2
    assert without[0].target == "content_score" and with_[0].target == "adapted_alignment"
    assert without[0].params["adapter"] is False and with_[0].params["adapter"] is True
    assert not np.allclose(without[0].values, with_[0].values)
    with pytest.raises(ConfigError, match="neither has the adapter"):
        explain_pair(enc, plain, plain, _images(ds, idx), idx)


def test_explain_bad_input(toy_vbpr):
    enc, ds, plain, _ = toy_vbpr
    with pytest.raises(ConfigError, match="another encoder"):
        explain(tiny_image_encoder(dim=7), plain, _images(ds, [0]), [0])
    with pytest.raises(ConfigError, match="no image"):
        explain(enc, plain, [None], [0])
    with pytest.raises(ConfigError, match="entries in item_idx"):
        explain(enc, plain, _images(ds, [0, 1]), [0])
    with pytest.raises(ConfigError, match="n_steps"):
        explain(enc, plain, _images(ds, [0]), [0], n_steps=-1)


def test_explain_text_without_model():
    enc = tiny_text_encoder(dim=8)
    out = explain(enc, None, ["a red box", "blue hat for sale"], target="content_focus",
                  method="ig", n_steps=4)
    assert out[1].tokens == ["blue", "hat", "for", "sale"]
    assert out[0].modality == "text" and out[0].image is None


def test_explain_restores_training_mode(toy_vbpr):
    enc, ds, _, adapted = toy_vbpr
    adapted.train()
    try:
        a = explain(enc, adapted, _images(ds, [2]), [2], target="content_score",
                    users=ds.interactions.train(), n_steps=4)
        b = explain(enc, adapted, _images(ds, [2]), [2], target="content_score",
                    users=ds.interactions.train(), n_steps=4)
        np.testing.assert_allclose(a[0].values, b[0].values)  # adapter dropout was off
        assert adapted.training and adapted.adapters["image"].training
    finally:
        adapted.eval()


def test_randomised_copy_changes_every_parameter():
    enc = tiny_image_encoder(dim=8)
    rnd = randomised_copy(enc, seed=1)
    for (n, p), q in zip(enc.named_parameters(), rnd.parameters(), strict=True):
        assert not torch.equal(p, q), n
    assert torch.equal(randomised_copy(enc, seed=1).body[0].weight, rnd.body[0].weight)


def test_sanity_flags_target_blind_method(toy_vbpr):
    enc, ds, plain, _ = toy_vbpr
    idx = [0, 1, 2]
    blind = sanity_check(enc, plain, _images(ds, idx), idx, method="input_x_blur")
    assert blind.rho["target"] == pytest.approx([1.0, 1.0, 1.0])
    assert blind.rho["model"] == pytest.approx([1.0, 1.0, 1.0])
    assert not blind.control_passes["target"] and not blind.passes
    assert not blind.item_passes.any()
    assert "FAIL" in blind.summary()
    real = sanity_check(enc, plain, _images(ds, idx), idx, method="gradcam")
    assert real.median_rho["target"] < 1.0 and real.median_rho["model"] < 1.0
    assert set(real.rho) == {"model", "target", "input"}
    json.dumps(real.to_dict())


def test_sanity_reuses_given_attributions_and_checks_controls(toy_vbpr):
    enc, ds, plain, _ = toy_vbpr
    idx = [3]
    maps = explain(enc, plain, _images(ds, idx), idx, method="gradcam")
    rep = sanity_check(enc, plain, _images(ds, idx), idx, method="gradcam",
                       attributions=maps, controls=("target",), max_rho={"target": 1.01})
    assert rep.passes and list(rep.rho) == ["target"] and rep.max_rho == {"target": 1.01}
    with pytest.raises(ConfigError, match="Unknown sanity controls"):
        sanity_check(enc, plain, _images(ds, idx), idx, controls=("edges",))


@pytest.mark.parametrize("method", ["ig_expected", "ig_smooth"])
def test_explain_seed_reaches_noisy_methods(toy_vbpr, method):
    # The cache key records the request's seed, so the seed must decide the noisy methods'
    # draws (ig_expected's used to stay at its default 0 whatever the request said).
    enc, ds, plain, _ = toy_vbpr
    idx = [1]
    run = [explain(enc, plain, _images(ds, idx), idx, target="behaviour_alignment", method=method,
                   n_steps=4, seed=s)[0].values for s in (3, 3, 4)]
    np.testing.assert_array_equal(run[0], run[1])
    assert not np.allclose(run[0], run[2])
