"""Feature store: reuse, invalidation, resume, shards, missing-input policies, validation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from befa_viz.cache import Cache
from befa_viz.data.types import Catalog
from befa_viz.encoders.store import (
    FeatureTable,
    encode_catalog,
    load_features,
    merge_features,
    parse_shard,
)
from befa_viz.errors import ConfigError, DataError, StaleArtifactError
from befa_viz.testing import tiny_image_encoder, tiny_text_encoder, toy_dataset


@pytest.fixture()
def ds(tmp_path):
    return toy_dataset(folder=tmp_path / "images")


def _count_forwards(enc) -> list[int]:
    calls: list[int] = []
    enc.register_forward_hook(lambda m, i, o: calls.append(len(o)))
    return calls


def _encode(ds, enc, **kw):
    return encode_catalog(ds.catalog, enc, dataset_fingerprint=ds.fingerprint(), **kw)


def test_reuse_same_inputs_without_recompute(ds, tmp_path):
    cache = Cache(tmp_path / "features")
    first = _encode(ds, tiny_image_encoder(), cache=cache, dataset_name="toy")
    assert first.path == tmp_path / "features" / "toy" / first.fingerprint
    assert first.manifest["reused"] is False and first.values.shape == (12, 32)
    assert (first.path / "image_feat.npy").is_file() and not (first.path / ".partial").exists()
    enc = tiny_image_encoder()
    calls = _count_forwards(enc)
    again = _encode(ds, enc, cache=cache, dataset_name="toy", batch_size=5)
    assert again.manifest["reused"] is True and calls == []
    np.testing.assert_array_equal(again.values, first.values)
    man = json.loads((first.path / "manifest.json").read_text())
    assert man["encoder"] == "tiny:cnn" and man["shape"] == [12, 32]
    assert man["dataset_fingerprint"] == ds.fingerprint() and man["preprocessing"]["size"] == 32
    assert man["policies"]["missing"] == "error" and man["missing_items"] == []


def test_changed_inputs_change_the_key(ds, tmp_path):
    cache = Cache(tmp_path)
    base = _encode(ds, tiny_image_encoder(), cache=cache).fingerprint
    assert _encode(ds, tiny_image_encoder(seed=1), cache=cache).fingerprint != base
    assert _encode(ds, tiny_image_encoder(), cache=cache, missing="zeros").fingerprint != base
    other = encode_catalog(ds.catalog, tiny_image_encoder(), dataset_fingerprint="other",
                           cache=cache)
    assert other.fingerprint != base
    t1 = _encode(ds, tiny_text_encoder(), cache=cache)
    t2 = _encode(ds, tiny_text_encoder(), cache=cache, text_field="title")
    assert t1.fingerprint != t2.fingerprint and not np.allclose(t1.values, t2.values)


def test_resume_after_interruption_equals_uninterrupted(ds, tmp_path):
    reference = _encode(ds, tiny_image_encoder(), batch_size=2, chunk_size=4)  # in memory

    def boom(k: int) -> None:
        if k == 2:  # after chunk 0 (batches 0, 1) and half of chunk 1
            raise KeyboardInterrupt

    out = tmp_path / "entry"
    with pytest.raises(KeyboardInterrupt):
        _encode(ds, tiny_image_encoder(), out_dir=out, batch_size=2, chunk_size=4, _on_batch=boom)
    assert sorted(p.name for p in (out / ".partial").glob("chunk-*")) == ["chunk-000000.npz"]
    assert not (out / "manifest.json").exists()
    with pytest.raises(DataError, match="interrupted"):
        load_features(out)
    enc = tiny_image_encoder()
    calls = _count_forwards(enc)
    resumed = _encode(ds, enc, out_dir=out, batch_size=2, chunk_size=4)
    assert calls == [2, 2, 2, 2]  # chunks 1 and 2 only
    np.testing.assert_array_equal(resumed.values, reference.values)
    np.testing.assert_array_equal(load_features(out).values, reference.values)
    assert not (out / ".partial").exists()


def test_shards_then_merge(ds, tmp_path):
    reference = _encode(ds, tiny_text_encoder(), chunk_size=3, batch_size=2)
    cache = Cache(tmp_path)
    parts = [_encode(ds, tiny_text_encoder(), cache=cache, chunk_size=3, batch_size=2,
                     shard=s) for s in ("0/3", "1/3")]
    assert [p.manifest["complete"] for p in parts] == [False, False]
    assert parts[0].item_ids == ["i0", "i1", "i2", "i9", "i10", "i11"]  # chunks 0 and 3
    np.testing.assert_array_equal(parts[1].values, reference.values[3:6])
    entry = parts[0].path
    with pytest.raises(DataError, match="shard.*2/3"):
        merge_features(entry)
    last = _encode(ds, tiny_text_encoder(), cache=cache, chunk_size=3, batch_size=2,
                   shard=(2, 3))
    assert last.manifest.get("complete", True) and last.path == entry
    np.testing.assert_array_equal(last.values, reference.values)
    np.testing.assert_array_equal(merge_features(entry).values, reference.values)
    with pytest.raises(ConfigError, match="i/n"):
        parse_shard("3")
    with pytest.raises(ConfigError):
        parse_shard((3, 3))


def test_run_without_shard_completes_missing_shards(ds, tmp_path):
    _encode(ds, tiny_text_encoder(), out_dir=tmp_path, chunk_size=4, shard="1/3")
    enc = tiny_text_encoder()
    calls = _count_forwards(enc)
    full = _encode(ds, enc, out_dir=tmp_path, chunk_size=4, batch_size=4)
    assert calls == [4, 4]  # chunks 0 and 2; chunk 1 came from the shard
    np.testing.assert_array_equal(full.values, _encode(ds, tiny_text_encoder(),
                                                       chunk_size=4, batch_size=4).values)


def _catalog_with_gaps(ds, tmp_path) -> Catalog:
    paths = list(ds.catalog.image_paths)
    paths[3] = None
    paths[5] = str(tmp_path / "gone.png")
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    paths[7] = str(bad)
    texts = list(ds.catalog.texts)
    texts[4] = "   "
    return Catalog(ds.catalog.item_ids, ds.catalog.titles, texts, paths)


def test_missing_images_error_names_the_item(ds, tmp_path):
    cat = _catalog_with_gaps(ds, tmp_path)
    with pytest.raises(DataError, match=r"item 'i3' \(row 3\): no image.*missing='zeros'"):
        encode_catalog(cat, tiny_image_encoder(), dataset_fingerprint="x")
    only_broken = Catalog(cat.item_ids, cat.titles, cat.texts,
                          [p if i == 7 else ds.catalog.image_paths[i]
                           for i, p in enumerate(cat.image_paths)])
    with pytest.raises(DataError, match="broken.png of item 'i7' cannot be read"):
        encode_catalog(only_broken, tiny_image_encoder(), dataset_fingerprint="x")
    with pytest.raises(DataError, match=r"item 'i4' \(row 4\): empty text"):
        encode_catalog(cat, tiny_text_encoder(), dataset_fingerprint="x")


def test_missing_inputs_as_zero_rows_are_listed(ds, tmp_path):
    cat = _catalog_with_gaps(ds, tmp_path)
    img = encode_catalog(cat, tiny_image_encoder(), dataset_fingerprint="x", missing="zeros",
                         out_dir=tmp_path / "img", chunk_size=4, batch_size=3)
    listed = {m["item_id"]: m["reason"] for m in img.manifest["missing_items"]}
    assert sorted(listed) == ["i3", "i5", "i7"]
    assert listed["i3"] == "no image" and "does not exist" in listed["i5"]
    assert "cannot be read" in listed["i7"]
    assert not img.values[[3, 5, 7]].any() and np.abs(img.values[[0, 1, 2, 4, 6]]).sum() > 0
    ok = _encode(ds, tiny_image_encoder())
    np.testing.assert_allclose(img.values[0], ok.values[0], atol=1e-6)
    stored = load_features(tmp_path / "img" / "image_feat.npy")
    assert [m["row"] for m in stored.manifest["missing_items"]] == [3, 5, 7]
    txt = encode_catalog(cat, tiny_text_encoder(), dataset_fingerprint="x", missing="zeros")
    assert [m["item_id"] for m in txt.manifest["missing_items"]] == ["i4"]
    assert not txt.values[4].any()


@pytest.mark.parametrize("loader", ["sync", "dataloader"])
def test_loaders_give_identical_features(ds, loader):
    ref = _encode(ds, tiny_image_encoder(), batch_size=5)
    got = _encode(ds, tiny_image_encoder(), batch_size=5, loader=loader)
    np.testing.assert_array_equal(got.values, ref.values)


def test_load_features_validates(ds, tmp_path):
    t = _encode(ds, tiny_image_encoder(), out_dir=tmp_path / "e")
    npy = tmp_path / "e" / "image_feat.npy"
    with pytest.raises(StaleArtifactError, match="stale"):
        load_features(t.path, dataset_fingerprint="something-else")
    bad = t.values.copy()
    bad[6, 2] = np.nan
    np.save(npy, bad)
    with pytest.raises(DataError, match=r"row 6 \(item 'i6', NaN\)"):
        load_features(t.path)
    bad[6, 2] = np.inf
    np.save(npy, bad)
    with pytest.raises(DataError, match="inf"):
        load_features(t.path)
    np.save(npy, t.values.astype(np.float64))
    with pytest.raises(DataError, match="float32"):
        load_features(t.path)
    np.save(npy, t.values[:-1])
    with pytest.raises(DataError, match="shape"):
        load_features(t.path)
    npy.write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot be read"):
        load_features(t.path)
    with pytest.raises(DataError, match="2-D"):
        FeatureTable(np.zeros(3, np.float32), ["a", "b", "c"], "image", "k", "f", "d")
    # a stored entry whose file was damaged is never served from the cache either
    cache = Cache(tmp_path / "c")
    good = _encode(ds, tiny_image_encoder(), cache=cache)
    np.save(good.path / "image_feat.npy", np.full((12, 32), np.nan, np.float32))
    with pytest.raises(DataError, match="NaN"):
        _encode(ds, tiny_image_encoder(), cache=cache)


def test_out_dir_with_other_inputs_is_replaced(ds, tmp_path):
    a = _encode(ds, tiny_image_encoder(), out_dir=tmp_path)
    b = _encode(ds, tiny_image_encoder(seed=3), out_dir=tmp_path)
    assert a.fingerprint != b.fingerprint and not b.manifest["reused"]
    assert load_features(tmp_path).fingerprint == b.fingerprint


def test_encode_dataset_and_cli(ds, tmp_path):
    from typer.testing import CliRunner

    from befa_viz.cli import app
    from befa_viz.pipeline import Workspace, encode_dataset

    ws = Workspace(tmp_path / "ws")
    ds.save(ws.dataset_dir("toy"))
    r = encode_dataset(ws, image_encoder="tiny:cnn", text_encoder="tiny:text")
    assert r.dataset == "toy" and r.reused == {"image": False, "text": False}
    assert r["image"].parent == ws.features_dir / "toy"
    assert load_features(r["text"], dataset_fingerprint=ws.load_dataset("toy").fingerprint())
    runner = CliRunner()
    args = ["encode", "--workspace", str(ws.root), "--image-encoder", "tiny:cnn",
            "--text-encoder", "tiny:text", "--no-progress"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "dataset: toy" in res.output and res.output.count("reused cache") == 2
    assert str(r["image"]) in res.output
    res = runner.invoke(app, [*args, "--shard", "1/2", "--text-encoder", "none",
                              "--image-encoder", "tiny:cnn:5", "--chunk-size", "4"])
    assert res.exit_code == 0, res.output
    assert "other shards pending" in res.output and "text:" not in res.output
    assert "4x32" in res.output  # shard 1 of 2 holds chunk 1 (items 4..7)
    res = runner.invoke(app, [*args, "--image-encoder", "tiny:cnn", "--missing", "maybe"])
    assert res.exit_code != 0
