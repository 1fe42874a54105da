"""Generic layout importer: items table + image folder + interactions, with explicit policies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from befa_viz.data import RecDataset, import_table
from befa_viz.errors import ConfigError, DataError


def make_shop(root: Path, n_items: int = 6, n_users: int = 5, fmt: str = "csv") -> Path:
    """items.<fmt> + images/<id>.png + interactions.csv with timestamps and ratings."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    ids = [f"p{i}" for i in range(n_items)]
    for k, i in enumerate(ids):
        Image.new("RGB", (8, 8), (40 * k % 255, 90, 160)).save(root / "images" / f"{i}.png")
    items = pd.DataFrame({"item_id": ids, "title": [f"Item {i}" for i in ids],
                          "text": [f"a nice {i}" for i in ids]})
    if fmt == "csv":
        items.to_csv(root / "items.csv", index=False)
    elif fmt == "tsv":
        items.to_csv(root / "items.tsv", index=False, sep="\t")
    else:
        items.to_parquet(root / "items.parquet")
    rows = []
    for u in range(n_users):
        for t, i in enumerate(ids[u % 2::1][:5]):
            rows.append((f"user{u}", i, 5 - (t % 2), 1000 * u + t))
    pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"]).to_csv(
        root / "interactions.csv", index=False)
    return root


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet"])
def test_import_table_with_image_folder(tmp_path, fmt):
    root = make_shop(tmp_path / "shop", fmt=fmt)
    ds = import_table(root, seed=3)
    assert isinstance(ds, RecDataset) and ds.name == "shop"
    assert ds.n_users == 5 and ds.n_items == 6
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in ds.catalog.image_paths)
    assert ds.catalog.image(0).size == (8, 8)
    assert ds.catalog.texts[0] == "a nice p0"
    assert ds.info["columns"]["rating"] == "rating"
    assert ds.info["columns"]["timestamp"] == "timestamp"
    assert ds.info["prepare"]["split"]["by"] == "time"
    assert ds.info["policies"]["missing_image"]["missing"] == 0
    # chronological: each user's test item is their latest
    it = ds.interactions
    for u in range(ds.n_users):
        mine = it.user_idx == u
        assert it.timestamp[mine][it.split[mine] == 2].min() == it.timestamp[mine].max()


def test_min_rating_and_items_without_interactions_dropped(tmp_path):
    root = make_shop(tmp_path / "shop")
    inter = pd.read_csv(root / "interactions.csv")
    inter.loc[inter["item_id"] == "p5", "rating"] = 3
    inter.to_csv(root / "interactions.csv", index=False)
    ds = import_table(root, min_rating=4, split="1,0,0")
    assert (ds.interactions.rating >= 4).all()
    # p5 lost all its interactions: it leaves the catalog, and indices stay contiguous
    assert "p5" not in ds.catalog.item_ids and ds.n_items == 5
    assert np.array_equal(np.unique(ds.interactions.item_idx), np.arange(5))
    assert ds.info["counts"]["items_in"] == 6 and ds.info["counts"]["items"] == 5


@pytest.mark.parametrize("policy", ["error", "skip", "keep"])
def test_missing_image_policies(tmp_path, policy):
    root = make_shop(tmp_path / "shop")
    (root / "images" / "p2.png").unlink()
    if policy == "error":
        with pytest.raises(DataError, match=r"1 missing image\(s\), e.g. item p2 \(no path\)"):
            import_table(root, missing_image=policy)
        return
    ds = import_table(root, missing_image=policy)
    rec = ds.info["policies"]["missing_image"]
    assert rec["policy"] == policy and rec["missing"] == 1
    if policy == "skip":
        assert "p2" not in ds.catalog.item_ids
        assert ds.info["policies"]["interactions_dropped_with_skipped_items"] > 0
    else:
        assert not ds.catalog.has_image(ds.catalog.index_of("p2"))


def test_unreadable_image_is_caught_with_check_images(tmp_path):
    root = make_shop(tmp_path / "shop")
    (root / "images" / "p1.png").write_bytes(b"definitely not a png")
    import_table(root)  # existence only: passes
    with pytest.raises(DataError, match=r"1 unreadable image\(s\), e.g. item p1 \(.*p1\.png\)"):
        import_table(root, check_images=True)
    ds = import_table(root, check_images=True, missing_image="skip")
    assert "p1" not in ds.catalog.item_ids
    assert ds.info["policies"]["missing_image"]["unreadable"] == 1


def test_image_column_with_relative_paths(tmp_path):
    root = make_shop(tmp_path / "shop")
    items = pd.read_csv(root / "items.csv")
    items["picture"] = [f"images/{i}.png" for i in items["item_id"]]
    items.loc[0, "picture"] = ""
    items.to_csv(root / "items.csv", index=False)
    ds = import_table(root, image_dir=None, image_col="picture", missing_image="keep")
    assert ds.catalog.image_paths[ds.catalog.index_of("p1")] == str(root / "images" / "p1.png")
    assert not ds.catalog.has_image(ds.catalog.index_of("p0"))


