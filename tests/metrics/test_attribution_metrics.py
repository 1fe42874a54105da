"""Attribution metrics on hand-made maps: drift/omission bounds, monotonicity, AUCs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from befa_viz.metrics import (
    deletion_auc,
    drift,
    drift_omission,
    insertion_auc,
    localisation_margin,
    mass_in_mask,
    omission,
    perturbation_auc,
    pointing_game,
    relevant_region,
    resize_map,
    spearman,
    top_mass_region,
)


def _mask(top: int = 2, left: int = 2, side: int = 4, size: int = 10) -> np.ndarray:
    m = np.zeros((size, size), dtype=bool)
    m[top: top + side, left: left + side] = True
    return m


def _blob(cy: float, cx: float, size: int = 10, width: float = 1.5) -> np.ndarray:
    y, x = np.mgrid[:size, :size]
    return np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * width**2))


@pytest.mark.parametrize(
    "relevance",
    [_mask(), _blob(3, 3), _mask(0, 0, 10)[:, :5]],
    ids=["mask", "continuous", "half-image"],
)
def test_identical_maps_score_zero(relevance):
    a = relevance.astype(float)
    assert drift(a, relevance) == 0.0
    assert omission(a, relevance) == 0.0
    assert drift(-a, relevance) == 0.0  # signs do not matter


@pytest.mark.parametrize(
    ("a", "r"),
    [
        (_mask(0, 0, 3).astype(float), _mask(6, 6, 3)),
        (_blob(1.5, 1.5, width=0.7), _blob(8, 8, width=0.7)),
        ((~_mask()).astype(float), _mask()),
    ],
    ids=["masks", "blobs", "complement"],
)
def test_disjoint_maps_score_one(a, r):
    assert drift(a, r) == pytest.approx(1.0)
    assert omission(a, r) == pytest.approx(1.0)


def test_drift_and_omission_grow_as_mass_moves_away():
    r = _mask(0, 0, 5)  # top-left 5x5 square of a 10x10 image
    inside, outside = _mask(0, 0, 5).astype(float), _mask(5, 5, 5).astype(float)
    shares = np.linspace(0, 1, 11)
    d = [drift((1 - s) * inside + s * outside, r) for s in shares]
    o = [omission((1 - s) * inside + s * outside, r) for s in shares]
    assert d[0] == 0.0 and d[-1] == 1.0 and o[0] == 0.0 and o[-1] == 1.0
    assert all(np.diff(d) >= -1e-12) and all(np.diff(o) >= -1e-12)
    # A heatmap that covers part of the mask omits the rest, with no drift.
    part = np.zeros((10, 10))
    part[0:5, 0:2] = 1.0
    assert drift(part, r) == 0.0 and omission(part, r) == pytest.approx(0.6)


def test_blob_sliding_off_the_relevant_region_is_monotone():
    r = _blob(4.5, 4.5)
    d = [drift(_blob(4.5, 4.5 + s), r) for s in range(6)]
    o = [omission(_blob(4.5, 4.5 + s), r) for s in range(6)]
    assert d[0] == 0.0 and o[0] == 0.0
    assert all(np.diff(d) >= 0) and all(np.diff(o) >= 0) and d[-1] > 0.9


def test_regions_and_edge_cases():
    assert top_mass_region(np.array([4.0, 3, 2, 1]), 0.5).tolist() == [True, True, False, False]
    assert top_mass_region(np.ones(4), 0.3).all()  # ties are all included
    assert np.array_equal(relevant_region(_mask()), _mask())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isnan(drift(np.zeros((10, 10)), _mask()))
        assert np.isnan(omission(np.ones((10, 10)), np.zeros((10, 10), bool)))
    with pytest.raises(ValueError, match="resize_map"):
        drift(np.ones((4, 4)), _mask())
    with pytest.raises(ValueError, match="q must be"):
        drift(np.ones((10, 10)), _mask(), q=0)
    out = drift_omission(_mask().astype(float), _mask(), q=0.7)
    assert out == {"drift": 0.0, "omission": 0.0, "q": 0.7}


def test_mass_pointing_spearman_margin():
    m = _mask()
    a = np.zeros((10, 10))
    a[3, 3], a[9, 9] = -3.0, 1.0
    assert mass_in_mask(a, m) == 0.75
    assert pointing_game(a, m)
    assert not pointing_game(np.where(m, 0.0, 1.0) + np.eye(10) * 0.5, m)
    b = np.zeros((10, 10))
    b[7, 1] = 1.0
    assert pointing_game(b, _mask(8, 0, 2), tolerance=1)
    x = np.arange(12.0)
    assert spearman(x, x**3) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    assert spearman(np.array([1.0, 1, 2]), np.array([1.0, 2, 3])) == pytest.approx(0.8660254)
    assert np.isnan(spearman(np.ones(5), x[:5]))
    assert localisation_margin(a, m, {"random": np.ones((10, 10))}) == pytest.approx(0.59)


def test_resize_map():
    m = _mask(0, 0, 5)
    big = resize_map(m, (20, 20))
    assert big.dtype == bool and big[:10, :10].all() and not big[10:, :].any()
    f = resize_map(np.arange(4.0).reshape(2, 2), (4, 4))
    assert f.shape == (4, 4) and f[0, 0] == 0.0 and f[-1, -1] == 3.0


def _planted():
    """f(x) = mean of x over a region: only the region matters."""
    region = _mask(2, 2, 4)

    def f(batch: np.ndarray) -> np.ndarray:
        return batch[..., region].mean(axis=-1).sum(axis=-1)  # [n, 3, H, W] → [n]

    x = np.random.default_rng(0).uniform(0.5, 1.0, size=(3, 10, 10))
    return f, x, region


def test_deletion_and_insertion_prefer_the_true_map():
    f, x, region = _planted()
    base = np.zeros_like(x)
    rnd = np.random.default_rng(1).random((10, 10))
    true_map = region.astype(float)
    d_true, d_rnd = deletion_auc(f, x, base, true_map), deletion_auc(f, x, base, rnd)
    i_true, i_rnd = insertion_auc(f, x, base, true_map), insertion_auc(f, x, base, rnd)
    assert d_true < 0.15 < d_rnd and i_true > 0.85 > i_rnd
    # Batch size does not change the curve.
    assert deletion_auc(f, x, base, rnd, batch_size=3) == pytest.approx(d_rnd)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isnan(deletion_auc(f, x, x, rnd))  # f(x) = f(baseline)
    with pytest.raises(ValueError, match="trailing"):
        deletion_auc(f, x, base, np.ones((5, 5)))


def test_auc_is_nan_not_wild_when_the_curve_overshoots_a_tiny_span():
    """f(x) − f(b) tiny next to the curve's swing: NaN with a warning, raw numbers kept."""
    x = np.ones((1, 4, 4))
    region = np.zeros((4, 4), bool)
    region[:2] = True

    def f(batch: np.ndarray) -> np.ndarray:  # deleting the top half first raises f by 1,
        top = batch[:, 0, :2].mean(axis=(1, 2))  # deleting the rest brings it back to f(x)
        bottom = batch[:, 0, 2:].mean(axis=(1, 2))
        return 2.0 - top + bottom * 1.001  # f(x) = 2.001, f(0) = 2.0

    amap = region.astype(float) + 0.5  # top half first
    with pytest.warns(UserWarning, match="overshoot"):
        d = deletion_auc(f, x, 0.0, amap, n_steps=4)
    assert np.isnan(d)
    with pytest.warns(UserWarning, match="overshoot"):
        r = perturbation_auc(f, x, 0.0, amap, n_steps=4)
    assert np.isnan(r["auc"]) and r["resolution"] < 0.01 and r["f_x"] == pytest.approx(2.001)
    assert r["raw_auc"] == pytest.approx(np.trapezoid([2.001, 2.501, 3.001, 2.5005, 2.0], dx=0.25))
    # without the guard the same curve gives the wild number the guard refuses
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wild = deletion_auc(f, x, 0.0, amap, n_steps=4, min_resolution=0.0)
    assert wild > 100
    # a curve within its ends keeps its normalised AUC in [0, 1] and resolution 1
    g, xp, reg = _planted()
    r = perturbation_auc(g, xp, np.zeros_like(xp), reg.astype(float), insert=True)
    assert r["resolution"] == pytest.approx(1.0) and 0.85 < r["auc"] <= 1.0
    with pytest.raises(ValueError, match="min_resolution"):
        perturbation_auc(g, xp, 0.0, reg.astype(float), min_resolution=2.0)


