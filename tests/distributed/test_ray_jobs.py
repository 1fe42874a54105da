"""Ray engine: distributed encode and attribution equal the single-process path."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from befa_viz.cli import app
from befa_viz.errors import MissingDependencyError

VOLATILE = {"created", "completed", "seconds"}  # timestamps and wall time


@pytest.fixture(scope="module")
def ray_cluster():
    """One local 2-CPU Ray (loopback) for every Ray test of this module."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, _node_ip_address="127.0.0.1", include_dashboard=False,
             object_store_memory=128 * 1024**2, configure_logging=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_missing_ray_is_one_clear_line(monkeypatch, tmp_path, capsys):
    from befa_viz.cli import main
    from befa_viz.distributed import require_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'befa-viz\[ray\]'"):
        require_ray()
    monkeypatch.setattr(sys, "argv", ["befa-viz", "encode", "--engine", "ray", "-w",
                                      str(tmp_path)])
    with pytest.raises(SystemExit) as ex:
        main()
    assert ex.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "befa-viz[ray]" in err and len(err.splitlines()) == 1


def test_engine_flags_need_ray_engine(tmp_path):
    r = CliRunner().invoke(app, ["encode", "--workers", "2", "-w", str(tmp_path)])
    assert r.exit_code == 2 and "--engine ray" in r.output


def _manifest(folder):
    m = json.loads((folder / "manifest.json").read_text())
    return {k: v for k, v in m.items() if k not in VOLATILE}


def _toy(tmp_path):
    from befa_viz.testing import toy_dataset
    from befa_viz.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    toy_dataset(folder=ws.root / "img").save(ws.dataset_dir("toy"))
    return ws


ENC = {"image_encoder": "tiny:cnn", "text_encoder": "tiny:text", "chunk_size": 2,
       "batch_size": 2}


def test_ray_encode_equals_single_process(ray_cluster, tmp_path):
    from befa_viz.distributed import RayEngine
    from befa_viz.pipeline import encode_dataset

    ws = _toy(tmp_path)
    local = encode_dataset(ws, "toy", **ENC)
    want = {m: (p, local.tables[m].values.copy(), _manifest(p)) for m, p in local.items()}
    shutil.rmtree(ws.features_dir)
    eng = RayEngine(num_workers=2)
    got = encode_dataset(ws, "toy", engine=eng, **ENC)
    assert eng.stats["workers"] == 2 and eng.stats["tasks"] == 6  # 12 items / 2 = 6 chunks
    for m, (path, values, manifest) in want.items():
        assert got[m] == path  # same key, same folder
        np.testing.assert_allclose(got.tables[m].values, values, rtol=1e-5, atol=1e-6)
        assert _manifest(got[m]) == manifest
        assert not (got[m] / ".partial").exists()
    again = encode_dataset(ws, "toy", engine=eng, **ENC)  # a complete entry is reused
    assert all(again.reused.values())


def test_ray_encode_resumes_after_interruption(ray_cluster, tmp_path):
    from befa_viz.cache import Cache
    from befa_viz.distributed import RayEngine, encode_catalog_ray
    from befa_viz.encoders import create_encoder
    from befa_viz.encoders.store import encode_catalog

    ws = _toy(tmp_path)
    ds = ws.load_dataset("toy")
    want = encode_catalog(ds.catalog, create_encoder("tiny:cnn"),
                          dataset_fingerprint=ds.fingerprint(), chunk_size=2, batch_size=2)
    kw = {"modality": "image", "dataset_fingerprint": ds.fingerprint(),
          "cache": Cache(ws.features_dir), "dataset_name": "toy", "chunk_size": 2,
          "batch_size": 2}

    def fail_after_first_chunk(k: int) -> None:  # runs in the workers (pickled by value)
        raise RuntimeError("worker lost")  # after batch k's chunk (one batch) was written

    with pytest.raises(Exception, match="worker lost"):
        encode_catalog_ray(ds.catalog, "tiny:cnn", engine=RayEngine(num_workers=2),
                           _on_batch=fail_after_first_chunk, **kw)
    partial = next(ws.features_dir.glob("toy/*/.partial"))
    kept = len(list(partial.glob("chunk-*.npz")))
    assert 0 < kept < 6  # the tasks that ran wrote their chunk before failing
    table = encode_catalog_ray(ds.catalog, "tiny:cnn", engine=RayEngine(num_workers=2), **kw)
    assert table.manifest["resumed_chunks"] == kept
    np.testing.assert_allclose(table.values, want.values, rtol=1e-5, atol=1e-6)
    assert table.manifest["key"] == want.manifest["key"]


