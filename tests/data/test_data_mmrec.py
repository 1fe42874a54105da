"""MMRec format: export → import round trip, MMRec's exact layout, and bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from befa_viz.data import export_mmrec, import_mmrec, load_feature_arrays
from befa_viz.errors import DataError
from befa_viz.testing import toy_dataset


@pytest.fixture
def toy_mmrec(tmp_path) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    feats = {"image": rng.normal(size=(12, 5)), "text": rng.normal(size=(12, 3)),
             "audio": rng.normal(size=(12, 2))}
    return export_mmrec(toy_dataset(), tmp_path / "toy", features=feats), feats


def test_round_trip_keeps_everything(toy_mmrec):
    folder, feats = toy_mmrec
    src = toy_dataset()
    ds, loaded = import_mmrec(folder)
    assert ds.name == "toy"
    assert sorted(loaded) == ["audio", "image", "text"]
    for m, a in feats.items():
        assert loaded[m].dtype == np.float32
        np.testing.assert_allclose(loaded[m], a.astype(np.float32))
    a, b = src.interactions, ds.interactions
    for f in ("user_idx", "item_idx", "split", "timestamp"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    # raw ids come back from u_id_mapping.csv / i_id_mapping.csv, texts from items.tsv
    assert ds.user_ids == src.user_ids and ds.catalog.item_ids == src.catalog.item_ids
    assert ds.catalog.titles == src.catalog.titles and ds.catalog.texts == src.catalog.texts
    assert ds.catalog.image_path(3) == src.catalog.image_path(3)
    assert ds.fingerprint() == src.fingerprint()
    assert ds.info["source"]["kind"] == "mmrec"
    assert ds.info["counts"]["split"] == {"train": 24, "valid": 8, "test": 8}


def test_plain_mmrec_folder_uses_integer_ids(toy_mmrec):
    folder, _ = toy_mmrec
    for f in ("u_id_mapping.csv", "i_id_mapping.csv", "items.tsv"):
        (folder / f).unlink()
    ds, feats = import_mmrec(folder, modalities=["image"])
    assert list(feats) == ["image"]
    assert ds.catalog.item_ids == [str(i) for i in range(12)]
    assert ds.user_ids == [str(u) for u in range(8)]
    assert ds.catalog.titles == [""] * 12 and not any(ds.catalog.image_paths)


def test_export_is_mmrec_exact_format(toy_mmrec):
    folder, _ = toy_mmrec
    inter = folder / "toy.inter"
    header = inter.read_text().splitlines()[0]
    assert header.split("\t") == ["userID", "itemID", "timestamp", "x_label"]
    # what MMRec's RecDataset.load_inter_graph does:
    df = pd.read_csv(inter, usecols=["userID", "itemID", "x_label"], sep="\t")
    assert df["x_label"].isin([0, 1, 2]).all()
    assert int(df["itemID"].max()) + 1 == np.load(folder / "image_feat.npy").shape[0]
    assert np.load(folder / "image_feat.npy").dtype == np.float32
    assert (folder / "text_feat.npy").is_file() and (folder / "audio_feat.npy").is_file()


def test_items_without_interactions_survive_via_feature_rows(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "m.inter").write_text("userID\titemID\tx_label\n0\t0\t0\n0\t2\t2\n1\t1\t0\n")
    np.save(folder / "image_feat.npy", np.ones((5, 2)))  # items 3, 4 have no interaction
    ds, _ = import_mmrec(folder)
    assert ds.n_items == 5 and ds.info["counts"]["items_without_interactions"] == 2


def _write(folder: Path, inter: str, feats: dict[str, np.ndarray] | None = None) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "bad.inter").write_text(inter)
    for m, a in (feats or {}).items():
        np.save(folder / f"{m}_feat.npy", a)
    return folder


GOOD = "userID\titemID\tx_label\n0\t0\t0\n0\t1\t1\n1\t1\t0\n1\t2\t2\n"


@pytest.mark.parametrize("inter, feats, match", [
    (GOOD, {"image": np.array([[1.0, 2], [np.nan, 0], [0, 0]])},
     r"image_feat\.npy: 1 row\(s\) contain NaN/inf \(first: row 1 = item 1 has NaN"),
    (GOOD, {"text": np.array([[1.0], [np.inf], [0]])}, r"text_feat\.npy: .*row 1 .* inf"),
    (GOOD, {"image": np.ones((2, 4))},
     r"bad\.inter: itemID 2 at line 5 is out of range: the feature files have 2 rows"),
    (GOOD, {"image": np.ones(3)}, r"image_feat\.npy: expected a 2-D array .* shape \(3,\)"),
    (GOOD, {"image": np.ones((3, 2)), "text": np.ones((4, 2))},
     r"disagree on the number of items: image_feat\.npy has 3 rows, text_feat\.npy has 4"),
    (GOOD.replace("1\t2\t2", "1\t2\t5"), None,
     r"bad\.inter: column 'x_label' must be one of 0/1/2 .* got '5' at line 5"),
    (GOOD.replace("0\t1\t1", "0\t1\ttrain"), None, r"'x_label' .* got 'train' at line 3"),
    (GOOD.replace("0\t0\t0", "0\t0.5\t0"), None,
     r"'itemID' must be an integer >= 0; got '0.5' at line 2"),
    ("userID\titemID\tx_label\tscore\n0\t0\t0\t1\n", None, r"unknown column\(s\) 'score'"),
    ("userID\titemID\n0\t0\n", None, r"header lacks 'x_label'"),
    ("userID,itemID,x_label\n0,0,0\n", None, r"must be tab-separated"),
    (GOOD + "2\t0\t1\n2\t1\t2\n", None,
     r"bad\.inter: 1 user\(s\) have no training interaction .* userID 2 at lines 6, 7"),
    (GOOD + "1\t2\t0\n", None, r"\(userID 1, itemID 2\) appears on lines 5, 6"),
    ("userID\titemID\tx_label\n", None, r"no interactions"),
])
def test_bad_inputs_name_file_and_row(tmp_path, inter, feats, match):
    folder = _write(tmp_path / "bad", inter, feats)
    with pytest.raises(DataError, match=match):
        import_mmrec(folder)


def test_unreadable_feature_file(tmp_path):
    folder = _write(tmp_path / "bad", GOOD)
    (folder / "image_feat.npy").write_bytes(b"not numpy")
    with pytest.raises(DataError, match=r"image_feat\.npy: cannot be read"):
        import_mmrec(folder)
    (folder / "image_feat.npy").unlink()
    np.save(folder / "image_feat.npy", np.array([["a"], ["b"], ["c"]]))
    with pytest.raises(DataError, match="numeric"):
        import_mmrec(folder)


def test_explicit_policies_are_recorded(tmp_path):
    inter = ("userID\titemID\tx_label\tscore\n0\t0\t0\t1\n0\t0\t0\t1\n0\t1\t2\t1\n"
             "5\t1\t1\t1\n")
    folder = _write(tmp_path / "p", inter)
    ds, _ = import_mmrec(folder, extra_columns="ignore", duplicates="drop", cold_users="drop")
    pol = ds.info["policies"]
    assert pol["extra_columns"]["ignored"] == ["score"]
    assert pol["duplicates"]["dropped"] == 1
    assert pol["cold_users"] == {"policy": "drop", "dropped_users": 1, "dropped_lines": 1}
    assert ds.n_users == 1 and ds.interactions.n_interactions == 2


def test_several_inter_files_need_a_choice(tmp_path):
    folder = _write(tmp_path / "two", GOOD)
    (folder / "other.inter").write_text(GOOD)
    with pytest.raises(DataError, match="exactly one <name>.inter"):
        import_mmrec(folder)
    assert import_mmrec(folder, inter_file="other.inter")[0].name == "other"


def test_load_feature_arrays_checks_rows(tmp_path):
    np.save(tmp_path / "image_feat.npy", np.zeros((4, 2)))
    assert load_feature_arrays(tmp_path, n_items=4)["image"].shape == (4, 2)
    with pytest.raises(DataError, match="has 4 rows but the dataset has 5 items"):
        load_feature_arrays(tmp_path, n_items=5)
    with pytest.raises(DataError, match="no feature file for modality 'text'"):
        load_feature_arrays(tmp_path, modalities=["text"])


def test_export_rejects_bad_features(tmp_path):
    with pytest.raises(DataError, match="has 3 rows but the dataset has 12 items"):
        export_mmrec(toy_dataset(), tmp_path, features={"image": np.ones((3, 2))})
