"""MovieLens-100k with posters from ../shared (never copied; derived files go to tmp_path)."""

from __future__ import annotations

import numpy as np
import pytest

from befa_viz import pipeline
from befa_viz.data import import_movielens
from befa_viz.errors import DataError

pytestmark = pytest.mark.realdata


def test_import_movielens_defaults(movielens_dir, tmp_path):
    ds = import_movielens(movielens_dir)
    it = ds.interactions
    # ratings >= 4: 55,375 rows by 942 users (user 1 of 943 never rated >= 4) on 1,447 movies;
    # 12 of those movies lack a poster -> skipped with their 68 ratings.
    assert ds.n_users == 942
    assert ds.n_items == 1435
    assert it.n_interactions == 55_375 - 68
    assert ds.info["prepare"]["users_in"] == 943
    pol = ds.info["policies"]
    assert pol["missing_image"]["policy"] == "skip" and pol["missing_image"]["missing"] == 19
    assert ds.info["items_csv"]["duplicate_rows_dropped"] == 64
    assert pol["empty_text"]["filled_from_title"] == 18
    assert all(ds.catalog.has_image(i) for i in range(ds.n_items))
    p = ds.catalog.image_path(0)
    assert p.is_absolute() and p.parent == movielens_dir.resolve() / "posters"
    assert ds.catalog.item_ids[0] == "1" and ds.catalog.titles[0] == "Toy Story (1995)"
    assert "Woody" in ds.catalog.texts[0]
    assert "Animation" in ds.catalog.meta["genres"].iloc[0]
    # chronological 8:1:1, every user trains, test is each user's latest
    counts = np.bincount(it.split, minlength=3)
    assert counts.sum() == it.n_interactions
    assert 0.78 < counts[0] / counts.sum() < 0.82 and counts[1] == counts[2]
    assert (np.bincount(it.user_idx[it.split == 0], minlength=ds.n_users) >= 1).all()
    u = 0
    mine = it.user_idx == u
    ts, sp = it.timestamp[mine], it.split[mine]
    assert ts[sp == 0].max() <= ts[sp == 1].min() and ts[sp == 1].max() <= ts[sp == 2].min()
    assert (it.rating >= 4).all()


def test_movielens_keep_policy_and_workspace_save(movielens_dir, tmp_path):
    ds = import_movielens(movielens_dir, missing_image="keep", min_rating=None)
    assert ds.n_users == 943 and ds.n_items == 1682
    assert ds.interactions.n_interactions == 100_000
    assert sum(not ds.catalog.has_image(i) for i in range(ds.n_items)) == 19
    with pytest.raises(DataError, match=r"19 missing image\(s\), e.g. item 330"):
        import_movielens(movielens_dir, missing_image="error")
    ws = tmp_path / "ws"
    folder = pipeline.import_dataset("movielens", movielens_dir, workspace=ws, seed=0)
    assert sorted(p.name for p in folder.iterdir()) == [
        "dataset.json", "interactions.csv", "items.csv", "users.csv"]
    assert not list(folder.rglob("*.jpg"))  # posters are referenced, never copied
    stats = pipeline.dataset_stats(workspace=ws)
    assert stats["users"] == 942 and stats["items_with_image"] == 1435
