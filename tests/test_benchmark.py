"""The planted-truth benchmark: scoring machinery, a planted target, a tiny end-to-end run, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from befa_viz.attribution import attribute, create_target
from befa_viz.benchmark import (
    aggregate,
    random_map,
    run_benchmark,
    sample_items,
    score_image_maps,
    sign_test,
    token_precision,
)
from befa_viz.data.synth import generate_shop
from befa_viz.encoders.tiny import TinyCNN
from befa_viz.errors import ConfigError, DataError

SHOP = {"n_items": 40, "n_users": 30, "image_size": 64, "interactions_per_user": (5, 10)}


# ---- scoring machinery ---------------------------------------------------------------------
def test_sign_test_matches_the_binomial():
    assert sign_test([1.0] * 8) == pytest.approx(2 / 2**8)
    assert sign_test([1.0, -1.0]) == 1.0
    assert sign_test([0.0, 0.0]) == 1.0  # zeros dropped: nothing to test
    # 6 of 7 positive: 2 * (C(7,0) + C(7,1)) / 2^7
    assert sign_test([1, 1, 1, 1, 1, 1, -1]) == pytest.approx(2 * 8 / 128)


def test_token_precision_at_k():
    out = token_precision([0.1, -5.0, 0.2, 3.0, 0.0], [False, True, False, True, True],
                          special=[True, False, False, False, False])
    # special word dropped; k = 3 relevant; top-3 |v| = -5, 3, 0.2 → 2 of 3 relevant
    assert out["k"] == 3 and out["precision"] == pytest.approx(2 / 3)
    assert out["chance"] == pytest.approx(3 / 4)
    assert np.isnan(token_precision([1.0, 2.0], [False, False])["precision"])


def test_score_image_maps_on_hand_made_maps():
    mask = np.zeros((2, 8, 8), bool)
    mask[:, :4] = True  # product: top half
    decoy = np.zeros_like(mask)
    decoy[0, 6:, :2] = True
    inside = mask[0].astype(float)
    outside = (~mask[0]).astype(float)
    rows = score_image_maps([inside, outside], {"product": mask, "decoy": decoy},
                            controls={"flat": [np.ones((8, 8))] * 2})
    assert rows[0]["mass_in_mask"] == 1.0 and rows[1]["mass_in_mask"] == 0.0
    assert rows[0]["chance"] == 0.5 and rows[0]["pointing"] == 1.0
    assert rows[0]["drift"] == 0.0 and rows[1]["drift"] == 1.0
    assert rows[0]["margin_flat"] == pytest.approx(0.5)
    assert rows[1]["margin_flat"] == pytest.approx(-0.5)
    assert rows[0]["decoy_mass"] == 0.0 and np.isnan(rows[1]["decoy_mass"])  # item 1: no decoy
    with pytest.raises(DataError):
        score_image_maps([inside], {"product": mask}, controls={})


def test_random_map_is_seeded_and_smooth():
    a, b = random_map((32, 32), seed=(0, 3)), random_map((32, 32), seed=(0, 3))
    assert np.array_equal(a, b) and not np.array_equal(a, random_map((32, 32), seed=(0, 4)))
    assert np.abs(np.diff(a, axis=0)).max() < 0.25  # blobs, not pixel noise


class _ProductOnly(TinyCNN):
    """tiny:cnn that sees only the product: every other pixel is replaced by grey first."""

    def __init__(self, mask: np.ndarray) -> None:
        super().__init__(image_size=mask.shape[0])
        self.register_buffer("keep", torch.as_tensor(mask, dtype=torch.float32)[None, None])

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return super().forward(pixels * self.keep + 0.5 * (1 - self.keep))


@pytest.mark.filterwarnings("ignore:ig. completeness error")
def test_ig_on_a_planted_target_beats_the_random_target_by_a_clear_margin(tmp_path):
    """A target that depends only on the product's pixels, by construction: the content focus
    of an encoder that cannot see anything else. IG must put its mass on the product and the
    benchmark's scoring must say so next to its controls; the random-target control must not
    pass."""
    ds = generate_shop(tmp_path / "shop", n_items=10, n_users=5, image_size=32,
                       interactions_per_user=(3, 4), seed=3)
    from befa_viz.data.synth import load_ground_truth

    gt = load_ground_truth(tmp_path / "shop")
    idx = list(range(ds.n_items))
    plain = TinyCNN(image_size=32)
    pixels = plain.load_pixels([ds.catalog.image(i) for i in idx])
    planted, rand, edge = [], [], []
    for i in idx:
        enc = _ProductOnly(gt.masks["product"][i])
        x = pixels[i: i + 1]
        with torch.no_grad():
            ref = enc(x)
        tgt = create_target("content_focus", reference=ref)
        planted += attribute("ig", enc, tgt, x, item_ids=[str(i)], n_steps=8, baseline="blur")
        rtgt = create_target("random", dim=plain.dim, item_idx=[i], seed=i)
        rand += attribute("ig", plain, rtgt, x, item_ids=[str(i)], n_steps=8, baseline="blur")
        edge += attribute("input_x_blur", plain, rtgt, x, item_ids=[str(i)])
    masks = {"product": gt.masks["product"][idx], "decoy": gt.masks["decoy"][idx]}
    random_maps = [random_map((32, 32), seed=(0, i)) for i in idx]
    controls = {"random_target": rand, "input": edge, "random_map": random_maps}
    import pandas as pd

    rows = [{"modality": "image", "variant": "planted", "method": "ig", "target": "planted",
             **r} for r in score_image_maps(planted, masks, controls=controls)]
    rows += [{"modality": "image", "variant": "model-free", "method": "ig", "target": "random",
              **r} for r in score_image_maps(rand, masks, controls=controls)]
    table = aggregate(pd.DataFrame(rows)).set_index("target")
    p = table.loc["planted"]
    assert p["mass_in_mask"] > 0.99  # outside the product the gradient is exactly zero
    assert p["margin_random_target"] > 0.3 and p["win_random_target"] == 1.0
    assert p["margin_input"] > 0.3 and p["margin_random_map"] > 0.3
    assert p["p_random_target"] < 0.01 and bool(p["passes"])
    assert p["ratio"] > 1.5 and p["drift"] < 0.01
    r = table.loc["random"]
    assert r["mass_in_mask"] < p["mass_in_mask"] - 0.3
    assert r["passes"] is None  # the control itself is never "evidence"


# ---- end to end on tiny encoders -------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_ws(tmp_path_factory):
    """A small shop, tiny encoders, FREEDOM without/with BeFA (one epoch each)."""
    from befa_viz import pipeline

    ws = pipeline.Workspace(tmp_path_factory.mktemp("bench-ws"))
    pipeline.synth_dataset(ws, "shop", **SHOP)
    pipeline.encode_dataset(ws, "shop", image_encoder="tiny:cnn", text_encoder="tiny:text")
    for adapter in ("none", "befa"):
        pipeline.train_model(ws, model="freedom", adapter=adapter, dataset="shop", epochs=1,
                             resume=True)
    return ws


def test_run_benchmark_end_to_end_on_tiny_encoders(tiny_ws):
    res = run_benchmark(tiny_ws, methods=("ig", "gradcam"), n_items=5, n_items_expensive=3,
                        n_text_items=4, n_steps=4, n_examples=2)
    t = res.table
    img = t[t["modality"] == "image"]
    # every method × target × variant, plus the two controls
    for method, n in (("ig", 3), ("gradcam", 5)):
        got = img[img["method"] == method]
        assert set(zip(got["variant"], got["target"], strict=True)) == {
            ("model-free", "content_focus"), ("model-free", "random"),
            ("without", "behaviour_alignment"), ("with", "behaviour_alignment"),
            ("without", "content_score"), ("with", "content_score")}
        assert (got["n_items"] == n).all()
    assert set(img.loc[img["variant"] == "control", "method"]) == {"input_x_blur", "random_map"}
    scored = img[img["variant"] != "control"]
    assert scored["mass_in_mask"].between(0, 1).all() and scored["chance"].between(0, 1).all()
    assert np.isfinite(scored["margin_random_target"]).all()
    # margins are the per-item differences, averaged
    items = res.items
    row = items[(items["method"] == "ig") & (items["target"] == "content_focus")].iloc[0]
    ctrl = items[(items["method"] == "ig") & (items["target"] == "random")
                 & (items["item_id"] == row["item_id"])].iloc[0]
    assert row["margin_random_target"] == pytest.approx(row["mass_in_mask"]
                                                        - ctrl["mass_in_mask"])
    assert set(res.adapter["method"]) == {"ig", "gradcam"}
    assert set(res.ranking) == {"without", "with"} and "Recall@20" in res.ranking["with"]["test"]
    assert "image" in res.gate  # the with-adapter run's gate distribution
    # report: tables, figures and one offline HTML page
    for name in ("report.html", "table.csv", "items.csv", "benchmark.json", "margins.png",
                 "grid-ig.png"):
        assert res.paths[name].is_file(), name
    page = res.paths["report.html"].read_text()
    assert "Headline" in page and "data:image/png;base64" in page and "http" not in page.split(
        "<body>")[1].split("Generated by")[0]
    meta = json.loads(res.paths["benchmark.json"].read_text())
    assert meta["params"]["maps_computed"] > 0
    # a second run is served from the attribution cache and keeps the report
    again = run_benchmark(tiny_ws, methods=("ig", "gradcam"), n_items=5, n_items_expensive=3,
                          n_text_items=4, n_steps=4, n_examples=2)
    assert again.params["maps_computed"] == 0 and again.params["report_reused"]
    assert again.table["mass_in_mask"].equals(res.table["mass_in_mask"])


def test_sample_items_are_the_explorers_items(tiny_ws):
    ds = tiny_ws.load_dataset("shop")
    picked, expensive = sample_items(ds, 5, 3)
    assert len(picked) == 5 and set(expensive) <= set(picked) and len(expensive) == 3
    assert picked == sorted(picked)


def test_run_benchmark_errors(tiny_ws, tmp_path):
    with pytest.raises(ConfigError, match="adapted_alignment"):
        run_benchmark(tiny_ws, targets=("adapted_alignment",))
    from befa_viz import pipeline
    from befa_viz.testing import toy_dataset

    ws = pipeline.Workspace(tmp_path)
    toy_dataset().save(ws.dataset_dir("toy"))
    with pytest.raises(DataError, match="no ground truth.*befa-viz data masks"):
        run_benchmark(ws, dataset="toy")


def test_cli_benchmark(tiny_ws):
    from befa_viz.cli import app

    result = CliRunner().invoke(app, [
        "benchmark", "-w", str(tiny_ws.root), "--methods", "gradcam", "--items", "4",
        "--items-expensive", "2", "--text-methods", "none", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "gradcam" in result.output and "report:" in result.output
    assert "maps:" in result.output
    bad = CliRunner().invoke(app, ["benchmark", "-w", str(tiny_ws.root), "--methods", "gradcm"])
    assert bad.exit_code != 0 and "gradcam" in bad.output


# ---- a dataset with garment masks that is not a synthetic shop ---------------------------------
@pytest.fixture(scope="module")
def packs_ws(tmp_path_factory):
    """Synthetic packshots imported with the table importer, garment masks made from the
    photos (two of the eight unusable: white on white), tiny encoders, FREEDOM pair."""
    from befa_viz import pipeline
    from befa_viz.testing import packshot_dataset

    root = tmp_path_factory.mktemp("packs")
    ds, _ = packshot_dataset(root / "src", n_items=12, n_users=10, per_user=5)
    ws = pipeline.Workspace(root / "ws")
    ds.save(ws.dataset_dir("packs"))
    pipeline.make_masks("packs", workspace=ws)
    pipeline.encode_dataset(ws, "packs", image_encoder="tiny:cnn", text_encoder="tiny:text")
    for adapter in ("none", "befa"):
        pipeline.train_model(ws, model="freedom", adapter=adapter, dataset="packs", epochs=1,
                             resume=True)
    return ws


def test_run_benchmark_on_garment_masks(packs_ws):
    from befa_viz.data import load_ground_truth

    gt = load_ground_truth(packs_ws.dataset_dir("packs"))
    assert gt.usable is not None and (~gt.usable).sum() == 3  # items i3, i7, i11
    res = run_benchmark(packs_ws, dataset="packs", methods=("gradcam", "ig"), n_items=12,
                        n_items_expensive=2, n_text_items=3, n_steps=4, n_examples=1)
    p = res.params
    assert p["truth"] == "garment-masks"
    ds = packs_ws.load_dataset("packs")
    trained = np.bincount(ds.interactions.train().item_idx, minlength=ds.n_items) > 0
    assert p["items_unusable_mask"] == int((trained & ~gt.usable).sum()) > 0
    assert p["items_usable_mask"] == int((trained & gt.usable).sum()) == p["n_items"]
    assert not {"i3", "i7", "i11"} & set(p["items"])  # skipped
    img = res.table[res.table["modality"] == "image"]
    got = img[img["method"] == "gradcam"]
    assert set(zip(got["variant"], got["target"], strict=True)) == {
        ("model-free", "content_focus"), ("model-free", "random"),
        ("without", "behaviour_alignment"), ("with", "behaviour_alignment"),
        ("without", "content_score"), ("with", "content_score")}
    assert (got["n_items"] == p["n_items"]).all() and np.isfinite(got["margin_input"]).all()
    scored = img[img["variant"] != "control"]
    assert scored["chance"].between(0.2, 0.6).all()  # the garments' area share
    assert scored["decoy_mass"].isna().all()  # no decoy in real photos
    # text: weak labels (colour and type words) are scored too
    txt = res.table[res.table["modality"] == "text"]
    assert len(txt) and txt["precision"].between(0, 1).all()
    page = res.paths["report.html"].read_text()
    assert "garment masks" in page and "garment mask" in page
