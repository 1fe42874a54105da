"""H&M importer on a small slice of ../shared/data/hm-fashion-sample (never copied: photos are
linked from a tmp folder, and only a few customers' rows are written there)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from befa_viz import pipeline
from befa_viz.data import import_hm
from befa_viz.data.hm import hm_text
from befa_viz.errors import DataError

pytestmark = pytest.mark.realdata


def _slice(hm_dir: Path, out: Path, n_customers: int = 40) -> pd.DataFrame:
    """Write the purchases of the ``n_customers`` most active customers (+ all articles)."""
    tx = pd.read_csv(hm_dir / "transactions.csv", dtype=str, keep_default_na=False)
    top = tx["customer_id"].value_counts().index[:n_customers]
    part = tx[tx["customer_id"].isin(top)]
    out.mkdir()
    part.to_csv(out / "transactions.csv", index=False)
    shutil.copy(hm_dir / "articles.csv", out / "articles.csv")  # tmp only, deleted after
    (out / "images").mkdir()
    for a in pd.unique(part["article_id"]):
        os.symlink(hm_dir / "images" / f"{a}.jpg", out / "images" / f"{a}.jpg")
    return part


@pytest.fixture
def hm_slice(hm_dir, tmp_path):
    return tmp_path / "hm", _slice(hm_dir, tmp_path / "hm")


def test_import_slice(hm_slice):
    folder, part = hm_slice
    ds = import_hm(folder, seed=0)
    cat, it = ds.catalog, ds.interactions
    n_pairs = len(part.drop_duplicates(["customer_id", "article_id"]))
    assert ds.n_users == 40 and it.n_interactions == n_pairs
    assert ds.info["prepare"]["duplicates_dropped"] == len(part) - n_pairs > 0
    assert all(len(i) == 10 and i[0] == "0" for i in cat.item_ids)  # leading zeros kept
    assert set(cat.item_ids) == set(part["article_id"])
    # repeat purchases: the interaction is dated by the first purchase
    first = part.groupby(["customer_id", "article_id"])["t_dat"].min()
    u, i = it.user_idx[0], it.item_idx[0]
    day = pd.Timestamp(first[(ds.user_ids[u], cat.item_ids[i])], tz="UTC")
    assert it.timestamp[0] == int(day.timestamp())
    # per-user chronological split
    for u in range(ds.n_users):
        mine = it.user_idx == u
        ts, sp = it.timestamp[mine], it.split[mine]
        if (sp == 2).any():
            assert ts[sp == 0].max() <= ts[sp == 2].min()
    # text = name + type + colour + pattern + description; image-only items have none
    arts = pd.read_csv(folder / "articles.csv", dtype=str, keep_default_na=False)
    arts = arts.set_index("article_id")
    meta = cat.meta
    assert meta is not None and {"colour_group_name", "product_type_name",
                                 "has_metadata"} <= set(meta.columns)
    for k, iid in enumerate(cat.item_ids):
        if iid in arts.index:
            row = arts.loc[iid]
            assert cat.texts[k] == hm_text(row) and row["colour_group_name"] in cat.texts[k]
            assert meta["has_metadata"].iloc[k] == 1
        else:
            assert cat.texts[k] == "" and cat.titles[k] == "" and meta["has_metadata"].iloc[k] == 0
    assert 0 < ds.info["text_coverage"]["image_only_articles"] < ds.n_items
    # a second import with the same seed is identical
    assert import_hm(folder, seed=0).fingerprint() == ds.fingerprint()


def test_stats_report_text_coverage(hm_slice, tmp_path):
    folder, _ = hm_slice
    ws = tmp_path / "ws"
    pipeline.import_dataset("hm", folder, workspace=ws, name="hm")
    s = pipeline.dataset_stats("hm", workspace=ws)
    assert s["items_with_text"] + s["image_only_items"] == s["items"]
    assert s["text_coverage"] == pytest.approx(s["items_with_text"] / s["items"])
    assert not list((ws / "datasets").rglob("*.jpg"))  # photos referenced, never copied
    ds = pipeline.Workspace(ws).load_dataset("hm")
    assert ds.catalog.item_ids[0].startswith("0")  # survives the round trip through CSV


def test_lost_leading_zero_names_the_line(hm_slice):
    folder, _ = hm_slice
    tx = pd.read_csv(folder / "transactions.csv", dtype=str)
    tx.loc[3, "article_id"] = tx.loc[3, "article_id"].lstrip("0")
    tx.to_csv(folder / "transactions.csv", index=False)
    with pytest.raises(DataError, match=r"lost its leading zero.*line 5\b"):
        import_hm(folder)
    arts = pd.read_csv(folder / "articles.csv", dtype={"article_id": int})  # ids as numbers
    arts.to_csv(folder / "articles.csv", index=False)
    tx.loc[3, "article_id"] = tx.loc[3, "article_id"].zfill(10)
    tx.to_csv(folder / "transactions.csv", index=False)
    with pytest.raises(DataError, match=r"articles\.csv: article_id '\d{9}' .*leading zero"):
        import_hm(folder)


def test_missing_and_undecodable_photos(hm_slice):
    folder, part = hm_slice
    gone, broken = part["article_id"].iloc[0], part["article_id"].iloc[-1]
    (folder / "images" / f"{gone}.jpg").unlink()
    with pytest.raises(DataError, match=rf"1 missing image\(s\), e\.g\. item {gone}.*"
                                        r"missing_image='skip'"):
        import_hm(folder)
    ds = import_hm(folder, missing_image="skip")
    assert gone not in ds.catalog.item_ids
    assert ds.info["policies"]["interactions_dropped_with_skipped_items"] == \
        (part["article_id"] == gone).sum()
    (folder / "images" / f"{broken}.jpg").unlink()
    (folder / "images" / f"{broken}.jpg").write_bytes(b"not a jpeg")
    ds = import_hm(folder, missing_image="skip")  # exists: kept without check_images
    assert broken in ds.catalog.item_ids
    with pytest.raises(DataError, match=rf"photos in .*1 missing and 1 unreadable image\(s\)"
                                        rf", e\.g\. item {gone} \(no path\), {broken}"):
        import_hm(folder, check_images=True)
    ds = import_hm(folder, missing_image="skip", check_images=True)
    assert broken not in ds.catalog.item_ids and gone not in ds.catalog.item_ids


def test_empty_text_policies(hm_slice):
    folder, _ = hm_slice
    with pytest.raises(DataError, match=r"no metadata row \(image-only\).*empty_text='keep'"):
        import_hm(folder, empty_text="error")
    ds = import_hm(folder, empty_text="skip")
    assert all(t for t in ds.catalog.texts)
    assert np.all(ds.catalog.meta["has_metadata"].to_numpy() == 1)