def test_duplicate_item_ids_are_named(tmp_path):
    root = make_shop(tmp_path / "shop")
    items = pd.read_csv(root / "items.csv")
    pd.concat([items, items.iloc[[3]]]).to_csv(root / "items.csv", index=False)
    with pytest.raises(DataError, match=r"duplicate item id\(s\) 'p3' at lines 5, 8"):
        import_table(root)


def test_unknown_items_error_names_lines_or_drop_is_recorded(tmp_path):
    root = make_shop(tmp_path / "shop")
    inter = pd.read_csv(root / "interactions.csv")
    inter.loc[4, "item_id"] = "ghost"
    inter.to_csv(root / "interactions.csv", index=False)
    msg = r"1 interaction\(s\) name items not in .* 'ghost' at line 6"
    with pytest.raises(DataError, match=msg):
        import_table(root)
    ds = import_table(root, unknown_items="drop")
    assert ds.info["policies"]["unknown_items"] == {"policy": "drop", "rows_dropped": 1}
    assert ds.interactions.n_interactions == len(inter) - 1


def test_bad_value_after_dropped_rows_names_original_line(tmp_path):
    root = make_shop(tmp_path / "shop")
    inter = pd.read_csv(root / "interactions.csv").astype(str)
    inter.loc[1, "item_id"] = "ghost"  # dropped first
    inter.loc[7, "rating"] = "five"
    inter.to_csv(root / "interactions.csv", index=False)
    msg = r"'rating' \(rating\) is missing or not a number at line 9"
    with pytest.raises(DataError, match=msg):
        import_table(root, unknown_items="drop")


@pytest.mark.parametrize("policy, expect", [("title", "Item p2"), ("keep", "")])
def test_empty_text_policies(tmp_path, policy, expect):
    root = make_shop(tmp_path / "shop")
    items = pd.read_csv(root / "items.csv")
    items.loc[2, "text"] = "  "
    items.to_csv(root / "items.csv", index=False)
    ds = import_table(root, empty_text=policy)
    assert ds.catalog.texts[ds.catalog.index_of("p2")].strip() == expect
    rec = ds.info["policies"]["empty_text"]
    assert rec["empty"] == 1 and rec["filled_from_title"] == (1 if policy == "title" else 0)


def test_empty_text_error_and_skip(tmp_path):
    root = make_shop(tmp_path / "shop")
    items = pd.read_csv(root / "items.csv")
    items.loc[2, "text"] = ""
    items.to_csv(root / "items.csv", index=False, na_rep="")
    with pytest.raises(DataError, match=r"1 item\(s\) have empty text, e.g. item 'p2' at line 4"):
        import_table(root, empty_text="error")
    assert "p2" not in import_table(root, empty_text="skip").catalog.item_ids


def test_option_and_layout_errors(tmp_path):
    root = make_shop(tmp_path / "shop")
    with pytest.raises(DataError, match="no user id column 'customer'"):
        import_table(root, user_col="customer")
    with pytest.raises(DataError, match="no text column 'body'"):
        import_table(root, text_col="body")
    with pytest.raises(ConfigError, match="missing_image='maybe'"):
        import_table(root, missing_image="maybe")  # type: ignore[arg-type]
    (root / "interactions.csv").rename(root / "log.csv")
    with pytest.raises(DataError, match="No interactions table found"):
        import_table(root)
    assert import_table(root, interactions="log.csv").n_users == 5


def test_no_items_table_builds_items_from_interactions(tmp_path):
    root = make_shop(tmp_path / "shop")
    (root / "items.csv").unlink()
    ds = import_table(root)
    assert ds.n_items == 6 and all(ds.catalog.image_paths)  # images found by id
    assert ds.catalog.titles == [""] * 6 and ds.info["source"]["items"] is None


def test_table_import_is_byte_identical_for_the_same_seed(tmp_path):
    root = make_shop(tmp_path / "shop", n_items=8, n_users=12)
    inter = pd.read_csv(root / "interactions.csv")
    inter["timestamp"] = 0  # all ties: only the seed orders them
    inter.to_csv(root / "interactions.csv", index=False)

    def files(seed: int, tag: str) -> dict[str, bytes]:
        folder = import_table(root, seed=seed).save(tmp_path / tag)
        return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}

    a, b, c = files(1, "a"), files(1, "b"), files(2, "c")
    assert a == b
    assert a["interactions.csv"] != c["interactions.csv"]


def test_parquet_float_and_missing_ids(tmp_path):
    root = make_shop(tmp_path / "shop", fmt="parquet")
    items = pd.read_parquet(root / "items.parquet")
    items["item_id"] = [float(i) for i in range(len(items))]
    items.to_parquet(root / "items.parquet")
    for i in range(len(items)):
        (root / "images" / f"p{i}.png").rename(root / "images" / f"{i}.png")
    inter = pd.read_csv(root / "interactions.csv")
    inter["item_id"] = inter["item_id"].str[1:].astype(int)
    inter.to_parquet(root / "interactions.parquet")
    (root / "interactions.csv").unlink()
    ds = import_table(root)
    assert ds.catalog.item_ids == ["0", "1", "2", "3", "4", "5"]  # 1.0 -> "1", matches 1
    items.loc[2, "item_id"] = None
    items.to_parquet(root / "items.parquet")
    with pytest.raises(DataError, match="empty item id at row 2"):
        import_table(root)
