"""Attribution verbs end to end on a toy workspace: explain_item(s), cache, reports, errors."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file, save_file

from befa_viz import pipeline
from befa_viz.attribution.cache import AttributionCache, AttributionKey
from befa_viz.cache import Cache
from befa_viz.data.types import Catalog, RecDataset
from befa_viz.errors import ConfigError, DataError, StaleArtifactError, UnknownNameError
from befa_viz.testing import synthetic_attribution, toy_dataset, toy_workspace
from befa_viz.workspace import Workspace

pytestmark = pytest.mark.filterwarnings("ignore:ig. completeness error:UserWarning")


def _runs(ws: Workspace) -> dict[str, pipeline.Any]:
    runs = [pipeline.load_run(ws, p) for p in ws.run_dirs()]
    return {r.config.adapter: r for r in runs}


def test_paired_runs_and_encoder_are_found(toy_ws):
    runs = _runs(toy_ws)
    assert pipeline.find_paired_run(toy_ws, runs["none"]).name == runs["befa"].name
    assert pipeline.find_paired_run(toy_ws, runs["befa"]).name == runs["none"].name
    enc = pipeline.encoder_for_run(runs["befa"], "text")
    assert enc.key == "tiny:text"
    assert enc.fingerprint() == runs["befa"].features["text"].encoder_fingerprint


def test_explain_item_pair_scores_and_report(toy_ws, tmp_path):
    e = pipeline.explain_item("i3", workspace=toy_ws, n_steps=8, cache=tmp_path / "c")
    runs = _runs(toy_ws)
    assert e.variants == ["without", "with"]
    assert e.runs == {"without": runs["none"].name, "with": runs["befa"].name}
    assert e.item_id == "i3" and e.item["title"] == "red hat"
    assert e.attributions["without"].target == "content_score"
    assert e.attributions["with"].target == "adapted_alignment"
    assert e.attributions["with"].values.shape == (32, 32)
    assert e.params["baseline"] == "blur" and e.params["n_steps"] == 8
    assert e.relevance["source"] == "behaviour_alignment"  # the toy has no ground truth
    for v in e.variants:
        s = e.scores[v]
        assert 0 <= s["drift"] <= 1 and 0 <= s["omission"] <= 1
        assert np.isfinite(s["deletion_auc"]) and np.isfinite(s["insertion_auc"])
    assert e.gate["without"] == {}
    assert 0 < e.gate["with"]["item_gate_mean"] < 1 and "q95" in e.gate["with"]
    assert e.cached == {"without": False, "with": False}

    paths = pipeline.write_item_report(e, tmp_path / "out", formats=("png", "svg", "html"))
    folder = tmp_path / "out" / "i3-image-ig-content_score"
    assert set(paths) >= {"report.png", "report.svg", "heatmap.png", "report.html",
                          "attributions.npz", "scores.json", "relevance.npy"}
    assert all(p.parent == folder and p.is_file() for p in paths.values())
    assert paths["report.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(paths["scores.json"].read_text())
    assert data["item_id"] == "i3" and data["scores"]["with"]["drift"] == e.scores["with"]["drift"]
    with np.load(paths["attributions.npz"]) as z:
        np.testing.assert_allclose(z["with"], e.attributions["with"].values)
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_text_item_gets_token_report(toy_ws, tmp_path):
    e = pipeline.explain_item("i3", workspace=toy_ws, modality="text", n_steps=8,
                              cache=tmp_path / "c")
    assert e.attributions["with"].tokens[:3] == ["a", "red", "hat"]
    assert e.params["baseline"] == "pad"
    paths = pipeline.write_item_report(e, tmp_path / "out", formats=("png",))
    assert "befa-token" in paths["tokens.html"].read_text()
    assert paths["heatmap.png"].is_file() and "report.svg" not in paths


def test_repeated_request_is_served_from_cache(toy_ws, tmp_path, count_method_calls):
    cache = tmp_path / "cache"
    first = pipeline.explain_item("i4", workspace=toy_ws, n_steps=4, cache=cache)
    assert len(count_method_calls) == 3  # without, with, and the relevance map
    again = pipeline.explain_item("i4", workspace=toy_ws, n_steps=4, cache=cache)
    assert len(count_method_calls) == 3
    assert again.cached == {"without": True, "with": True}
    for v in first.variants:
        np.testing.assert_array_equal(again.attributions[v].values, first.attributions[v].values)
        assert again.scores[v] == first.scores[v]
    pipeline.explain_item("i4", workspace=toy_ws, n_steps=5, cache=cache)  # other params
    assert len(count_method_calls) == 6
    pipeline.explain_item("i4", workspace=toy_ws, n_steps=4, cache=cache, use_cache=False)
    assert len(count_method_calls) == 9
    assert len(Cache(cache).entries("attribution")) == 6


def test_cache_key_ignores_batch_size_and_tracks_every_input(tmp_path):
    base = dict(run="w", dataset="d", encoder="tiny:cnn", encoder_fingerprint="e",
                features="f", item_id="i0", modality="image", target="content_score",
                method="ig", adapter=True, method_params={"n_steps": 8})
    ac = AttributionCache(Cache(tmp_path))
    k0 = ac.key(AttributionKey(**base))
    same = dict(base, method_params={"n_steps": 8, "internal_batch_size": 2})
    assert ac.key(AttributionKey(**same)) == k0
    changes = {"run": "w2", "dataset": "d2", "encoder_fingerprint": "e2", "features": "f2",
               "item_id": "i1", "target": "user_score", "adapter": False,
               "method_params": {"n_steps": 9}, "target_params": {"user": "u1"}}
    keys = {ac.key(AttributionKey(**dict(base, **{k: v}))) for k, v in changes.items()}
    assert k0 not in keys and len(keys) == len(changes)
    ac.put(AttributionKey(**base), synthetic_attribution(0))
    assert ac.get(AttributionKey(**same)).item_id == "i0"


def test_stale_entries_not_served_after_run_or_features_change(tmp_path, count_method_calls):
    ws = toy_workspace(tmp_path / "ws")
    pipeline.explain_item("i3", workspace=ws, n_steps=4)
    n = len(count_method_calls)
    # resuming a run whose best epoch stays the same keeps its weights: still served
    pipeline.train_model(ws, model="vbpr", adapter="none", dataset="toy", epochs=3, seed=999,
                         resume=True)
    assert pipeline.explain_item("i3", workspace=ws, n_steps=4).cached["without"]
    # the run without the adapter changes in place (e.g. weights replaced): recomputed
    run_dir = _runs(ws)["none"].path
    weights = load_file(run_dir / "model.safetensors")
    weights["projections.image.weight"] += 0.5
    save_file(weights, run_dir / "model.safetensors")
    e = pipeline.explain_item("i3", workspace=ws, n_steps=4)
    assert e.cached == {"without": False, "with": True}
    assert len(count_method_calls) == n + 2  # the "without" map and its relevance map
    # features changed on disk after training: refused, never served from the cache
    feat = _runs(ws)["befa"].info["features"]["image"]["path"]
    np.save(feat, np.load(feat) + 1.0)
    with pytest.raises(StaleArtifactError, match="changed since training"):
        pipeline.explain_item("i3", workspace=ws, n_steps=4)


def test_encoder_mismatch_is_stale(toy_ws, monkeypatch):
    from befa_viz.encoders.tiny import TinyCNN

    monkeypatch.setattr(TinyCNN, "fingerprint", lambda self: "0123456789abcdef")
    with pytest.raises(StaleArtifactError, match="tiny:cnn.*other weights"):
        pipeline.explain_item("i3", workspace=toy_ws, n_steps=4)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"item_id": "i99"}, UnknownNameError, "Unknown item id 'i99'.*Closest ids: i9"),
    ({"item_id": "i3", "n_steps": 0}, ConfigError, "n_steps .* must be >= 1; got 0"),
    ({"item_id": "i3", "user": "u1", "target": "content_focus"}, ConfigError, "user_score"),
    ({"item_id": "i3", "user": "nobody"}, UnknownNameError, "Unknown user id 'nobody'"),
    ({"item_id": "i3", "method": "igg"}, UnknownNameError, "'ig'"),
    ({"item_id": "i3", "method": "gradcam", "modality": "text"}, ConfigError,
     "does not support the text modality"),
    ({"item_id": "i3", "modality": "audio"}, ConfigError, "'image' or 'text'"),
])
def test_bad_inputs_raise_clear_errors(toy_ws, tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        pipeline.explain_item(workspace=toy_ws, cache=tmp_path, **kwargs)


def test_user_score_target_and_explicit_run(toy_ws, tmp_path):
    run = _runs(toy_ws)["none"]
    e = pipeline.explain_item("i3", workspace=toy_ws, run=run.name, user="u0", n_steps=4,
                              compare_adapter=False, cache=tmp_path)
    assert e.variants == ["without"] and e.runs["without"] == run.name
    assert e.params["target"] == "user_score" and e.attributions["without"].params["user"] == "u0"


def _one_run_workspace(root) -> Workspace:
    """A workspace whose item i5 has no image, with only a run without the adapter."""
    ds = toy_dataset(folder=root / "images")
    paths = list(ds.catalog.image_paths)
    paths[5] = None
    cat = Catalog(ds.catalog.item_ids, ds.catalog.titles, ds.catalog.texts, paths)
    ws = Workspace(root)
    RecDataset("toy", cat, ds.interactions, info=ds.info).save(ws.dataset_dir("toy"))
    pipeline.encode_dataset(ws, image_encoder="tiny:cnn", text_encoder="tiny:text",
                            missing="zeros")
    pipeline.train_model(ws, model="vbpr", adapter="none", epochs=1)
    return ws


def test_missing_image_and_missing_pair(tmp_path):
    ws = _one_run_workspace(tmp_path / "ws")
    with pytest.raises(DataError, match="Item 'i5' has no image.*--modality text"):
        pipeline.explain_item("i5", workspace=ws, compare_adapter=False, n_steps=4)
    with pytest.raises(ConfigError, match="no paired run.*--adapter befa --seed 999"):
        pipeline.explain_item("i3", workspace=ws, n_steps=4)
    assert pipeline.find_paired_run(ws, pipeline.load_run(ws)) is None
    e = pipeline.explain_item("i5", workspace=ws, compare_adapter=False, modality="text",
                              n_steps=4)
    assert e.variants == ["without"] and e.attributions["without"].tokens


def test_unwritable_output_and_failed_write_leave_nothing(toy_ws, tmp_path, monkeypatch):
    e = pipeline.explain_item("i3", workspace=toy_ws, method="gradcam", cache=tmp_path / "c")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="Cannot write the report.*is a file"):
        pipeline.write_item_report(e, blocker / "out")
    with pytest.raises(ConfigError, match="Unknown report format"):
        pipeline.write_item_report(e, tmp_path / "out", formats=("gif",))

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("befa_viz.viz.save_arrays", broken)
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="No space left on device"):
        pipeline.write_item_report(e, out, formats=())
    assert list(out.iterdir()) == []  # neither the report folder nor its temporary folder


def test_top_drift_batch_writes_csv(toy_ws, tmp_path):
    exps = pipeline.explain_items(top_drift=3, workspace=toy_ws, method="gradcam",
                                  cache=tmp_path / "c")
    assert len(exps) == 3
    drifts = [x.scores["with"]["drift"] for x in exps]  # the newest run has the adapter
    assert drifts == sorted(drifts, reverse=True)
    out = pipeline.write_item_reports(exps, tmp_path / "out", formats=())  # data only: fast
    table = pd.read_csv(out["csv"], dtype={"item_id": str})
    assert list(table["item_id"]) == [x.item_id for x in exps]
    assert {"drift_without", "drift_with", "insertion_auc_with"} <= set(table.columns)
    np.testing.assert_allclose(table["drift_with"], drifts)
    assert all(set(out["items"][x.item_id]) == {"attributions.npz", "relevance.npy",
                                                "scores.json"} for x in exps)
    assert len(json.loads(out["json"].read_text())) == 3
    with pytest.raises(ConfigError, match="not both"):
        pipeline.explain_items(["i1"], top_drift=2, workspace=toy_ws)


def test_ground_truth_is_the_relevance_map_when_the_data_has_it(tmp_path):
    from befa_viz.data.synth import generate_shop

    ws = Workspace(tmp_path / "ws")
    ds = generate_shop(ws.dataset_dir("shop"), n_items=12, n_users=8, image_size=32,
                       interactions_per_user=(4, 6))
    pipeline.encode_dataset(ws, image_encoder="tiny:cnn", text_encoder="tiny:text")
    for adapter in ("none", "befa"):
        pipeline.train_model(ws, model="vbpr", adapter=adapter, epochs=1)
    counts = np.bincount(ds.interactions.train().item_idx, minlength=ds.n_items)
    iid = ds.catalog.item_ids[int(np.argmax(counts))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        e = pipeline.explain_item(iid, workspace=ws, method="gradcam", sanity=True)
    assert e.relevance["source"] == "ground_truth" and e.relevance["map"].dtype == bool
    assert 0 <= e.scores["with"]["mass_in_mask"] <= 1
    assert set(e.sanity["with"]["rho"]) == {"model", "target", "input"}
    t = pipeline.explain_item(iid, workspace=ws, modality="text", n_steps=4)
    assert t.relevance["source"] == "ground_truth"
    assert t.relevance["map"].shape == t.attributions["with"].values.shape
    assert t.relevance["map"].any()


def test_all_zero_map_gets_a_reason_instead_of_scores(toy_ws, tmp_path, monkeypatch):
    import dataclasses

    import befa_viz.attribution as attribution

    real = attribution.explain

    def zero_maps(*args, **kwargs):
        return [dataclasses.replace(a, values=np.zeros_like(a.values))
                for a in real(*args, **kwargs)]

    monkeypatch.setattr(attribution, "explain", zero_maps)
    e = pipeline.explain_item("i3", workspace=toy_ws, n_steps=4, use_cache=False,
                              cache=tmp_path / "c")
    for v in e.variants:
        s = e.scores[v]
        assert s["unscored"] == "all-zero map"
        assert all(s[k] is None for k in ("drift", "omission", "deletion_auc", "insertion_auc"))
        assert "not scored: all-zero map" in s["verdict"]
        assert e.attributions[v].params["verdict"]["unscored"] == "all-zero map"
    assert e.csv_row()["unscored_with"] == "all-zero map"
