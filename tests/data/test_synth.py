"""The synthetic shop: determinism, ground-truth consistency, splits and knob validation."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from befa_viz.data.synth import (
    COLOURS,
    MASK_NAMES,
    ShopConfig,
    generate_shop,
    load_ground_truth,
    render_item,
)
from befa_viz.data.synth_text import COLOUR_WORDS, KIND_WORDS, PATTERN_WORDS, word_tokens
from befa_viz.data.types import RecDataset
from befa_viz.errors import ConfigError, DataError

SMALL = {"n_items": 40, "n_users": 25, "image_size": 64, "interactions_per_user": (6, 10),
         "decoy_rate": 0.5, "sticker_rate": 0.3}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("synth") / "shop"
    generate_shop(folder, **SMALL)
    return folder


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files(shop: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate_shop(again, **SMALL)
    assert _hashes(again) == _hashes(shop)
    other = _hashes(generate_shop(tmp_path / "other", **SMALL, seed=1).path)
    first = _hashes(shop)
    assert set(other) == set(first)
    changed = {k for k in first if first[k] != other[k]}
    assert "interactions.csv" in changed and "ground_truth/masks.npz" in changed
    assert sum(k.startswith("images/") for k in changed) == SMALL["n_items"]


def test_dataset_layout_counts_and_relative_images(shop: Path, tmp_path: Path) -> None:
    moved = tmp_path / "moved"
    shutil.copytree(shop, moved)
    ds = RecDataset.load(moved)
    assert (ds.n_items, ds.n_users) == (SMALL["n_items"], SMALL["n_users"])
    assert all(p == f"images/{iid}.png" for p, iid in zip(ds.catalog.image_paths,
                                                          ds.catalog.item_ids, strict=True))
    assert ds.catalog.image_path(0).parent == moved / "images"
    assert ds.catalog.image(3).size == (64, 64)
    it = ds.interactions
    counts = np.bincount(it.user_idx, minlength=ds.n_users)
    assert counts.min() >= 6 and counts.max() <= 10
    pairs = it.user_idx * ds.n_items + it.item_idx
    assert len(np.unique(pairs)) == it.n_interactions  # distinct items per user
    for u in range(ds.n_users):  # chronological 8:1:1 per user
        rows = it.user_idx == u
        ts, sp = it.timestamp[rows], it.split[rows]
        assert set(sp.tolist()) == {0, 1, 2}
        assert ts[sp == 0].max() <= ts[sp == 1].min() <= ts[sp == 1].max() <= ts[sp == 2].min()
    info = ds.info["generator"]
    assert info["n_items"] == SMALL["n_items"] and info["seed"] == 0


def test_split_matches_prepare_interactions(shop: Path) -> None:
    from befa_viz.data.prepare import prepare_interactions

    ds = RecDataset.load(shop)
    it = ds.interactions
    frame = pd.DataFrame({"user_id": [ds.user_ids[u] for u in it.user_idx],
                          "item_id": [ds.catalog.item_ids[i] for i in it.item_idx],
                          "ts": it.timestamp})
    assert not frame.duplicated(["user_id", "ts"]).any()  # no ties: both splits are defined
    result = prepare_interactions(frame, timestamp_col="ts", seed=0)
    prepared, items = result.interactions, result.item_ids
    ours = {(ds.user_ids[u], ds.catalog.item_ids[i]): s
            for u, i, s in zip(it.user_idx, it.item_idx, it.split, strict=True)}
    ids = prepared.user_ids
    theirs = {(ids[u], items[i]): s
              for u, i, s in zip(prepared.user_idx, prepared.item_idx, prepared.split,
                                 strict=True)}
    assert ours == theirs


def test_masks_are_disjoint_and_match_the_attributes(shop: Path) -> None:
    gt = load_ground_truth(shop)
    assert set(gt.masks) == set(MASK_NAMES)
    stack = np.stack([gt.masks[n] for n in MASK_NAMES])
    assert stack.shape == (len(MASK_NAMES), SMALL["n_items"], 64, 64)
    assert stack.sum(0).max() == 1  # every pixel has at most one label
    assert (gt.masks["product"].sum((1, 2)) > 0.05 * 64 * 64).all()
    np.testing.assert_array_equal(gt.masks["decoy"].any((1, 2)), gt.attributes["decoy"] == 1)
    np.testing.assert_array_equal(gt.masks["sticker"].any((1, 2)),
                                  gt.attributes["sticker"] == 1)
    assert 0 < gt.attributes["decoy"].sum() < SMALL["n_items"]
    assert gt.masks["props"].any((1, 2)).mean() > 0.8
    assert gt.masks["price_tag"].any((1, 2)).all() and gt.masks["watermark"].any((1, 2)).all()
    assert gt.tastes.shape == (SMALL["n_users"], len(gt.taste_columns))
    np.testing.assert_array_equal(gt.relevant, ~gt.irrelevant)


def test_product_mask_is_exactly_the_visible_drawn_product(shop: Path) -> None:
    gt = load_ground_truth(shop)
    ds = RecDataset.load(shop)
    covers = gt.masks["sticker"] | gt.masks["price_tag"] | gt.masks["watermark"]
    product_label = 1 + MASK_NAMES.index("product")
    for i in range(0, SMALL["n_items"], 3):
        alone, labels = render_item(i, only=("product",), **SMALL)
        drawn = labels == product_label
        # visible product = drawn product minus what is drawn on top of it, nothing else
        np.testing.assert_array_equal(gt.masks["product"][i], drawn & ~covers[i])
        image = np.asarray(ds.catalog.image(i))
        m = gt.masks["product"][i]
        np.testing.assert_array_equal(image[m], alone[m])
        full, full_labels = render_item(i, **SMALL)
        np.testing.assert_array_equal(full, image)


def test_solid_products_show_their_colour(shop: Path) -> None:
    gt = load_ground_truth(shop)
    ds = RecDataset.load(shop)
    attrs = gt.attributes
    checked = 0
    for i, row in attrs.iterrows():
        image = np.asarray(ds.catalog.image(i))
        px = image[gt.masks["product"][i]]
        share = (px == np.array(COLOURS[row["colour"]])).all(1).mean()
        if row["pattern"] == "solid":
            assert share > 0.5, (row["item_id"], share)
            checked += 1
        else:  # patterned: the colour and the light second colour both show
            assert 0.2 < share < 0.95, (row["item_id"], row["pattern"], share)
    assert checked > 0


def test_token_labels_match_the_text_tokens(shop: Path) -> None:
    gt = load_ground_truth(shop)
    ds = RecDataset.load(shop)
    for i, iid in enumerate(ds.catalog.item_ids):
        row = gt.attributes.iloc[i]
        relevant_words = {w.lower() for w in KIND_WORDS[row["kind"]] + COLOUR_WORDS[row["colour"]]
                          + PATTERN_WORDS[row["pattern"]]}
        for field, text in (("title", ds.catalog.titles[i]), ("text", ds.catalog.texts[i])):
            entry = gt.tokens[iid][field]
            toks = word_tokens(text)
            assert entry["tokens"] == [t for t, _, _ in toks]
            assert [text[a:b] for a, b in entry["spans"]] == entry["tokens"]
            labels = gt.token_labels(iid, field)
            assert len(labels) == len(toks)
            assert labels == [int(t.lower() in relevant_words) for t, _, _ in toks]
            assert sum(labels) == 3  # kind, colour and pattern, each named once
        assert 0 < sum(gt.token_labels(iid)) < len(gt.token_labels(iid))


def test_users_prefer_items_that_match_their_tastes(shop: Path) -> None:
    gt = load_ground_truth(shop)
    ds = RecDataset.load(shop)
    cols = gt.taste_columns
    onehot = np.zeros((ds.n_items, len(cols)), np.float32)
    for i, row in gt.attributes.iterrows():
        for a in ("kind", "colour", "pattern"):
            onehot[i, cols.index(f"{a}={row[a]}")] = 1
    util = gt.tastes @ onehot.T  # [U, I]
    it = ds.interactions
    chosen = util[it.user_idx, it.item_idx].mean()
    assert chosen > util.mean() + 1.0


def test_sticker_can_mark_the_popular_items(tmp_path: Path) -> None:
    knobs = {**SMALL, "n_users": 5, "prop_popularity_correlation": 1.0, "decoy_rate": 0.0}
    generate_shop(tmp_path / "s", **knobs)
    attrs = load_ground_truth(tmp_path / "s").attributes
    top = attrs["popularity"].rank(ascending=False) <= round(0.3 * SMALL["n_items"])
    np.testing.assert_array_equal(attrs["sticker"] == 1, top)
    assert load_ground_truth(tmp_path / "s").masks["decoy"].sum() == 0


@pytest.mark.parametrize(
    ("knob", "value"),
    [("n_items", 0), ("n_users", -1), ("n_items", 2.5), ("image_size", 16), ("n_kinds", 9),
     ("n_colours", 0), ("n_patterns", 5), ("product_scale", (0.9, 0.5)),
     ("product_scale", (0.1, 0.5)), ("n_props", (1.5, 2)), ("prop_scale", 0.3),
     ("clutter", 1.5), ("decoy_rate", -0.1), ("decoy_scale", (0.2,)), ("sticker_rate", 2),
     ("prop_popularity_correlation", -0.5), ("price_tag_rate", True), ("watermark_rate", "x"),
     ("n_filler", (3, 1)), ("interactions_per_user", (2, 5)),
     ("interactions_per_user", (5, 1000)), ("taste_strength", -1.0),
     ("taste_strength", float("nan")), ("attribute_weights", (1.0, 1.0)),
     ("attribute_weights", (1.0, -1.0, 1.0)), ("popularity_share", 1.1),
     ("popularity_sigma", -1), ("split", (0.5, 0.5, 0.5)), ("split", (0.0, 0.5, 0.5)),
     ("seed", -3), ("name", "a/b"), ("name", "")],
)
def test_bad_knob_values_raise_config_error_naming_the_knob(knob: str, value: object,
                                                            tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"'{knob}'"):
        generate_shop(tmp_path / "x", **{"n_items": 50, knob: value})
    assert not (tmp_path / "x").exists()


def test_unknown_knob_suggests_the_closest(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Did you mean 'decoy_rate'"):
        generate_shop(tmp_path / "x", decoy_rat=0.5)
    with pytest.raises(ConfigError, match="unknown layer"):
        render_item(0, only=("products",), n_items=50)
    with pytest.raises(DataError, match="outside"):
        render_item(50, n_items=50)


def test_knob_defaults_are_valid_and_recorded(shop: Path) -> None:
    import json

    gen = json.loads((shop / "generator.json").read_text())
    assert gen["knobs"] == ShopConfig.from_knobs(**SMALL).to_dict()
    assert gen["seed"] == 0 and gen["masks"]["names"] == list(MASK_NAMES)


def test_load_ground_truth_refuses_other_datasets(tmp_path: Path) -> None:
    from befa_viz.testing import toy_dataset

    folder = toy_dataset().save(tmp_path / "toy")
    with pytest.raises(DataError, match="not a synthetic shop"):
        load_ground_truth(folder)


def test_cli_synth_reuses_same_knobs_and_refuses_others(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from befa_viz import pipeline
    from befa_viz.cli import app

    runner = CliRunner()
    args = ["data", "synth", "-w", str(tmp_path), "--n-items", "20", "--n-users", "6",
            "-o", "image_size=32", "-o", "interactions_per_user=[4, 6]", "--no-progress"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "6 users, 20 items" in res.output
    folder = tmp_path / "datasets" / "shop"
    before = _hashes(folder)
    stamp = (folder / "dataset.json").stat().st_mtime_ns
    assert runner.invoke(app, args).exit_code == 0
    assert (folder / "dataset.json").stat().st_mtime_ns == stamp  # reused, not rewritten
    with pytest.raises(DataError, match="overwrite"):
        pipeline.synth_dataset(tmp_path, n_items=20, n_users=6, image_size=32,
                               interactions_per_user=(4, 6), seed=1)
    again = pipeline.synth_dataset(tmp_path, n_items=20, n_users=6, image_size=32,
                                   interactions_per_user=(4, 6), seed=1, overwrite=True)
    assert again == folder and _hashes(folder) != before
    assert load_ground_truth(folder).knobs["seed"] == 1
    bad = runner.invoke(app, ["data", "synth", "-w", str(tmp_path), "-o", "decoy_rat=1"])
    assert bad.exit_code != 0 and isinstance(bad.exception, ConfigError)
