"""IG variants against math: exact IG of linear encoders, completeness, adaptive steps."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from befa_viz.attribution import RandomDirectionTarget, attribute, method_modalities
from befa_viz.attribution._base import _blur
from befa_viz.attribution.ig import DEFAULT_N_STEPS, region_sum, relative_delta
from befa_viz.errors import ConfigError
from befa_viz.testing import tiny_image_encoder

VARIANTS = ("ig_expected", "ig_blur_path", "ig_region", "ig_similarity")


def _pixels(n: int = 2, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _linear_grad(enc, target) -> torch.Tensor:
    """∂f/∂x of f(x) = r · Σ_hw w_hw (W x_hw + b): [3, H, W]."""
    W = enc.body[0].weight[:, :, 0, 0]
    return (W.T @ target.directions[0])[:, None, None] * enc.weight


def test_variants_are_registered_for_images():
    for m in VARIANTS:
        assert method_modalities(m) == ("image",)


def test_blur_path_ig_of_linear_encoder_is_exact(region_encoder, square_mask):
    enc = region_encoder(square_mask(), dim=4, linear=True)
    target = RandomDirectionTarget(4, seed=3)
    x = _pixels()
    out = attribute("ig_blur_path", enc, target, x, max_sigma=2.0, n_segments=4, n_steps=4)
    # Linear f: IG along any path = (x − start) · ∇f; the path starts at blur(x, max_sigma).
    expected = ((x - _blur(x, 2.0)) * _linear_grad(enc, target)).sum(1).numpy()
    for a, e in zip(out, expected, strict=True):
        np.testing.assert_allclose(a.values, e, atol=1e-5)
        assert abs(a.delta) < 1e-4 and a.params["n_steps"] == 4


def test_expected_gradients_of_linear_encoder_with_one_reference_is_exact(
        region_encoder, square_mask):
    enc = region_encoder(square_mask(), dim=4, linear=True)
    target = RandomDirectionTarget(4, seed=1)
    x = _pixels(1)
    ref = torch.full((1, 3, 16, 16), 0.5)
    out = attribute("ig_expected", enc, target, x, references=ref, n_steps=8)
    expected = ((x - ref) * _linear_grad(enc, target)).sum(1).numpy()
    np.testing.assert_allclose(out[0].values, expected[0], atol=1e-5)
    assert out[0].params["baseline"] == "distribution:tensor"


def test_region_ig_is_the_region_sum_of_pixel_ig(region_encoder, square_mask):
    enc = region_encoder(square_mask(), dim=4, linear=True)
    target = RandomDirectionTarget(4, seed=2)
    x = _pixels(1)
    out = attribute("ig_region", enc, target, x, baseline="black", n_steps=4, n_segments=8)[0]
    pixel_ig = (x * _linear_grad(enc, target)).sum(1)[0]
    seg = torch.as_tensor(out.extras["segments"]).long()
    tot, dens = region_sum(pixel_ig, seg)
    np.testing.assert_allclose(out.extras["region_values"], tot.numpy(), atol=1e-5)
    np.testing.assert_allclose(out.values, dens.numpy(), atol=1e-6)
    # constant inside each region, and the map still sums to Σ attr (completeness kept)
    for k in np.unique(out.extras["segments"]):
        assert np.ptp(out.values[out.extras["segments"] == k]) < 1e-6
    assert abs(out.values.sum() - float(pixel_ig.sum())) < 1e-4


@pytest.mark.parametrize("method", [*VARIANTS, "layer_ig", "ig"])
def test_variants_are_complete_on_a_nonlinear_cnn(method):
    enc = tiny_image_encoder(dim=8)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # converging within the cap: no warning
        # expected gradients is a Monte-Carlo estimate (error ~ 1/√samples): a looser tol
        tol = 0.1 if method == "ig_expected" else 0.05
        out = attribute(method, enc, RandomDirectionTarget(8, seed=0, n_directions=2), x,
                        n_steps=None, tol=tol, max_steps=512)
    for a in out:
        span = a.params["target_value"] - a.params["baseline_value"]
        assert abs(a.values.sum() - span) <= tol * abs(span) + 1e-4 or method in (
            "ig_similarity", "layer_ig")  # the layer map is the layer attribution (checked via delta)
        assert a.params["relative_delta"] <= tol and a.params["converged"]
        assert a.params["n_steps"] >= DEFAULT_N_STEPS and a.params["adaptive_steps"]
        assert relative_delta(a.delta, a.params["target_value"],
                              a.params["baseline_value"]) == pytest.approx(
                                  a.params["relative_delta"])


def test_similarity_ig_layer_map_is_complete():
    enc = tiny_image_encoder(dim=8)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    out = attribute("ig_similarity", enc, RandomDirectionTarget(8, seed=0, n_directions=2), x,
                    n_steps=64)
    for a in out:
        span = a.params["target_value"] - a.params["baseline_value"]
        assert a.extras["layer_map"].shape == (8, 8)
        assert abs(a.extras["layer_map"].sum() - span) < 0.02 * abs(span) + 1e-5


def test_adaptive_schedule_doubles_until_the_cap_and_warns():
    enc = tiny_image_encoder(dim=8)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with pytest.warns(UserWarning, match="completeness error above"):
        out = attribute("ig_region", enc, RandomDirectionTarget(8), x, tol=1e-9, max_steps=32)
    assert out[0].params["n_steps"] == 32 and not out[0].params["converged"]
    fixed = attribute("ig_region", enc, RandomDirectionTarget(8), x, n_steps=5, tol=10.0)
    assert fixed[0].params["n_steps"] == 5 and not fixed[0].params["adaptive_steps"]


def test_variants_reject_bad_options():
    enc = tiny_image_encoder(dim=8)
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(ConfigError, match="n_steps"):
        attribute("ig_blur_path", enc, RandomDirectionTarget(8), x, n_steps=0)
    with pytest.raises(ConfigError, match="references"):
        attribute("ig_expected", enc, RandomDirectionTarget(8), x, references="nope")
    with pytest.raises(ConfigError, match="two items"):
        attribute("ig_expected", enc, RandomDirectionTarget(8), x, references="batch")


@pytest.mark.parametrize("sigma", [0.7, 2.0, 5.0, 40.0])  # 40: kernel clamped to the image
def test_separable_blur_equals_the_2d_torchvision_blur(sigma):
    from torchvision.transforms.functional import gaussian_blur

    from befa_viz.attribution._blur import blur_kernel_size, gaussian_blur_levels

    x = _pixels(2, size=32)
    k = blur_kernel_size(sigma, 32, 32)
    full = gaussian_blur(x, kernel_size=[k, k], sigma=[sigma, sigma])
    np.testing.assert_allclose(_blur(x, sigma).numpy(), full.numpy(), atol=1e-5)  # rounding
    levels = gaussian_blur_levels(x, [sigma, 0.0])
    assert levels.shape == (2, 2, 3, 32, 32)
    assert torch.equal(levels[:, 1], x) and torch.allclose(levels[:, 0], full, atol=1e-5)


def test_expected_gradients_are_seeded_and_leave_the_global_rngs_alone():
    # Captum's GradientShap draws baselines and path points from NumPy's global RNG: the
    # method's seed must decide them (same seed, same map), and the caller's state survives.
    enc = tiny_image_encoder(dim=8)
    x = _pixels(2, size=32)
    np.random.seed(123)
    state = np.random.get_state()[1].copy()
    a = attribute("ig_expected", enc, RandomDirectionTarget(8), x, n_steps=8, seed=5)
    assert np.array_equal(np.random.get_state()[1], state)
    np.random.seed(999)  # another global state: same maps
    b = attribute("ig_expected", enc, RandomDirectionTarget(8), x, n_steps=8, seed=5)
    c = attribute("ig_expected", enc, RandomDirectionTarget(8), x, n_steps=8, seed=6)
    for ra, rb, rc in zip(a, b, c, strict=True):
        np.testing.assert_array_equal(ra.values, rb.values)
        assert not np.allclose(ra.values, rc.values)


def test_seeded_expected_gradients_get_new_cache_keys_and_other_methods_keep_theirs(tmp_path):
    from befa_viz.attribution.cache import AttributionCache, AttributionKey
    from befa_viz.cache import Cache

    ac = AttributionCache(Cache(tmp_path))
    key = {m: AttributionKey("w", "d", "tiny:cnn", "e", "f", "i0", "image", "t", m, False)
           for m in ("ig_expected", "ig")}
    assert key["ig_expected"].params()["method_version"] == 2
    assert "method_version" not in key["ig"].params()
    # A version-1 method's key hashes exactly what it hashed before versions existed.
    legacy = {"item_id": "i0", "modality": "image", "target": "t", "target_params": {},
              "method": "ig", "method_params": {}, "adapter": False, "seed": 0}
    assert ac.key(key["ig"]) == ac.cache.key("attribution", fingerprints=key["ig"].fingerprints(),
                                             params=legacy)
    before = {k: v for k, v in key["ig_expected"].params().items() if k != "method_version"}
    assert ac.key(key["ig_expected"]) != ac.cache.key(
        "attribution", fingerprints=key["ig_expected"].fingerprints(), params=before)


def test_expected_gradients_of_an_item_do_not_depend_on_its_batch():
    # The cache stores maps per item, and Ray splits batches differently from one process:
    # an item's draws must follow its id, not its position in the call.
    enc = tiny_image_encoder(dim=8)
    x = _pixels(3, size=32)
    whole = attribute("ig_expected", enc, RandomDirectionTarget(8), x, n_steps=8, seed=5,
                      item_ids=["a", "b", "c"])
    alone = attribute("ig_expected", enc, RandomDirectionTarget(8), x[2:], n_steps=8, seed=5,
                      item_ids=["c"])
    np.testing.assert_allclose(whole[2].values, alone[0].values, rtol=1e-5, atol=1e-7)
