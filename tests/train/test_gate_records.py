"""What a run records about the gate, fine-tuned features and the most-popular floor."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

from befa_viz.data.types import Catalog, Interactions, RecDataset
from befa_viz.train import Run, TrainConfig, evaluate, train
from befa_viz.train.trainer import gate_note

FAST = {"epochs": 4, "lr": 0.05, "batch_size": 64, "dim": 8, "patience": 50}
KNN = {"knn_k": 3}


def _cfg(feat_dir, **kw) -> TrainConfig:
    return TrainConfig(**{**FAST, "model": "lightgcn_knn", "model_params": KNN,
                          "features": {"image": str(feat_dir)}, **kw})


@pytest.mark.filterwarnings("ignore:The BeFA gate")
def test_trainable_features_are_recorded_saved_and_reloaded(tmp_path, planted_data):
    ds, feat_dir = planted_data
    run = train(ds, _cfg(feat_dir, adapter="befa", train_features=True),
                runs_dir=tmp_path / "runs")
    evals = [h for h in run.history if "valid" in h]
    assert len(evals) == 4
    for h in evals:  # the gate's trajectory and the table's drift, per evaluation
        assert set(h["gate"]["image"]) == {"mean", "std", "frac_below_0.1", "frac_above_0.9"}
        assert 0 < h["feature_cosine"]["image"] <= 1 + 1e-6
    assert evals[-1]["feature_cosine"]["image"] < evals[0]["feature_cosine"]["image"] + 1e-6

    loaded = Run.load(run.path, load_model=True)
    cos = loaded.feature_cosine("image")
    assert cos.shape == (ds.n_items,) and cos.min() < 1 - 1e-4
    drift = loaded.feature_drift["image"]
    assert drift["min"] == pytest.approx(float(cos.min()), abs=1e-6)
    assert drift["mean"] == pytest.approx(float(cos.mean()), abs=1e-6)
    assert drift["q00"] <= drift["q50"] <= drift["q100"]
    note = loaded.feature_note("image", 3)
    assert note.startswith("this model used a fine-tuned copy of the image feature (cosine ")
    assert f"{cos[3]:.3f}" in note
    # the reloaded model holds the fine-tuned table, not the encoder output it was built from
    model = loaded.model
    encoder_output = np.load(feat_dir / "image_feat.npy")
    assert np.allclose(model.encoder_features("image").numpy(), encoder_output)
    assert not np.allclose(model.raw_features("image").detach().numpy(), encoder_output)
    assert np.allclose(model.feature_cosine("image").numpy(), cos, atol=1e-6)
    assert evaluate(model, ds, "test") == pytest.approx(loaded.test_metrics)
    assert "gate_notes" in loaded.metrics and loaded.gate_notes["image"]
    assert loaded.metrics["most_popular"]["Recall@20"] > 0


def test_frozen_features_record_no_drift(tmp_path, planted_data):
    ds, feat_dir = planted_data
    run = train(ds, _cfg(feat_dir, epochs=2), runs_dir=tmp_path / "runs")
    assert not run.trained_features and run.feature_drift == {}
    assert run.feature_cosine("image") is None and run.feature_note("image", 0) is None
    assert not (run.path / "feature_cosine.npz").exists()
    assert all("feature_cosine" not in h and "gate" not in h for h in run.history)


def test_train_features_changes_the_run_identity_only_when_on():
    off, on = TrainConfig(model="freedom"), TrainConfig(model="freedom", train_features=True)
    assert "train_features" not in off.identity()  # runs trained before it keep their hash
    assert off.short_hash() != on.short_hash()


@pytest.mark.parametrize(("stats", "start"), [
    ({"mean": 0.95, "q05": 0.4, "frac_below_0.1": 0.016, "frac_above_0.9": 0.92,
      "items_any_below_0.1": 0.3}, "bimodal: 1.6 % of gate values < 0.1 (on 30.0 % of items)"),
    ({"mean": 0.999, "q05": 0.998, "frac_below_0.1": 0.0, "frac_above_0.9": 1.0},
     "pinned near 1: 5th percentile 0.998"),
    ({"mean": 0.5, "q05": 0.3, "frac_below_0.1": 0.0, "frac_above_0.9": 0.0},
     "unimodal: 0.0 % < 0.1"),
])
def test_gate_note(stats, start):
    assert gate_note(stats).startswith(start)


def _popular_dataset(tmp_path, share: float) -> RecDataset:
    """Users interact with popular items 0-5; a ``share`` of them hold out two of those."""
    rng = np.random.default_rng(0)
    n_users, n_items = 60, 80
    users, items, split = [], [], []
    for u in range(n_users):
        popular = rng.permutation(6)
        others = rng.choice(np.arange(6, n_items), size=6, replace=False)
        held = popular[4:] if u < share * n_users else others[4:]
        chosen = [*popular[:4], *others[:4], *held]
        users += [u] * len(chosen)
        items += [int(i) for i in chosen]
        split += [0] * 8 + [1, 2]
    ids = [f"i{i}" for i in range(n_items)]
    ds = RecDataset(f"popular{share}", Catalog(ids, ids, ["" for _ in ids]),
                    Interactions(np.array(users), np.array(items), np.array(split, np.int8),
                                 n_users, n_items))
    return RecDataset.load(ds.save(tmp_path / "datasets" / ds.name))


def test_a_run_at_or_below_most_popular_warns_and_records_it(tmp_path):
    config = TrainConfig(model="bprmf", epochs=0, dim=4, metric="Recall@5")
    with pytest.warns(UserWarning, match="at or below the most-popular baseline"):
        run = train(_popular_dataset(tmp_path, 0.5), config, runs_dir=tmp_path / "runs")
    assert run.test_metrics["Recall@5"] <= run.metrics["most_popular"]["Recall@5"] < 1
    assert len(run.metrics["warnings"]) == 1 and "most-popular" in run.metrics["warnings"][0]
    with warnings.catch_warnings():  # popularity at the metric's ceiling: nothing to compare
        warnings.simplefilter("error", UserWarning)
        ceiling = train(_popular_dataset(tmp_path, 1.0), config, runs_dir=tmp_path / "runs")
    assert ceiling.metrics["most_popular"]["Recall@5"] == 1.0
    assert ceiling.metrics["warnings"] == []


def test_cli_train_features_flag(tmp_path, planted_data):
    from befa_viz.cli import app
    from befa_viz.workspace import Workspace

    ds, feat_dir = planted_data
    ws = Workspace(tmp_path)
    args = ["train", "-w", str(ws.root), "--model", "freedom", "--dataset", ds.name,
            "--image-features", str(feat_dir), "--epochs", "1", "--no-progress",
            "--set", "dim=8", "--set", "model_params.knn_k=3", "--train-features"]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "fine-tuned image features: cosine to the encoder output mean" in out.output
    run_dir = next((ws.runs_dir).iterdir())
    assert json.loads((run_dir / "metrics.json").read_text())["feature_drift"]["image"]
    out = CliRunner().invoke(app, ["train", "-w", str(ws.root), "--model", "vbpr", "--dataset",
                                   ds.name, "--image-features", str(feat_dir), "--epochs", "1",
                                   "--train-features"])
    assert "train_features=True is for" in str(out.exception)


@pytest.mark.filterwarnings("ignore:The BeFA gate")
def test_resume_with_trainable_features_is_exact(tmp_path, planted_data):
    ds, feat_dir = planted_data
    c = _cfg(feat_dir, adapter="befa", train_features=True, epochs=4)
    full = train(ds, c, runs_dir=tmp_path / "full")

    def stop_at_2(state, model, improved):
        if state.epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(ds, c, runs_dir=tmp_path / "cut", on_epoch_end=stop_at_2)
    resumed = train(ds, c, runs_dir=tmp_path / "cut", resume=True)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    assert resumed.test_metrics == full.test_metrics
    assert np.array_equal(resumed.feature_cosine("image"), full.feature_cosine("image"))
