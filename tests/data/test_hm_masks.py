"""Garment masks: the mask maker on synthetic packshots with known masks, the stored truth,
the contact sheet, and (on a slice of ../shared) the H&M photos."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from befa_viz import pipeline
from befa_viz.data import garment_mask, load_ground_truth, make_garment_truth
from befa_viz.data.truth import attribute_word_labels
from befa_viz.errors import DataError, StaleArtifactError
from befa_viz.testing import synthetic_packshot
from befa_viz.viz import mask_contact_sheet


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("kw, min_iou", [
    ({}, 0.98),                                                   # coloured garment
    ({"shadow": 0.15}, 0.85),                                     # soft shadow beside it
    ({"garment": (30, 30, 40), "vignette": 25.0}, 0.97),          # dark, uneven lighting
    ({"garment": (150, 200, 230), "noise": 4.0}, 0.95),           # light blue, grainy
])
def test_mask_of_coloured_garments(kw, min_iou):
    img, truth = synthetic_packshot(180, 120, **kw)
    m = garment_mask(img)
    assert m.usable and m.reason == "ok"
    assert m.mask.shape == truth.shape == (180, 120)  # the photo's own aspect
    assert _iou(m.mask, truth) >= min_iou


def test_white_on_white_is_found_by_its_edges_and_flagged():
    img, truth = synthetic_packshot(180, 120, garment=(252, 252, 252), outline=215)
    m = garment_mask(img)
    assert m.usable and m.reason == "low_contrast"  # usable, but said so
    assert _iou(m.mask, truth) >= 0.95
    assert m.stats["background_coloured"] > 0.5


def test_white_on_white_without_edges_is_unusable_with_a_reason():
    img, _ = synthetic_packshot(180, 120, garment=(240, 240, 238), vignette=0.0)
    m = garment_mask(img)
    assert not m.usable and "white on white" in m.reason and not m.mask.any()


def test_dark_or_busy_backgrounds_are_refused():
    img, _ = synthetic_packshot(120, 80, background=(90, 90, 90))
    assert garment_mask(img).reason.startswith("background not light")
    busy = np.random.default_rng(0).integers(150, 256, (120, 80, 3)).astype(np.uint8)
    m = garment_mask(busy)
    assert not m.usable and m.reason.startswith("background not uniform")
    full = np.full((120, 80, 3), 240, np.uint8)
    full[3:-3, 3:-3] = (200, 20, 20)  # garment fills the frame
    assert not garment_mask(full).usable


def test_attribute_word_labels_are_weak_labels_of_attribute_words():
    out = attribute_word_labels("Wide trousers. Trousers, Dark Blue, All over pattern. Soft.",
                                ["Dark Blue", "Trousers", "All over pattern"])
    labelled = [t for t, lab in zip(out["tokens"], out["labels"], strict=True) if lab]
    assert labelled == ["trousers", "Trousers", "Blue", "pattern"]  # not "Dark", "All", "over"


def _packshot_dataset(tmp_path, n: int = 8):
    """A workspace dataset of synthetic packshots (every fourth: white on white, no edges)."""
    from befa_viz.testing import packshot_dataset

    ds, truth = packshot_dataset(tmp_path / "src", n_items=n)
    ws = pipeline.Workspace(tmp_path / "ws")
    ds.save(ws.dataset_dir("packs"))
    return ws, ds, [truth[f"i{k}"] for k in range(n)]


def test_make_garment_truth_stores_masks_flags_and_tokens(tmp_path):
    ws, ds, truths = _packshot_dataset(tmp_path)
    folder = ws.dataset_dir("packs")
    with pytest.raises(DataError, match="befa-viz data masks --dataset packs"):
        load_ground_truth(folder)
    summary = make_garment_truth(folder)
    assert summary["items_with_photo"] == 8 and summary["usable"] == 6
    assert summary["unusable"] == 2 and summary["usable_share"] == pytest.approx(0.75)
    gt = load_ground_truth(folder)
    assert gt.kind == "garment-masks" and not gt.planted
    assert gt.masks["product"].shape == (8, 90, 60) and gt.masks["product"].dtype == bool
    for i, iid in enumerate(ds.catalog.item_ids):
        k = int(iid[1:])
        if k % 4 == 3:
            assert not gt.usable[i] and "white on white" in gt.reasons[i]
        else:
            assert gt.usable[i] and _iou(gt.relevant[i], truths[k]) > 0.95
    assert gt.token_labels("i0") == [0, 1, 1, 0, 0]  # A red shirt number 0
    assert gt.token_labels("i1") == [0, 1, 1, 0, 0]  # A black shirt number 1
    meta = json.loads((folder / "ground_truth" / "truth.json").read_text())
    assert meta["tokens"]["weak"] and meta["summary"]["unusable_reasons"]
    with pytest.raises(DataError, match="overwrite"):
        make_garment_truth(folder)
    # masks made for another version of the dataset are refused, not served
    meta["dataset_fingerprint"] = "0" * 16
    (folder / "ground_truth" / "truth.json").write_text(json.dumps(meta))
    with pytest.raises(StaleArtifactError, match="--overwrite"):
        load_ground_truth(folder)


def test_unreadable_photo_names_the_item(tmp_path):
    ws, ds, _ = _packshot_dataset(tmp_path, n=4)
    (tmp_path / "src" / "images" / "i2.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"item 'i2'.*--check-images"):
        make_garment_truth(ws.dataset_dir("packs"))
    assert not (ws.dataset_dir("packs") / "ground_truth").exists()  # nothing half-written


def test_make_masks_writes_contact_sheets_and_reuses(tmp_path):
    ws, _, _ = _packshot_dataset(tmp_path)
    res = pipeline.make_masks("packs", workspace=ws, sheet_items=6)
    assert not res.reused and res.summary["usable"] == 6
    sheet = np.asarray(Image.open(res.sheets["contact-sheet.png"]))
    assert sheet.shape[0] > 0 and sheet.shape[2] == 3
    assert "unusable.png" in res.sheets
    assert str(res.sheets["contact-sheet.png"]).startswith(str(ws.reports_dir))
    assert pipeline.make_masks("packs", workspace=ws).reused


def test_contact_sheet_tints_the_background():
    img, m = synthetic_packshot(60, 40)
    sheet = mask_contact_sheet([img], [m], n_cols=1, tile_width=40)
    assert sheet.shape == (60, 40, 3)
    inside, outside = sheet[m & (np.arange(60)[:, None] > 15)], sheet[~m]
    assert outside[:, 2].mean() > outside[:, 0].mean() + 50  # tinted blue
    assert abs(int(inside[:, 0].mean()) - 170) < 40  # garment untouched (bar the outline)


@pytest.mark.realdata
def test_masks_of_real_hm_photos(hm_dir):
    """A few H&M packshots (not copied, only read): masks are plausible garment shapes."""
    ids = ["0108775015", "0399201002", "0576775009", "0717490002"]  # incl. two white garments
    for iid in ids:
        with Image.open(hm_dir / "images" / f"{iid}.jpg") as im:
            photo = im.convert("RGB")
        m = garment_mask(photo)
        assert m.mask.shape == (540, 360) and m.usable, (iid, m.reason)
        assert 0.1 < m.stats["area"] < 0.7
        assert not m.mask[:5].any() and not m.mask[:, :5].any()  # background frame
