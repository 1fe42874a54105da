"""Image heatmaps: normalisation, shared colour scales, overlays and grids (math, not pixels)."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
from matplotlib.figure import Figure

from befa_viz.attribution.result import Attribution
from befa_viz.errors import ConfigError, DataError
from befa_viz.testing import synthetic_attribution as synth
from befa_viz.viz import (
    figure_scales,
    grid_figure,
    heatmap_figure,
    magnitude_map,
    overlay,
    pair_figure,
    shared_vmax,
)


def _colourbar_vmaxes(fig: Figure) -> list[float]:
    """vmax of every colour bar actually drawn in the figure."""
    return [ax._colorbar.norm.vmax for ax in fig.axes if hasattr(ax, "_colorbar")]


def _with_values(att: Attribution, values: np.ndarray) -> Attribution:
    return Attribution(att.item_id, att.modality, att.method, att.target, values,
                       image=att.image, params=att.params)


@pytest.fixture(scope="module")
def pair() -> tuple[Attribution, Attribution]:
    return synth(0, "without"), synth(0, "with")


def test_shared_pair_uses_one_vmax_from_the_union(pair):
    without, with_ = pair
    fig = pair_figure(without, with_, normalise="mean")
    a, b = figure_scales(fig)
    union = np.concatenate([magnitude_map(without).ravel(), magnitude_map(with_).ravel()])
    assert a.vmax == b.vmax == pytest.approx(np.percentile(union, 99))
    assert a.shared and b.shared and a.percentile == 99
    assert a.vmax == pytest.approx(shared_vmax([without, with_]))
    assert _colourbar_vmaxes(fig) == [pytest.approx(a.vmax)]  # one colour bar, same scale


def test_per_image_scaling_differs_and_matches_each_map(pair):
    without, with_ = pair
    fig = pair_figure(without, with_, shared_scale=False, normalise="mean")
    a, b = figure_scales(fig)
    va = np.percentile(magnitude_map(without), 99)
    vb = np.percentile(magnitude_map(with_), 99)
    assert (a.vmax, b.vmax) == (pytest.approx(va), pytest.approx(vb))
    assert a.vmax != pytest.approx(b.vmax)
    assert not a.shared
    assert _colourbar_vmaxes(fig) == [pytest.approx(va), pytest.approx(vb)]
    shared = figure_scales(pair_figure(without, with_, normalise="mean"))[0].vmax
    assert min(va, vb) <= shared <= max(va, vb)


def test_fixed_vmax_overrides_the_percentile(pair):
    fig = pair_figure(*pair, vmax=2.5)
    assert [s.vmax for s in figure_scales(fig)] == [2.5, 2.5]
    assert figure_scales(fig)[0].percentile is None
    assert "fixed vmax 2.5" in figure_scales(fig)[0].describe()


def test_caption_states_the_normalisation(pair):
    fig = pair_figure(*pair, percentile=95)
    text = " ".join(t.get_text() for t in fig.texts)
    assert "95th percentile of both maps" in text
    assert "in the target's units" in text and "÷ its mean" not in text  # absolute by default
    assert "32 steps" in text and "baseline blur" in text
    text = " ".join(t.get_text() for t in pair_figure(*pair, normalise="mean").texts)
    assert "÷ its mean" in text


def test_magnitude_map_mean_normalisation_and_scale_invariance():
    a = synth(1, "with")
    m = magnitude_map(a)
    assert m.min() >= 0 and m.mean() == pytest.approx(1.0)
    raw = magnitude_map(a, normalise="none")
    np.testing.assert_allclose(raw, np.abs(a.values))
    scaled = _with_values(a, a.values * -10)
    np.testing.assert_allclose(magnitude_map(scaled), m)
    np.testing.assert_array_equal(overlay(scaled), overlay(a))


def test_small_maps_are_upsampled_bilinearly_to_the_image():
    a = synth(0, "with", grid=8)
    assert a.values.shape == (8, 8)
    m = magnitude_map(a, normalise="none")
    assert m.shape == (32, 32)
    ramp = _with_values(a, np.tile(np.arange(8.0), (8, 1)))  # increases left to right
    r = magnitude_map(ramp, normalise="none")
    assert np.all(np.diff(r, axis=1) >= -1e-6)
    assert len(np.unique(np.round(r[0], 5))) > 8  # interpolated, not blocky nearest
    const = _with_values(a, np.full((4, 4), 3.0))
    np.testing.assert_allclose(magnitude_map(const, normalise="none"), 3.0, rtol=1e-6)


def test_overlay_of_a_zero_map_is_the_base_image():
    a = synth(2, "with")
    zero = _with_values(a, np.zeros_like(a.values))
    with pytest.warns(UserWarning, match="all zero"):
        colour = overlay(zero, base="colour")
    np.testing.assert_array_equal(colour, a.image)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grey = overlay(zero, base="grey")
    lum = a.image.astype(float) / 255 @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(grey[..., 0] / 255, lum, atol=1 / 255)
    assert (grey[..., 0] == grey[..., 2]).all()


def test_overlay_blends_with_opacity_proportional_to_the_map():
    import matplotlib

    a = synth(0, "with")
    m = magnitude_map(a)
    vmax = float(np.percentile(m, 99))
    out = overlay(a, base="colour", alpha=0.6, cmap="viridis").astype(float) / 255
    img = a.image.astype(float) / 255
    t = np.clip(m / vmax, 0, 1)[..., None]
    heat = np.asarray(matplotlib.colormaps["viridis"](t[..., 0]))[..., :3]
    np.testing.assert_allclose(out, (1 - 0.6 * t) * img + 0.6 * t * heat, atol=1 / 255)
    assert overlay(a).dtype == np.uint8 and overlay(a).shape == (32, 32, 3)


def test_heatmap_figure_is_a_plain_figure_with_a_colour_bar():
    fig = heatmap_figure(synth(0))
    assert type(fig) is Figure
    assert len(_colourbar_vmaxes(fig)) == 1
    assert _colourbar_vmaxes(fig)[0] == pytest.approx(figure_scales(fig)[0].vmax)


def test_difference_panel_adds_a_symmetric_colour_bar(pair):
    fig = pair_figure(*pair, difference=True)
    bars = [ax._colorbar.norm for ax in fig.axes if hasattr(ax, "_colorbar")]
    assert len(bars) == 2 and bars[1].vmin == -bars[1].vmax


@pytest.mark.parametrize("scale", ["row", "all", "each"])
def test_grid_scales(scale):
    rows = [[synth(i, "without") for i in range(3)], [synth(i, "with") for i in range(3)]]
    fig = grid_figure(rows, scale=scale)
    v = np.array([s.vmax for s in figure_scales(fig)]).reshape(2, 3)
    maps = [[magnitude_map(a) for a in r] for r in rows]
    if scale == "all":
        expect = np.percentile(np.concatenate([m.ravel() for r in maps for m in r]), 99)
        np.testing.assert_allclose(v, expect)
    elif scale == "row":
        for r in range(2):
            np.testing.assert_allclose(
                v[r], np.percentile(np.concatenate([m.ravel() for m in maps[r]]), 99))
    else:
        np.testing.assert_allclose(v, [[np.percentile(m, 99) for m in r] for r in maps])


def test_bad_input_raises_clear_errors(pair):
    without, with_ = pair
    text = synth(0, "with", "text")
    with pytest.raises(DataError, match="modality 'text'"):
        overlay(text)
    with pytest.raises(DataError, match="NaN"):
        overlay(_with_values(with_, np.full((32, 32), np.nan)))
    with pytest.raises(DataError, match="expected \\[H, W\\]"):
        overlay(_with_values(with_, np.zeros((3, 32, 32))))
    with pytest.raises(DataError, match="'i0' and 'i1'"):
        pair_figure(without, synth(1, "with"))
    with pytest.raises(ConfigError, match="Did you mean 'inferno'"):
        overlay(with_, cmap="infernoo")
    with pytest.raises(ConfigError, match="percentile"):
        pair_figure(without, with_, percentile=0)
    with pytest.raises(ConfigError, match="vmax"):
        overlay(with_, vmax=-1)
    with pytest.raises(DataError, match="same length"):
        grid_figure([[without, with_], [without]])
    no_image = Attribution("i0", "image", "ig", "t", with_.values)
    with pytest.raises(DataError, match="no image"):
        overlay(no_image)
    assert figure_scales(heatmap_figure(no_image))  # the map alone still draws


def test_viz_imports_neither_torch_nor_pyplot():
    code = (
        "import io, sys, types, numpy as np\n"
        "import befa_viz.viz as v\n"
        "a = types.SimpleNamespace(item_id='x', modality='image', method='m', target='t',\n"
        "    values=np.random.rand(8, 8), image=np.zeros((16, 16, 3), np.uint8), tokens=None,\n"
        "    delta=None, params={}, extras={})\n"
        "v.pair_figure(a, a).savefig(io.BytesIO(), format='png')\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ---- padded portrait inputs: drawn on the photo alone, at its own aspect ---------------------


def _padded_attribution(source=(540, 360)) -> Attribution:
    """A 32x32 map of a portrait padded into its content box [0, 5, 32, 21]; hot pad."""
    img = np.full((32, 32, 3), 200, np.uint8)
    img[:, 5:26] = 90  # the photo
    values = np.ones((32, 32))
    values[:, :5] = 1e3  # the pad: huge values that must neither show nor set the scale
    values[:, 26:] = 1e3
    values[10:20, 10:20] = 4.0
    params = {"content_box": [0, 5, 32, 21], "resize": "pad"}
    if source is not None:
        params["source_size"] = list(source)
    return Attribution("p1", "image", "synthetic", "t", values, image=img, params=params)


def test_overlay_of_a_padded_input_has_the_photo_aspect_and_no_pad():
    from befa_viz.viz import display_shape

    a = _padded_attribution()
    assert display_shape(a) == (32, 21)  # 540x360 → 2:3
    out = overlay(a, base="colour")
    assert out.shape == (32, 21, 3)
    m = magnitude_map(a, normalise="none")
    assert m.shape == (32, 21) and m.max() == pytest.approx(4.0)  # the pad's 1e3 is gone
    assert magnitude_map(a).mean() == pytest.approx(1.0)  # normalised over the photo only
    # an unpadded (square) attribution is drawn as before
    sq = synth(0)
    assert overlay(sq).shape == (32, 32, 3) and display_shape(sq) == (32, 32)


def test_padded_panel_follows_the_source_aspect_and_a_bad_box_is_named():
    a = _padded_attribution(source=(60, 30))  # 1:2 photo, box 32x21 → resampled to 32x16
    assert overlay(a).shape == (32, 16, 3)
    fig = heatmap_figure(a)
    heat = [ax for ax in fig.axes if ax.images and not hasattr(ax, "_colorbar")]
    assert heat and all(ax.images[0].get_array().shape[:2] == (32, 16) for ax in heat)
    bad = _padded_attribution()
    bad.params["content_box"] = [0, 20, 32, 21]
    with pytest.raises(DataError, match="p1.*content_box"):
        overlay(bad)
