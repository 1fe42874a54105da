"""The library side of the explorer (befa_viz.explore): masks, paired tests, jobs, item space."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from befa_viz import explore, pipeline
from befa_viz.errors import ConfigError, DataError


def test_paired_test_matches_scipy_and_counts_directions():
    from scipy import stats

    rng = np.random.default_rng(0)
    a = rng.uniform(0.3, 0.9, 20)
    b = a - rng.uniform(0.0, 0.2, 20)
    b[:3] = a[:3] + 0.05  # three items drift more with the adapter
    t = pd.DataFrame({"drift_without": a, "drift_with": b})
    t.loc[5, "drift_with"] = np.nan  # a missing score leaves the item out
    r = explore.paired_test(t, "drift")
    ok = ~np.isnan(t["drift_with"].to_numpy())
    assert r["n"] == 19 and r["n_higher"] == 3 and r["n_lower"] == 16
    assert r["p"] == pytest.approx(stats.wilcoxon(b[ok], a[ok]).pvalue)
    assert r["mean_diff"] == pytest.approx(np.mean(b[ok] - a[ok]))
    same = explore.paired_test(pd.DataFrame({"drift_without": [0.2, 0.3],
                                             "drift_with": [0.2, 0.3]}))
    assert same["p"] is None and same["n_equal"] == 2
    with pytest.raises(DataError, match="drift_with"):
        explore.paired_test(pd.DataFrame({"drift_without": [0.1]}))


def test_mask_overlay_tints_and_outlines_each_region():
    img = np.full((8, 8, 3), 100, np.uint8)
    product = np.zeros((4, 4), bool)
    product[1:3, 1:3] = True  # a 2×2 block at 4×4 → a 4×4 block at 8×8
    out = explore.mask_overlay(img, {"product": product})
    assert out.shape == img.shape and out.dtype == np.uint8
    assert (out[0, 0] == 100).all()  # outside: untouched
    assert out[2, 2].tolist() == list(explore.mask_colour("product"))  # outline
    with pytest.raises(ConfigError):
        explore.mask_overlay(img, {}, alpha=2)


def test_shop_masks_attributes_and_thumbnails(shop_ws):
    ws = pipeline.Workspace(shop_ws)
    ds = ws.load_dataset("shop")
    item = ds.catalog.item_ids[0]
    masks = explore.item_masks(ds, item)
    assert "product" in masks and masks["product"].dtype == bool
    assert masks["product"].shape == np.asarray(ds.catalog.image(0)).shape[:2]
    attrs = explore.item_attributes(ds, item)
    assert {"kind", "colour", "pattern"} <= set(attrs)
    uri = explore.item_thumbnails(ds, [item], size=16)[0]
    assert uri is not None and uri.startswith("data:image/png;base64,")


def test_item_masks_reject_a_mismatched_file(shop_ws, tmp_path):
    import shutil

    ds = pipeline.Workspace(shop_ws).load_dataset("shop")
    copy = tmp_path / "shop"
    shutil.copytree(ds.path, copy)
    np.savez_compressed(copy / "ground_truth" / "masks.npz", product=np.zeros((3, 4, 4), bool))
    from befa_viz.data import RecDataset

    with pytest.raises(DataError, match=r"masks.npz: mask 'product' has shape \(3, 4, 4\)"):
        explore.item_masks(RecDataset.load(copy), ds.catalog.item_ids[0])


def test_score_job_reports_progress_and_cancels(explorer_ws):
    job = explore.ScoreJob(workspace=explorer_ws, method="gradcam", limit=4, batch_size=2)
    assert job.wait(120).done and job.error is None
    assert len(job.result) == 4 and job.progress == (4, 4)
    stopped = explore.ScoreJob(workspace=explorer_ws, method="gradcam", limit=12,
                               batch_size=2)
    stopped.cancel()
    assert stopped.wait(120).done and stopped.cancelled
    assert len(stopped.result) < 12
    with pytest.raises(ConfigError, match="should_stop"):
        explore.ScoreJob(workspace=explorer_ws, should_stop=lambda: True)


def test_score_job_keeps_the_error(explorer_ws):
    job = explore.ScoreJob(workspace=explorer_ws, target="user_score").wait(60)
    assert isinstance(job.error, ConfigError) and job.result is None


def test_steps_apply_reads_the_method_signature():
    assert explore.steps_apply("ig") and explore.steps_apply("layer_ig")
    assert not explore.steps_apply("gradcam") and not explore.steps_apply("similarity")


@pytest.fixture(scope="module")
def space(shop_ws):
    t0 = time.perf_counter()
    df = explore.item_space(explore.open_run_pair(shop_ws), modality="image",
                            workspace=shop_ws)
    return df, time.perf_counter() - t0


def test_item_space_maps_both_runs_and_is_cached(space, shop_ws):
    df, first = space
    ds = pipeline.Workspace(shop_ws).load_dataset("shop")
    assert df["item_id"].tolist() == list(ds.catalog.item_ids)
    for c in ("x_without", "y_without", "x_with", "y_with", "popularity", "attr:kind"):
        assert c in df.columns, c
    assert np.isfinite(df[["x_without", "y_without", "x_with", "y_with"]].to_numpy()).all()
    counts = np.bincount(ds.interactions.train().item_idx, minlength=ds.n_items)
    assert df["popularity"].tolist() == counts.tolist()
    cache = pipeline.Workspace(shop_ws).cache()
    assert len(cache.entries("item_space")) == 1
    t0 = time.perf_counter()
    again = explore.item_space(explore.open_run_pair(shop_ws), modality="image",
                               workspace=shop_ws)
    assert time.perf_counter() - t0 < 2.0
    pd.testing.assert_frame_equal(again, df)


def test_item_space_refuses_a_modality_the_runs_lack(shop_ws):
    with pytest.raises(ConfigError, match="audio"):
        explore.item_space(explore.open_run_pair(shop_ws), modality="audio")
