"""Resize modes of image encoders: pad (aspect kept), squash, crop; content boxes; store keys."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from befa_viz.cache import Cache
from befa_viz.encoders import content_box, create_encoder
from befa_viz.encoders.store import encode_catalog
from befa_viz.errors import ConfigError
from befa_viz.testing import tiny_image_encoder, toy_dataset


def _portrait(h: int = 54, w: int = 36, seed: int = 0) -> tuple[Image.Image, np.ndarray]:
    """A light packshot-like portrait: near-white background, a dark garment in the middle."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(235, 245, size=(h, w, 3)).astype(np.uint8)
    arr[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = (40, 60, 120)
    return Image.fromarray(arr), arr


def test_content_box_centres_the_longer_side():
    assert content_box(540, 360, 224) == (0, 37, 224, 149)
    assert content_box(360, 540, 224) == (37, 0, 149, 224)
    assert content_box(138, 92, 224) == (0, 37, 224, 149)  # MovieLens posters
    assert content_box(50, 50, 32) == (0, 0, 32, 32)
    for mode in ("squash", "crop"):
        assert content_box(540, 360, 224, mode) == (0, 0, 224, 224)
    with pytest.raises(ConfigError, match="resize mode"):
        content_box(10, 10, 8, "stretch")


def test_square_image_pixels_identical_in_pad_and_squash():
    rng = np.random.default_rng(1)
    im = Image.fromarray(rng.integers(0, 256, size=(40, 40, 3), dtype=np.uint8))
    pad = tiny_image_encoder()
    assert pad.resize_mode == "pad"  # the default
    for fill in ("edge", "mean"):
        pad.set_resize("pad", fill)
        squash = tiny_image_encoder().set_resize("squash")
        assert torch.equal(pad.load_pixels([im]), squash.load_pixels([im]))
        assert pad.content_boxes([im]) == [(0, 0, 32, 32)]


def test_pad_keeps_the_aspect_and_fills_with_the_edge_colour():
    im, arr = _portrait()
    enc = tiny_image_encoder()  # 32 px, pad + edge
    (top, left, h, w), = enc.content_boxes([im])
    assert (top, left, h, w) == (0, 5, 32, 21)
    x = enc.load_pixels([im])[0]  # [3, 32, 32]
    # the photo inside the box is the aspect-preserving resize, undistorted
    ref = np.asarray(im.resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32) / 255
    assert np.allclose(x[:, top: top + h, left: left + w].permute(1, 2, 0).numpy(), ref, atol=1e-6)
    # the pad is one colour: the median of the photo's left and right edges (light background)
    pad = torch.cat([x[:, :, :left].reshape(3, -1), x[:, :, left + w:].reshape(3, -1)], dim=1)
    edges = np.concatenate([ref[:, 0], ref[:, -1]])
    assert torch.allclose(pad, torch.tensor(np.median(edges, axis=0)).float().view(3, 1),
                          atol=1e-6)
    assert float(pad.min()) > 0.9
    # mean fill: the encoder's mean, i.e. zero after normalisation
    enc.set_resize("pad", "mean")
    xm = enc.load_pixels([im])
    assert torch.allclose(enc.normalize(xm)[0, :, :, :left], torch.zeros(3, 32, left), atol=1e-6)


def test_crop_and_squash_fill_the_square():
    im, _ = _portrait()
    crop = tiny_image_encoder().set_resize("crop")
    squash = tiny_image_encoder().set_resize("squash")
    xc, xs = crop.load_pixels([im]), squash.load_pixels([im])
    assert xc.shape == xs.shape == (1, 3, 32, 32)
    assert crop.content_boxes([im]) == squash.content_boxes([im]) == [(0, 0, 32, 32)]
    assert not torch.equal(xc, xs)
    # crop keeps the aspect: the central 36x36 of the photo scaled to 32 px
    _, arr = _portrait()
    big = np.asarray(Image.fromarray(arr).resize((32, 48), Image.Resampling.BICUBIC))
    assert np.allclose(xc[0].permute(1, 2, 0).numpy(), big[8:40] / 255, atol=1e-6)


def test_mode_is_in_preprocessing_and_fingerprint():
    pad, squash = tiny_image_encoder(), tiny_image_encoder().set_resize("squash")
    mean = tiny_image_encoder().set_resize("pad", "mean")
    assert pad.preprocessing()["resize"] == "pad" and pad.preprocessing()["pad_fill"] == "edge"
    # squash keeps its description from before pad existed, so its stores keep their keys
    assert squash.preprocessing() == {"size": 32, "mean": [0.5] * 3, "std": [0.25] * 3,
                                      "resize": "squash", "interpolation": "bicubic"}
    assert len({pad.fingerprint(), squash.fingerprint(), mean.fingerprint()}) == 3
    with pytest.raises(ConfigError, match="pad fill"):
        pad.set_resize("pad", "black")
    with pytest.raises(ConfigError, match="image encoders only"):
        create_encoder("tiny:text", resize="pad")
    assert create_encoder("tiny:cnn", resize="crop").preprocessing()["resize"] == "crop"


def test_feature_store_key_changes_with_mode(tmp_path):
    ds = toy_dataset(folder=tmp_path / "images")
    cache = Cache(tmp_path / "features")

    def enc(**kw):
        return encode_catalog(ds.catalog, create_encoder("tiny:cnn", **kw),
                              dataset_fingerprint=ds.fingerprint(), cache=cache,
                              dataset_name="toy")

    squash = enc(resize="squash")
    pad = enc(resize="pad")
    assert pad.path != squash.path and pad.manifest["reused"] is False  # not silently reused
    assert pad.manifest["preprocessing"]["resize"] == "pad"
    assert enc(resize="squash").manifest["reused"] is True  # the old store stays valid
    assert enc(resize="pad", pad_fill="mean").path not in (pad.path, squash.path)
    # toy images are square: pad and squash features are identical
    assert np.array_equal(pad.values, squash.values)


def test_real_hm_packshots_pad_continues_the_background():
    """Three H&M photos (360x540): the edge-colour pad is light and meets the photo without a
    step, while the mean pad leaves a hard edge at the seam."""
    from tests.conftest import SHARED_DATA, require_shared

    folder = require_shared(SHARED_DATA / "hm-fashion-sample") / "images"
    files = sorted(folder.glob("*.jpg"))[:3]
    images = []
    for p in files:
        with Image.open(p) as im:
            images.append(im.convert("RGB"))
    edge = create_encoder("tiny:cnn", image_size=224)
    mean = create_encoder("tiny:cnn", image_size=224, pad_fill="mean")
    boxes = edge.content_boxes(images)
    assert boxes == [(0, 37, 224, 149)] * 3
    xe, xm = edge.load_pixels(images), mean.load_pixels(images)
    assert torch.equal(xe[:, :, :, 37:186], xm[:, :, :, 37:186])  # the photo itself is shared
    assert float(xe[:, :, :, :37].min()) > 0.6  # light packshot backgrounds (one is grey)

    def step(x: torch.Tensor) -> torch.Tensor:  # per photo: mean jump across both seams
        return ((x[..., 37] - x[..., 36]).abs().mean(dim=(1, 2))
                + (x[..., 185] - x[..., 186]).abs().mean(dim=(1, 2))) / 2

    assert bool((step(xe) < 0.06).all()) and bool((step(xm) > 0.15).all())
