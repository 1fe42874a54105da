"""Benchmark scores of padded (portrait) maps: masks at the photo's aspect, pad excluded."""

from __future__ import annotations

import numpy as np
import pytest

from befa_viz.attribution.result import Attribution
from befa_viz.benchmark import score_image_maps
from befa_viz.benchmark.scoring import _mask_at


def _att(values: np.ndarray, box=(0, 5, 32, 21)) -> Attribution:
    return Attribution("p", "image", "gradcam", "t", values,
                       image=np.zeros((32, 32, 3), np.uint8),
                       params={"content_box": list(box), "source_size": [54, 36]})


def test_mask_at_places_a_photo_mask_in_the_content_box():
    photo = np.zeros((54, 36), bool)
    photo[:, 18:] = True  # the right half of the photo
    a = _att(np.ones((32, 32)))
    m = _mask_at(photo, (32, 32), a)
    assert not m[:, :5].any() and not m[:, 26:].any()
    assert m[:, 16:26].all() and not m[:, 5:15].any()  # the right half of the box
    # no box: the whole map, as for square synthetic-shop masks
    assert _mask_at(photo, (32, 32)).shape == (32, 32) and _mask_at(photo, (32, 32))[:, 0].sum() == 0


def test_pad_mass_is_not_scored_and_chance_is_the_photo_share():
    photo = np.zeros((54, 36), bool)
    photo[10:40, 9:27] = True
    mask_in_map = _mask_at(photo, (32, 32), _att(np.ones((32, 32))))
    good = np.where(mask_in_map, 1.0, 0.0)
    padded = good.copy()
    padded[:, :5] = 50.0  # huge pad mass
    ctrl = np.ones((32, 32))
    ctrl[:, 26:] = 50.0
    rows = score_image_maps([_att(good), _att(padded)], {"product": np.stack([photo, photo])},
                            controls={"random_map": [ctrl, ctrl]})
    for r in rows:
        assert r["mass_in_mask"] == pytest.approx(1.0)
        assert r["pointing"] == 1.0 and r["drift"] == 0.0
        assert r["chance"] == pytest.approx(mask_in_map[:, 5:26].mean())
        assert r["margin_random_map"] == pytest.approx(1.0 - mask_in_map[:, 5:26].mean())
