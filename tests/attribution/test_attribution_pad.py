"""Portrait photos through a padded encoder: content boxes recorded, kept, and honoured."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from befa_viz.attribution import Attribution, explain, explain_pair, sanity_check
from befa_viz.attribution.cache import AttributionCache, AttributionKey
from befa_viz.cache import Cache
from befa_viz.errors import ConfigError
from befa_viz.metrics import fit_to_box, mass_in_mask
from befa_viz.testing import tiny_image_encoder


def _portraits(n: int = 2) -> tuple[list[Image.Image], np.ndarray]:
    """Light 36x54 packshots with a dark garment, and the garment masks at the photo's size."""
    rng = np.random.default_rng(0)
    images, masks = [], np.zeros((n, 54, 36), bool)
    for i in range(n):
        arr = rng.integers(230, 245, size=(54, 36, 3)).astype(np.uint8)
        arr[12 + i: 42, 8: 28 - i] = (30 + 20 * i, 60, 140)
        masks[i, 12 + i: 42, 8: 28 - i] = True
        images.append(Image.fromarray(arr))
    return images, masks


def test_explain_records_the_content_box_and_it_survives_save_and_cache(tmp_path):
    images, _ = _portraits()
    out = explain(tiny_image_encoder(), None, images, target="content_focus", method="gradcam",
                  item_ids=["a", "b"])
    for a in out:
        assert a.values.shape == (32, 32)
        assert a.params["content_box"] == [0, 5, 32, 21]
        assert a.params["source_size"] == [54, 36] and a.params["resize"] == "pad"
    back = Attribution.load(out[0].save(tmp_path / "a.npz"))
    assert back.params["content_box"] == [0, 5, 32, 21]
    ac = AttributionCache(Cache(tmp_path / "cache"))
    k = AttributionKey("w", "d", "tiny:cnn", "e", "f", "a", "image", "t", "gradcam", False)
    ac.put(k, out[0])
    got = ac.get(k)
    assert got is not None and got.params["content_box"] == [0, 5, 32, 21]
    assert got.params["source_size"] == [54, 36]


def test_squash_and_tensor_inputs_have_full_or_given_boxes():
    images, _ = _portraits(1)
    enc = tiny_image_encoder().set_resize("squash")
    a = explain(enc, None, images, target="content_focus", method="gradcam")[0]
    assert a.params["content_box"] == [0, 0, 32, 32] and a.params["resize"] == "squash"
    pad = tiny_image_encoder()
    px = pad.load_pixels(images)
    b = explain(pad, None, px, target="content_focus", method="gradcam")[0]
    assert "content_box" not in b.params  # pixels carry no sizes: whole map, as documented
    c = explain(pad, None, px, target="content_focus", method="gradcam",
                content_boxes=[(0, 5, 32, 21)])[0]
    assert c.params["content_box"] == [0, 5, 32, 21]
    with pytest.raises(ConfigError, match="inside the 32x32 input"):
        explain(pad, None, px, target="content_focus", method="gradcam",
                content_boxes=[(0, 20, 32, 21)])


def test_pad_is_excluded_from_the_scores_of_a_real_map():
    images, masks = _portraits(1)
    a = explain(tiny_image_encoder(), None, images, target="content_focus", method="ig",
                n_steps=64, baseline="black")[0]
    box = a.params["content_box"]
    mask = fit_to_box(masks[0], a.values.shape, box)
    assert not mask[:, :5].any() and mask.any()
    v = np.abs(a.values)
    assert v[:, :5].sum() > 0  # a black baseline attributes to the pad pixels too ...
    expected = v[mask].sum() / v[:, 5:26].sum()
    assert mass_in_mask(a.values, mask, box=box) == pytest.approx(expected)  # ... not scored
    assert mass_in_mask(a.values, mask) < expected


def test_explain_pair_and_sanity_keep_the_boxes(toy_vbpr):
    enc, ds, plain, adapted = toy_vbpr
    images, _ = _portraits(2)
    w, a = explain_pair(enc, plain, adapted, images, [0, 1], target="behaviour_alignment",
                        method="gradcam")
    for r in w + a:
        assert r.params["content_box"] == [0, 5, 32, 21] and r.params["source_size"] == [54, 36]
    rep = sanity_check(enc, None, images, target="content_focus", method="gradcam",
                       controls=("target", "input"))
    assert set(rep.control_passes) == {"target", "input"}
