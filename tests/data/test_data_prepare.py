"""prepare_interactions: threshold, dedupe, k-core, remapping, seeded split."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from befa_viz.data import Catalog, RecDataset, prepare_interactions
from befa_viz.data.prepare import natural_order, parse_split
from befa_viz.errors import ConfigError, DataError


def _frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id"][: len(rows[0])]
                        + ["timestamp"][: max(0, len(rows[0]) - 2)])


def test_k_core_hand_made_case():
    # 2-core: item "d" has one interaction -> dropped; then user "w" keeps only "a" -> dropped;
    # then item "a" keeps u, v (2) -> stays. Needs two passes to settle.
    rows = [("u", "a"), ("u", "b"), ("u", "c"),
            ("v", "a"), ("v", "b"), ("v", "c"),
            ("w", "a"), ("w", "d"),
            ("x", "b"), ("x", "c")]
    p = prepare_interactions(_frame(rows), k_core=2, split="1,0,0")
    it = p.interactions
    assert it.user_ids == ["u", "v", "x"]
    assert p.item_ids == ["a", "b", "c"]
    pairs = {(it.user_ids[u], p.item_ids[i])
             for u, i in zip(it.user_idx, it.item_idx, strict=True)}
    assert pairs == {("u", "a"), ("u", "b"), ("u", "c"), ("v", "a"), ("v", "b"), ("v", "c"),
                     ("x", "b"), ("x", "c")}
    assert p.report["k_core"]["passes"] >= 2
    assert p.report["rows_after_k_core"] == 8
    # every remaining user and item has >= 2 interactions
    assert np.bincount(it.user_idx).min() >= 2 and np.bincount(it.item_idx).min() >= 2


def test_k_core_cascades_until_stable():
    # chain: removing the weakest item breaks a user, which breaks another item...
    rows = [("u1", "i1"), ("u1", "i2"), ("u2", "i2"), ("u2", "i3"), ("u3", "i3"), ("u3", "i4")]
    with pytest.raises(DataError, match="no interaction survives the k-core"):
        prepare_interactions(_frame(rows), k_core=2, split="1,0,0")
    p = prepare_interactions(_frame(rows), min_user_interactions=2, min_item_interactions=1,
                             split="1,0,0")
    assert p.interactions.n_users == 3


def test_threshold_dedupe_and_raw_id_maps():
    df = pd.DataFrame({
        "user_id": [10, 10, 10, 2, 2, 2, 2],
        "item_id": ["b", "a", "a", "c", "a", "b", "c"],
        "rating": [5, 4, 5, 1, 5, 4, 5],
        "timestamp": [3, 9, 1, 5, 6, 7, 2],
    })
    p = prepare_interactions(df, rating_col="rating", timestamp_col="timestamp",
                             min_rating=4, split="1,0,0")
    assert p.report["rows_after_threshold"] == 6
    assert p.report["duplicates_dropped"] == 1  # (10, a) twice; (2, c) rated 1 is gone
    it = p.interactions
    assert it.user_ids == ["2", "10"]  # numeric order, not "10" < "2"
    assert p.item_ids == ["a", "b", "c"]
    kept = {(it.user_ids[u], p.item_ids[i], int(t))
            for u, i, t in zip(it.user_idx, it.item_idx, it.timestamp, strict=True)}
    # the earliest of each duplicate pair is kept
    assert ("10", "a", 1) in kept and ("2", "c", 2) in kept
    assert it.n_users == 2 and it.n_items == 3 and it.n_interactions == 5


def test_items_without_interactions_are_dropped_and_catalog_order_is_kept():
    df = _frame([("u", "z"), ("u", "x"), ("v", "x")])
    p = prepare_interactions(df, item_order=["x", "y", "z"], split="1,0,0")
    assert p.item_ids == ["x", "z"]  # "y" never interacted; catalog order kept
    with pytest.raises(DataError, match="not in the item catalog"):
        prepare_interactions(df, item_order=["x"], split="1,0,0")


def _random_frame(n_users=30, n_items=40, per_user=12, seed=1, with_time=True):
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), per_user)
    items = np.concatenate([rng.choice(n_items, per_user, replace=False) for _ in range(n_users)])
    df = pd.DataFrame({"user_id": [f"u{u}" for u in users], "item_id": [f"i{i}" for i in items]})
    if with_time:
        df["timestamp"] = rng.integers(0, 50, len(df))  # many ties on purpose
    return df


def _save_bytes(p, tmp_path, tag) -> dict[str, bytes]:
    cat = Catalog(p.item_ids, [""] * len(p.item_ids), [""] * len(p.item_ids))
    folder = RecDataset("d", cat, p.interactions, {"report": p.report}).save(tmp_path / tag)
    return {f.name: f.read_bytes() for f in sorted(folder.iterdir())}


@pytest.mark.parametrize("with_time", [False, True])
def test_same_seed_gives_byte_identical_files(tmp_path, with_time):
    df = _random_frame(with_time=with_time)
    kw = {"timestamp_col": "timestamp" if with_time else None}
    a = _save_bytes(prepare_interactions(df, seed=7, **kw), tmp_path, "a")
    b = _save_bytes(prepare_interactions(df, seed=7, **kw), tmp_path, "b")
    # row order of the input does not matter either
    shuffled = df.sample(frac=1, random_state=3).reset_index(drop=True)
    c = _save_bytes(prepare_interactions(shuffled, seed=7, **kw), tmp_path, "c")
    d = _save_bytes(prepare_interactions(df, seed=8, **kw), tmp_path, "d")
    assert a == b
    assert a["interactions.csv"] == c["interactions.csv"]
    assert a["interactions.csv"] != d["interactions.csv"]


def test_chronological_split_orders_each_user_by_time():
    df = _random_frame(with_time=True)
    df["timestamp"] = np.random.default_rng(0).permutation(len(df))  # unique times
    p = prepare_interactions(df, timestamp_col="timestamp", seed=0)
    it = p.interactions
    assert p.report["split"]["by"] == "time"
    for u in range(it.n_users):
        mine = it.user_idx == u
        ts, sp = it.timestamp[mine], it.split[mine]
        # every train time < every valid time < every test time
        assert ts[sp == 0].max() < ts[sp == 1].min() <= ts[sp == 1].max() < ts[sp == 2].min()
        # 12 interactions at 8:1:1 -> round(1.2) = 1 valid, 1 test
        assert (sp == 1).sum() == 1 and (sp == 2).sum() == 1


def test_random_split_sizes_and_every_user_trains():
    counts = [1, 2, 3, 4, 5, 10, 15, 20]
    df = pd.DataFrame({"user_id": np.repeat([f"u{k}" for k in range(len(counts))], counts),
                       "item_id": np.concatenate([[f"i{j}" for j in range(c)] for c in counts])})
    p = prepare_interactions(df, seed=0)
    it = p.interactions
    assert p.report["split"]["by"] == "random"
    per = {it.user_ids[u]: np.bincount(it.split[it.user_idx == u], minlength=3).tolist()
           for u in range(it.n_users)}
    assert per["u0"] == [1, 0, 0] and per["u1"] == [2, 0, 0]  # short users: all train
    assert per["u2"] == [1, 1, 1] and per["u3"] == [2, 1, 1]
    assert per["u4"] == [3, 1, 1] and per["u5"] == [8, 1, 1]
    assert per["u6"] == [11, 2, 2] and per["u7"] == [16, 2, 2]
    assert p.report["short_users"]["n"] == 2
    assert (np.bincount(it.user_idx[it.split == 0], minlength=it.n_users) >= 1).all()


def test_short_user_policies():
    df = pd.DataFrame({"user_id": ["a", "a", "b", "b", "b", "c", "c", "c"],
                       "item_id": ["x", "y", "x", "y", "z", "x", "y", "z"]})
    with pytest.raises(DataError, match=r"'a' \(2\)"):
        prepare_interactions(df, short_users="error")
    p = prepare_interactions(df, short_users="drop")
    assert p.interactions.user_ids == ["b", "c"]
    p = prepare_interactions(df, split="0.5,0,0.5", short_users="error")  # 2 suffice here
    assert p.interactions.n_users == 3


@pytest.mark.parametrize("bad, match", [
    ({"user_id": [None, "u"]}, r"column 'user_id' \(user id\) is empty at line 2"),
    ({"rating": ["5", "x"]}, r"'rating' \(rating\) is missing or not a number at line 3"),
    ({"timestamp": [1, float("nan")]}, r"'timestamp' \(timestamp\) .* at line 3"),
])
def test_bad_values_name_the_line(bad, match):
    df = pd.DataFrame({"user_id": ["u", "u"], "item_id": ["a", "b"], "rating": [5, 5],
                       "timestamp": [1, 2]})
    for k, v in bad.items():
        df[k] = v
    with pytest.raises(DataError, match=match):
        prepare_interactions(df, rating_col="rating", timestamp_col="timestamp", source="r.csv")


def test_option_errors():
    df = _frame([("u", "a")])
    with pytest.raises(DataError, match="missing column"):
        prepare_interactions(df, rating_col="stars")
    with pytest.raises(ConfigError, match="needs a rating column"):
        prepare_interactions(df, min_rating=4)
    with pytest.raises(ConfigError, match="timestamp"):
        prepare_interactions(df, split_by="time")
    with pytest.raises(ConfigError, match="train ratio"):
        parse_split("0,0.5,0.5")
    with pytest.raises(ConfigError):
        parse_split("0.8,0.2")
    assert parse_split([8, 1, 1]) == (0.8, 0.1, 0.1)


def test_natural_order():
    ids = ["b", "a", "10"]
    assert [ids[i] for i in natural_order(ids)] == ["10", "a", "b"]
    ids = ["10", "2", "1"]
    assert [ids[i] for i in natural_order(ids)] == ["1", "2", "10"]


def test_prepare_is_vectorised_on_100k_rows():
    rng = np.random.default_rng(0)
    n = 100_000
    df = pd.DataFrame({"user_id": rng.integers(0, 2000, n), "item_id": rng.integers(0, 3000, n),
                       "rating": rng.integers(1, 6, n), "timestamp": rng.integers(0, 10**9, n)})
    t0 = time.perf_counter()
    p = prepare_interactions(df, rating_col="rating", timestamp_col="timestamp", min_rating=3,
                             k_core=5)
    elapsed = time.perf_counter() - t0
    assert p.interactions.n_interactions > 40_000
    assert elapsed < 5.0, f"prepare took {elapsed:.1f}s on 100k rows"