# ---- content box: the pad of a padded (portrait) input is excluded from every score ---------


def _padded(size: int = 12, box: tuple[int, int, int, int] = (0, 3, 12, 6)) -> tuple:
    """A map of a portrait photo padded left and right; the garment mask inside the box."""
    top, left, h, w = box
    mask = np.zeros((size, size), bool)
    mask[top + 3: top + 9, left + 1: left + 5] = True
    return box, mask


def test_all_mass_in_the_pad_scores_as_an_all_zero_map():
    from befa_viz.metrics import crop_box

    box, mask = _padded()
    in_pad = np.zeros((12, 12))
    in_pad[:, :3] = 5.0  # everything in the left pad
    zero = np.zeros((12, 12))
    with pytest.warns(UserWarning, match="undefined"):
        assert np.isnan(drift(in_pad, mask, box=box))
    with pytest.warns(UserWarning, match="undefined"):
        assert np.isnan(omission(in_pad, mask, box=box))
    assert np.isnan(mass_in_mask(in_pad, mask, box=box))
    assert np.isnan(mass_in_mask(zero, mask, box=box))
    assert pointing_game(in_pad, mask, box=box) == pointing_game(zero, mask, box=box)
    assert np.isnan(spearman(in_pad, mask.astype(float), box=box))
    assert crop_box(in_pad, box).sum() == 0
    # without the box the pad mass is scored (as drift), which is what the box prevents
    assert drift(in_pad, mask) == 1.0


