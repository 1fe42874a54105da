"""Quantus-backed metrics on toy maps with known answers, and one metric checked both ways."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from befa_viz.attribution import RandomDirectionTarget, attribute
from befa_viz.attribution import randomisation as R
from befa_viz.errors import ConfigError
from befa_viz.metrics import mass_in_mask, pointing_game
from befa_viz.metrics import standard as S
from befa_viz.testing import tiny_image_encoder


def _square(size: int = 16, lo: int = 4, hi: int = 10) -> np.ndarray:
    m = np.zeros((size, size), dtype=bool)
    m[lo:hi, lo:hi] = True
    return m


def test_localisation_metrics_known_answers():
    mask = _square()
    inside = mask.astype(float)  # all mass on the mask
    half = inside + (~mask) * (mask.sum() / (~mask).sum())  # half the mass outside
    outside = (~mask).astype(float)
    maps = np.stack([inside, half, outside])
    masks = np.stack([mask] * 3)
    np.testing.assert_allclose(S.relevance_mass(maps, masks), [1.0, 0.5, 0.0], atol=1e-9)
    assert S.relevance_rank(maps[:1], masks[:1])[0] == pytest.approx(1.0)
    assert S.relevance_rank(maps[2:], masks[2:])[0] == pytest.approx(0.0)
    peak = outside.copy()
    peak[5, 5] = 9.0  # maximum inside the mask
    np.testing.assert_array_equal(S.pointing(np.stack([peak, outside + 0]), masks[:2]),
                                  [1.0, 0.0])


def test_relevance_mass_agrees_with_our_mass_in_mask():
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(5, 16, 16))  # signed: both take magnitudes
    masks = np.stack([_square(lo=k, hi=k + 7) for k in range(5)])
    ours = [mass_in_mask(a, m) for a, m in zip(maps, masks, strict=True)]
    np.testing.assert_allclose(S.relevance_mass(maps, masks), ours, rtol=1e-9)
    ours_p = [float(pointing_game(a, m)) for a, m in zip(maps, masks, strict=True)]
    np.testing.assert_array_equal(S.pointing(maps, masks), ours_p)


def test_sparseness_orders_uniform_below_one_hot_and_refuses_zero_maps():
    one_hot = np.zeros((16, 16))
    one_hot[3, 3] = 1.0
    s = S.sparseness(np.stack([np.ones((16, 16)), one_hot]))
    assert s[0] == pytest.approx(0.0, abs=1e-6) and s[1] > 0.99
    with pytest.raises(ConfigError, match="all-zero"):
        S.sparseness(np.zeros((16, 16)))


def test_bad_shapes_and_empty_masks_are_refused():
    with pytest.raises(ConfigError, match="masks have shape"):
        S.relevance_mass(np.ones((2, 8, 8)), np.ones((2, 4, 4), dtype=bool))
    with pytest.raises(ConfigError, match="empty"):
        S.relevance_mass(np.ones((1, 8, 8)), np.zeros((1, 8, 8), dtype=bool))
    with pytest.raises(ConfigError, match="NaN"):
        S.sparseness(np.full((8, 8), np.nan))


def test_cascading_model_randomisation_runs_top_down_and_decorrelates():
    enc = tiny_image_encoder(dim=8)
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    t = RandomDirectionTarget(8, n_directions=3)
    maps = np.stack([a.values for a in attribute("gradcam", enc, t, x)])
    out = R.model_randomisation(enc, t, x, maps, "gradcam", cascade=True)
    layers = list(out)
    # top-down: the last conv first, the first conv last (fully randomised)
    assert layers[1:] == ["encoder.body.4", "encoder.body.2", "encoder.body.0"]
    assert np.all(out["original"] == pytest.approx(1.0))
    assert np.all(np.abs(out[layers[-1]]) < 0.9)  # a random network's map is not the map
    last = R.model_randomisation(enc, t, x, maps, "gradcam", cascade=False)
    assert list(last)[-1] == layers[-1] and len(last) == 2


def test_random_logit_is_low_for_a_target_sensitive_method_on_a_linear_head():
    enc = tiny_image_encoder(dim=8)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    t = RandomDirectionTarget(8, seed=7, n_directions=2)
    maps = np.stack([a.values for a in attribute("gradcam", enc, t, x)])
    rl = R.random_logit(enc, t, x, maps, "gradcam")
    assert rl.shape == (2,) and np.all(rl < 0.9)
    # the model-free control ignores the target: identical maps, similarity 1
    ctrl = np.stack([a.values for a in attribute("input_x_blur", enc, t, x)])
    assert np.all(R.random_logit(enc, t, x, ctrl, "input_x_blur") > 0.99)


def test_faithfulness_correlation_is_seeded():
    enc = tiny_image_encoder(dim=8)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    t = RandomDirectionTarget(8, n_directions=2)
    maps = np.stack([a.values for a in attribute("ig", enc, t, x, n_steps=16)])
    state = np.random.get_state()
    a = S.faithfulness_corr(enc, t, x, maps, subset_size=64, n_runs=12, seed=3)
    b = S.faithfulness_corr(enc, t, x, maps, subset_size=64, n_runs=12, seed=3)
    np.testing.assert_array_equal(a, b)
    assert np.all(np.abs(a) <= 1.0)
    assert np.random.get_state()[1][0] == state[1][0]  # global numpy RNG restored
