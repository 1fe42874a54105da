"""Attribution methods against math: linear IG, completeness, zero input, planted region."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from befa_viz.attribution import (
    ATTRIBUTIONS,
    ContentFocusTarget,
    RandomDirectionTarget,
    attribute,
    make_baseline,
    merge_tokens,
    method_modalities,
)
from befa_viz.errors import ConfigError, UnknownNameError
from befa_viz.metrics import mass_in_mask
from befa_viz.testing import tiny_image_encoder, tiny_text_encoder


def _pixels(n: int = 2, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("baseline", ["black", "white", "blur"])
def test_ig_of_linear_encoder_equals_input_minus_baseline_times_weights(
        region_encoder, square_mask, baseline):
    enc = region_encoder(square_mask(), dim=4, linear=True)
    target = RandomDirectionTarget(4, seed=3)
    x = _pixels()
    out = attribute("ig", enc, target, x, baseline=baseline, n_steps=8)
    # f(x) = r · Σ_hw w_hw (W x_hw + b): gradient wrt x[c, h, w] = (Wᵀ r)_c · w_hw.
    W = enc.body[0].weight[:, :, 0, 0]  # [dim, 3]
    g = (W.T @ target.directions[0])[:, None, None] * enc.weight  # [3, H, W]
    b = make_baseline(x, baseline)
    expected = ((x - b) * g).sum(1).numpy()
    for a, e in zip(out, expected, strict=True):
        np.testing.assert_allclose(a.values, e, atol=1e-5)
        assert abs(a.delta) < 1e-4
        assert a.params["baseline"] == baseline and a.params["n_steps"] == 8


def test_ig_completeness_on_nonlinear_cnn():
    enc = tiny_image_encoder(dim=8)
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    out = attribute("ig", enc, RandomDirectionTarget(8, seed=0, n_directions=3), x,
                    baseline="blur", n_steps=64, internal_batch_size=50)
    for a in out:
        span = a.params["target_value"] - a.params["baseline_value"]
        err = abs(a.values.sum() - span)
        assert err < 0.05 * abs(span) + 1e-4
        assert abs(abs(a.delta) - err) < 1e-3 * abs(span) + 1e-5  # delta is that same error


def test_ig_batching_is_invariant_to_internal_batch_size():
    enc = tiny_image_encoder(dim=8)
    x = _pixels(3, 32)
    t = RandomDirectionTarget(8, n_directions=3)
    big = attribute("ig", enc, t, x, n_steps=6, internal_batch_size=64)
    small = attribute("ig", enc, t, x, n_steps=6, internal_batch_size=2)
    for a, b in zip(big, small, strict=True):
        np.testing.assert_allclose(a.values, b.values, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", ["ig", "ig_smooth", "layer_ig", "occlusion"])
def test_constant_input_with_same_baseline_gets_zero_attribution(method):
    enc = tiny_image_encoder(dim=8)
    x = torch.full((1, 3, 32, 32), 0.4)
    opts = {"baseline": "blur"}
    if method == "ig_smooth":
        opts |= {"stdev": 0.0, "n_samples": 2, "n_steps": 4}
    out = attribute(method, enc, RandomDirectionTarget(8), x, **opts)
    np.testing.assert_allclose(out[0].values, 0.0, atol=1e-5)


@pytest.mark.parametrize("kernel", [1, 3])
def test_planted_region_gets_most_attribution(region_encoder, square_mask, kernel):
    mask = square_mask(16, 3, 5, 6)
    enc = region_encoder(mask, dim=6, kernel=kernel)
    x = _pixels(3)
    target = ContentFocusTarget(enc(x))
    # A k×k conv also sees the ring of k // 2 pixels around the region: its receptive field.
    field = square_mask(16, 3 - kernel // 2, 5 - kernel // 2, 6 + 2 * (kernel // 2))
    for a in attribute("ig", enc, target, x, baseline="black", n_steps=16):
        assert mass_in_mask(a.values, field) > 0.999
        if kernel == 1:
            assert mass_in_mask(a.values, mask) > 0.8
    # The model-free control spreads its mass over the whole image.
    ctrl = attribute("input_x_blur", enc, target, x)
    assert np.mean([mass_in_mask(a.values, field) for a in ctrl]) < 0.5


def test_layer_methods_shapes_and_extras(region_encoder, square_mask):
    enc = tiny_image_encoder(dim=8)
    x = _pixels(2, 32)
    t = ContentFocusTarget(enc(x))
    for method in ("layer_ig", "gradcam", "similarity"):
        out = attribute(method, enc, t, x)
        assert [a.values.shape for a in out] == [(32, 32), (32, 32)]
        assert out[0].extras["layer_map"].shape == (8, 8)
        assert out[0].image.shape == (32, 32, 3) and out[0].image.dtype == np.uint8
        assert out[0].params["layer"] == "body"
    lig = attribute("layer_ig", enc, t, x, n_steps=32)
    for a in lig:  # completeness at the layer
        span = a.params["target_value"] - a.params["baseline_value"]
        assert abs(a.extras["layer_map"].sum() - span) < 0.05 * abs(span) + 1e-4
    sim = attribute("similarity", enc, t, x)
    assert sim[0].params["space"] == "pathway"
    assert np.all(np.abs(sim[0].extras["layer_map"]) <= 1 + 1e-5)  # cosines


def test_gradcam_on_token_layer_uses_patch_grid(region_encoder, square_mask):
    """A ViT-like layer emitting [B, 1 + h*w, C] tokens is mapped back onto its grid."""

    class TokenEncoder(region_encoder):
        def layer_to_map(self, output):
            if output.ndim == 3:
                b, n, c = output.shape
                return output[:, 1:].reshape(b, 4, 4, c).permute(0, 3, 1, 2)
            return output

    enc = TokenEncoder(square_mask(), dim=6)

    class Tokens(torch.nn.Module):
        def forward(self, fm):  # [B, C, 16, 16] → [B, 1 + 16, C] tokens on a 4x4 grid
            pooled = torch.nn.functional.avg_pool2d(fm, 4).flatten(2).transpose(1, 2)
            return torch.cat([pooled.mean(1, keepdim=True), pooled], dim=1)

    enc.tok = Tokens()
    enc.embed = lambda x: enc.tok(enc.body(x))[:, 1:].mean(1)  # type: ignore[method-assign]
    enc.feature_map = lambda x: enc.layer_to_map(enc.tok(enc.body(x)))  # type: ignore[method-assign]
    type(enc).feature_layer = property(lambda self: self.tok)  # type: ignore[assignment]
    x = _pixels(2)
    out = attribute("gradcam", enc, RandomDirectionTarget(6, n_directions=2), x)
    assert out[0].values.shape == (16, 16) and out[0].extras["layer_map"].shape == (4, 4)


def test_methods_report_bad_options_and_modalities():
    enc = tiny_image_encoder(dim=8)
    x = _pixels(1, 32)
    t = RandomDirectionTarget(8)
    with pytest.raises(ConfigError, match="n_steps"):
        attribute("ig", enc, t, x, n_steps=0)
    with pytest.raises(ConfigError, match="Did you mean 'n_steps'"):
        attribute("ig", enc, t, x, n_step=4)
    with pytest.raises(ConfigError, match="mean_pixel"):
        attribute("ig", enc, t, x, baseline="mean")
    with pytest.raises(ConfigError, match="Unknown image baseline"):
        attribute("ig", enc, t, x, baseline="grey")
    with pytest.raises(UnknownNameError, match="Did you mean"):
        attribute("ig_smoth", enc, t, x)
    text = tiny_text_encoder(dim=8)
    with pytest.raises(ConfigError, match="supports image"):
        attribute("gradcam", text, t, text.tokenize(["a red box"]))
    with pytest.raises(ConfigError, match="built for 2 items"):
        attribute("ig", enc, ContentFocusTarget(torch.ones(2, 8)), x)
    assert set(method_modalities("ig")) == {"image", "text"}
    assert {"ig", "ig_smooth", "layer_ig", "gradcam", "occlusion", "similarity",
            "input_x_blur"} <= set(ATTRIBUTIONS.names())


def test_large_completeness_error_warns():
    enc = tiny_image_encoder(dim=8)
    x = _pixels(1, 32)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        attribute("ig", enc, RandomDirectionTarget(8, seed=2), x, n_steps=1)
    # One Gauss-Legendre step on a ReLU net is a poor integral: the warning names the fix.
    msgs = [str(w.message) for w in rec if "completeness" in str(w.message)]
    assert msgs and "increase n_steps" in msgs[0]


def test_smoothgrad_is_seeded_and_leaves_global_rng_alone():
    enc = tiny_image_encoder(dim=8)
    x = _pixels(2, 32)
    t = RandomDirectionTarget(8)
    state = torch.get_rng_state()
    a = attribute("ig_smooth", enc, t, x, n_steps=4, n_samples=3, seed=5, internal_batch_size=4)
    assert torch.equal(state, torch.get_rng_state())
    b = attribute("ig_smooth", enc, t, x, n_steps=4, n_samples=3, seed=5, internal_batch_size=4)
    np.testing.assert_allclose(a[0].values, b[0].values, rtol=1e-4, atol=1e-6)
    assert a[0].delta is not None and a[0].params["n_samples"] == 3


def test_occlusion_of_linear_encoder_is_exact_per_window(region_encoder, square_mask):
    enc = region_encoder(square_mask(), dim=4, linear=True)
    t = RandomDirectionTarget(4, seed=1)
    x = _pixels(1)
    out = attribute("occlusion", enc, t, x, window=1, stride=1)
    # 1x1 windows, one per pixel (all channels): f(x) − f(x with pixel → 0) = pixel's IG.
    ig = attribute("ig", enc, t, x, n_steps=4)
    np.testing.assert_allclose(out[0].values, ig[0].values, atol=1e-5)


# -- text -----------------------------------------------------------------------------------
def test_text_ig_merges_word_pieces_and_keeps_completeness(piece_text):
    enc = piece_text()
    tok = enc.tokenize(["a playful kitten", "red hat"])
    target = RandomDirectionTarget(enc.dim, seed=1, n_directions=2)
    out = attribute("ig", enc, target, tok, n_steps=4, item_ids=["x", "y"])
    assert out[0].tokens == ["[CLS]", "a", "playful", "kitten", "[SEP]"]
    assert out[1].tokens == ["[CLS]", "red", "hat", "[SEP]"]
    assert out[0].params["raw_tokens"] == ["[CLS]", "a", "pla", "##yful", "kit", "##ten", "[SEP]"]
    assert out[0].params["special"] == [True, False, False, False, True]
    for a in out:
        assert a.values[0] == 0 and a.values[-1] == 0  # special tokens are kept in the baseline
        span = a.params["target_value"] - a.params["baseline_value"]
        assert abs(a.values.sum() - span) < 1e-4  # linear in the embeddings: exact
        assert abs(a.extras["token_values"].sum() - a.values.sum()) < 1e-5
    # "playful" = "pla" + "##yful"
    tv = out[0].extras["token_values"]
    assert out[0].values[2] == pytest.approx(tv[2] + tv[3], abs=1e-6)


@pytest.mark.parametrize("method", ["layer_ig", "occlusion", "ig_smooth"])
def test_text_methods_agree_with_ig_on_linear_text(piece_text, method):
    enc = piece_text()
    tok = enc.tokenize(["a playful kitten"])
    t = RandomDirectionTarget(enc.dim, seed=4)
    ig = attribute("ig", enc, t, tok, n_steps=4)[0]
    opts = {"stdev": 0.0, "n_samples": 2} if method == "ig_smooth" else {}
    other = attribute(method, enc, t, tok, **opts)[0]
    assert other.tokens == ig.tokens
    if method == "occlusion":  # pad-token ablation of a mean-pooled linear model ≠ IG in
        assert np.corrcoef(other.values[1:-1], ig.values[1:-1])[0, 1] > 0.5  # scale
    else:
        np.testing.assert_allclose(other.values, ig.values, atol=1e-4)


def test_tiny_text_and_input_control():
    enc = tiny_text_encoder(dim=8)
    tok = enc.tokenize(["a red box for sale"])
    out = attribute("input_x_blur", enc, RandomDirectionTarget(8), tok)
    assert out[0].tokens == ["a", "red", "box", "for", "sale"]
    assert np.all(out[0].values > 0)


@pytest.mark.parametrize(
    ("tokens", "words"),
    [
        (["[CLS]", "un", "##believ", "##able", "film", "[SEP]"],
         ["[CLS]", "unbelievable", "film", "[SEP]"]),
        (["<start_of_text>", "un", "believ", "able</w>", "film</w>", "<end_of_text>"],
         ["<start_of_text>", "unbelievable", "film", "<end_of_text>"]),
        (["▁un", "believable", "▁film"], ["unbelievable", "film"]),
        (["##odd", "start"], ["odd", "start"]),
    ],
)
def test_merge_tokens_rules(tokens, words):
    special = [t.startswith(("[", "<")) and t.endswith(("]", ">")) for t in tokens]
    got, vals, flags = merge_tokens(tokens, np.arange(len(tokens), dtype=float), special)
    assert got == words
    assert vals.sum() == pytest.approx(np.arange(len(tokens)).sum())
    assert flags == [w.startswith(("[", "<")) for w in words]


def test_deletion_auc_lower_for_ig_map_than_random_on_planted_case(region_encoder, square_mask):
    from befa_viz.metrics import deletion_auc

    mask = square_mask(16, 3, 5, 6)
    enc = region_encoder(mask, dim=6, kernel=1)
    x = _pixels(1)
    target = ContentFocusTarget(enc(x))
    ig = attribute("ig", enc, target, x, n_steps=16)[0]

    def f(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            t = torch.from_numpy(batch).float()
            return target(enc(t), torch.zeros(len(t), dtype=torch.long)).numpy()

    base = np.zeros_like(x[0].numpy())
    d_ig = deletion_auc(f, x[0].numpy(), base, np.abs(ig.values))
    d_rnd = deletion_auc(f, x[0].numpy(), base, np.random.default_rng(0).random((16, 16)))
    assert d_ig < d_rnd - 0.2