def test_ray_attribution_equals_single_process(ray_cluster, toy_ws, tmp_path):
    from befa_viz.distributed import RayEngine
    from befa_viz.pipeline import explain_items

    kw = {"top_drift": 4, "workspace": toy_ws, "method": "ig", "n_steps": 4,
          "baseline": "black", "faithfulness_steps": 4, "batch_size": 3}
    local = explain_items(cache=tmp_path / "c1", **kw)
    eng = RayEngine(num_workers=2)
    dist = explain_items(cache=tmp_path / "c2", engine=eng, **kw)
    assert eng.stats["workers"] == 2
    assert [e.item_id for e in dist] == [e.item_id for e in local]
    for a, b in zip(local, dist, strict=True):
        for v in a.attributions:
            np.testing.assert_allclose(b.attributions[v].values, a.attributions[v].values,
                                       rtol=1e-4, atol=1e-7)
            assert b.scores[v]["drift"] == pytest.approx(a.scores[v]["drift"], abs=1e-6)
            assert b.cached[v]  # computed by the workers, served from the cache here
    keys = {p.name for p in (tmp_path / "c1" / "attribution").iterdir()}
    assert keys and keys == {p.name for p in (tmp_path / "c2" / "attribution").iterdir()}


BENCH = {"methods": ("ig", "gradcam"), "n_items": 4, "n_items_expensive": 2, "n_text_items": 3,
         "n_steps": 4, "n_examples": 0, "write": False}


def test_ray_benchmark_equals_single_process(ray_cluster, tmp_path):
    from befa_viz import pipeline
    from befa_viz.benchmark import run_benchmark
    from befa_viz.distributed import RayEngine

    ws = pipeline.Workspace(tmp_path / "ws")
    pipeline.synth_dataset(ws, "shop", n_items=24, n_users=20, image_size=32,
                           interactions_per_user=(4, 8))
    pipeline.encode_dataset(ws, "shop", image_encoder="tiny:cnn", text_encoder="tiny:text")
    for adapter in ("none", "befa"):
        pipeline.train_model(ws, model="vbpr", adapter=adapter, dataset="shop", epochs=1)
    local = run_benchmark(ws, cache_dir=tmp_path / "c1", batch_size=1, **BENCH)
    eng = RayEngine(num_workers=2)
    dist = run_benchmark(ws, cache_dir=tmp_path / "c2", batch_size=1, engine=eng, **BENCH)
    n = local.params["maps_computed"]
    assert n > 0 and eng.stats["maps"] == n and eng.stats["workers"] == 2
    assert dist.params["maps_computed"] == 0 and dist.params["maps_cached"] == n
    cols = [c for c in local.table.columns if "seconds" not in c]  # timings differ
    assert dist.table[cols].equals(local.table[cols])  # same scores, verdicts, p-values
    keys = {p.name for p in (tmp_path / "c1" / "attribution").iterdir()}
    assert keys == {p.name for p in (tmp_path / "c2" / "attribution").iterdir()}
    # resume: a job that lost some maps recomputes only those, and nothing when all are there
    lost = sorted((tmp_path / "c2" / "attribution").iterdir())[:3]
    for p in lost:
        shutil.rmtree(p)
    eng = RayEngine(num_workers=2)
    again = run_benchmark(ws, cache_dir=tmp_path / "c2", batch_size=1, engine=eng, **BENCH)
    assert eng.stats["maps"] == 3 and eng.stats["tasks"] == 3
    assert again.table[cols].equals(local.table[cols])
    eng = RayEngine(num_workers=2)
    run_benchmark(ws, cache_dir=tmp_path / "c2", engine=eng, **BENCH)
    assert eng.stats["maps"] == 0 and eng.stats["tasks"] == 0  # no actor started