def test_pad_mass_does_not_change_the_scores_of_the_photo():
    box, mask = _padded()
    a = np.zeros((12, 12))
    a[mask] = 1.0
    a[2, 4] = 0.5  # a little drift inside the photo
    noisy = a.copy()
    noisy[:, :3] = 100.0  # huge mass in the pads
    noisy[:, 9:] = 100.0
    for fn in (drift, omission):
        assert fn(noisy, mask, box=box) == fn(a, mask, box=box)
    assert mass_in_mask(noisy, mask, box=box) == pytest.approx(mass_in_mask(a, mask))
    assert pointing_game(noisy, mask, box=box)
    assert not pointing_game(noisy, mask)  # the pad wins without the box
    assert drift_omission(noisy, mask, box=box) == drift_omission(a, mask)
    ctrl = np.ones((12, 12))
    assert localisation_margin(noisy, mask, [ctrl], box=box) == pytest.approx(
        mass_in_mask(a, mask) - mask[:, 3:9].mean())


def test_box_outside_the_map_is_an_error():
    _, mask = _padded()
    with pytest.raises(ValueError, match="does not lie inside"):
        drift(np.ones((12, 12)), mask, box=(0, 8, 12, 6))
    with pytest.raises(ValueError, match="top, left, height, width"):
        mass_in_mask(np.ones((12, 12)), mask, box=(0, 3, 12))


def test_perturbation_curves_move_only_the_photo():
    box, mask = _padded()
    top, left, h, w = box
    rng = np.random.default_rng(0)
    x = rng.random((3, 12, 12))
    seen: list[np.ndarray] = []

    def f(batch: np.ndarray) -> np.ndarray:
        seen.append(batch.copy())
        return batch[:, :, :, left: left + w].reshape(len(batch), -1).sum(axis=1)

    in_pad = np.zeros((12, 12))
    in_pad[:, :3] = 1.0
    d_pad = perturbation_auc(f, x, 0.0, in_pad, n_steps=6, box=box)
    pads = np.concatenate([b[..., :left] for b in seen] + [b[..., left + w:] for b in seen],
                          axis=-1)
    assert np.allclose(pads, np.concatenate([x[..., :left], x[..., left + w:]], axis=-1))
    # all mass in the pad orders the photo's pixels as an all-zero map does
    assert d_pad == perturbation_auc(f, x, 0.0, np.zeros((12, 12)), n_steps=6, box=box)
    # the photo is deleted fully at the last step (the curve's ends are f(x) and f(photo → b))
    assert d_pad["f_baseline"] == pytest.approx(0.0)
    good = np.where(mask, 1.0, 0.0) + x.sum(axis=0) * 1e-3
    ins = perturbation_auc(f, x, 0.0, good, insert=True, n_steps=6, box=box)
    assert ins["f_x"] == pytest.approx(f(x[None])[0])
    assert deletion_auc(f, x, 0.0, good, n_steps=6, box=box) < 0.5 < \
        insertion_auc(f, x, 0.0, good, n_steps=6, box=box)


def test_fit_to_box_places_a_photo_mask_in_the_padded_map():
    from befa_viz.metrics import fit_to_box

    photo = np.zeros((54, 36), bool)  # a 36x54 portrait's garment mask at the photo's size
    photo[10:40, 9:27] = True
    m = fit_to_box(photo, (32, 32), (0, 5, 32, 21))
    assert m.dtype == bool and m.shape == (32, 32)
    assert not m[:, :5].any() and not m[:, 26:].any()  # nothing on the pad
    assert np.array_equal(m[:, 5:26], resize_map(photo, (32, 21)))
    cont = fit_to_box(photo.astype(float), (32, 32), (0, 5, 32, 21))
    assert cont.dtype == np.float64 and cont[:, :5].sum() == 0
    # no box (or the whole map): a plain resize, as before
    assert np.array_equal(fit_to_box(photo, (32, 32)), resize_map(photo, (32, 32)))
    assert np.array_equal(fit_to_box(photo, (32, 32), (0, 0, 32, 32)),
                          resize_map(photo, (32, 32)))
