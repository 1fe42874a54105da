from __future__ import annotations

import numpy as np
import pytest

from befa_viz.cache import Cache, atomic_dir
from befa_viz.data.types import Catalog, Interactions, RecDataset
from befa_viz.errors import DataError, UnknownNameError
from befa_viz.registry import Registry


def test_registry_unknown_name_suggests_closest():
    r: Registry[object] = Registry("model")
    r.register("lattice")(object)
    with pytest.raises(UnknownNameError, match="Did you mean 'lattice'"):
        r.get("lattic")
    with pytest.raises(ValueError, match="already registered"):
        r.register("lattice")(object)


def test_cache_key_changes_with_any_input(tmp_path):
    c = Cache(tmp_path)
    base = c.key("attr", fingerprints={"run": "a", "enc": "b"}, params={"steps": 32})
    assert base == c.key("attr", fingerprints={"enc": "b", "run": "a"}, params={"steps": 32})
    assert base != c.key("attr", fingerprints={"run": "a2", "enc": "b"}, params={"steps": 32})
    assert base != c.key("attr", fingerprints={"run": "a", "enc": "b"}, params={"steps": 64})
    assert base != c.key("feat", fingerprints={"run": "a", "enc": "b"}, params={"steps": 32})


def test_atomic_dir_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "entry"
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "half.npy").write_bytes(b"x")
        raise RuntimeError("boom")
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_catalog_rejects_duplicates_and_suggests_ids():
    with pytest.raises(DataError, match="Duplicate item id 'a'"):
        Catalog(["a", "b", "a"], ["", "", ""], ["", "", ""])
    cat = Catalog(["101", "102"], ["x", "y"], ["", ""])
    with pytest.raises(UnknownNameError, match="101"):
        cat.index_of("103")


def test_interactions_validate_indices():
    with pytest.raises(DataError, match="row 1 names item index 5"):
        Interactions([0, 0], [1, 5], [0, 0], n_users=1, n_items=3)
    with pytest.raises(DataError, match="split label 7"):
        Interactions([0], [1], [7], n_users=1, n_items=3)


def test_dataset_save_load_roundtrip_is_byte_identical(tmp_path, toy):
    a = toy.save(tmp_path / "a")
    back = RecDataset.load(a)
    assert back.fingerprint() == toy.fingerprint()
    assert np.array_equal(back.interactions.split, toy.interactions.split)
    b = back.save(tmp_path / "b")
    for f in ("interactions.csv", "users.csv", "dataset.json"):
        assert (a / f).read_bytes() == (b / f).read_bytes()
