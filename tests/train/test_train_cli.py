from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from befa_viz.cli import app
from befa_viz.config import read_yaml
from befa_viz.errors import ConfigError
from befa_viz.models import MODELS
from befa_viz.pipeline import latest_features, train_model
from befa_viz.testing import toy_dataset
from befa_viz.train import TrainConfig, expand_grid, load_train_config, paired_tests
from befa_viz.train.config import CONFIGS_DIR
from befa_viz.workspace import Workspace
from tests.train.conftest import write_features

FAST = ["--set", "dim=8", "--set", "batch_size=16", "--set", "lr=0.05"]


@pytest.fixture
def ws(tmp_path):
    """A workspace with the toy dataset and random image/text features with manifests."""
    w = Workspace(tmp_path / "ws")
    ds = toy_dataset()
    ds.save(w.dataset_dir("toy"))
    fp = w.load_dataset("toy").fingerprint()
    rng = np.random.default_rng(0)
    for m, dim in (("image", 16), ("text", 8)):
        folder = write_features(w.features_dir / "toy" / f"{m}key", rng.normal(size=(12, dim)), m,
                                encoder=f"tiny:{m}")
        man = json.loads((folder / "manifest.json").read_text())
        man.update(dataset_fingerprint=fp, created="2026-01-01T00:00:00")
        (folder / "manifest.json").write_text(json.dumps(man))
    return w


def test_every_packaged_config_loads_and_fits_its_model():
    names = sorted(p.stem for p in CONFIGS_DIR.glob("*.yaml"))
    assert {"bprmf", "lightgcn", "vbpr", "lattice", "freedom", "bm3", "mgcn"} <= set(names)
    for name in names:
        cfg = load_train_config(None, model=name)
        assert cfg.model == name and cfg.batch_size == 2048 and cfg.seed == 999
        if name in MODELS:
            import inspect

            params = inspect.signature(MODELS.get(name)).parameters
            assert all(k in params for k in cfg.model_params), name
            assert (cfg.adapter == "none") and ("adapter" in read_yaml(CONFIGS_DIR / f"{name}.yaml")
                                                 or not MODELS.get(name).multimodal)


def test_latest_features_picks_newest_current_entry(ws):
    found = latest_features(ws, "toy")
    assert set(found) == {"image", "text"} and found["image"].name == "imagekey"
    newer = write_features(ws.features_dir / "toy" / "image2", np.ones((12, 4)), "image")
    man = json.loads((newer / "manifest.json").read_text())
    man.update(dataset_fingerprint="other", created="2027-01-01T00:00:00")
    (newer / "manifest.json").write_text(json.dumps(man))
    assert latest_features(ws, "toy")["image"].name == "imagekey"  # stale entry skipped


def test_cli_train_then_evaluate(ws):
    runner = CliRunner()
    res = runner.invoke(app, ["train", "--model", "vbpr", "--adapter", "befa", "--epochs", "3",
                              "--no-progress", "-w", str(ws.root), *FAST])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "dataset: toy" in res.output and "BeFA gate (image)" in res.output
    assert "image features:" in res.output and "tiny:image" in res.output
    run_dir = ws.run_dirs()[-1]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["adapter"] == "befa"
    res = runner.invoke(app, ["evaluate", "-w", str(ws.root)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert run_dir.name in res.output and "most_popular" in res.output
    # a behaviour-only backbone with the adapter: one clear error
    res = runner.invoke(app, ["train", "--model", "bprmf", "--adapter", "befa", "-w",
                              str(ws.root), "--no-progress"])
    assert isinstance(res.exception, ConfigError) and "behaviour-only" in str(res.exception)
    res = runner.invoke(app, ["train", "--model", "lattic", "-w", str(ws.root)])
    assert res.exit_code == 2 and "lattice" in res.output


def test_cli_compare_writes_table_json_and_figure(ws):
    res = CliRunner().invoke(app, ["compare", "--backbone", "vbpr", "--seeds", "2", "--epochs",
                                   "2", "--no-progress", "-w", str(ws.root), *FAST])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "test   Recall@20" in res.output and "smallest two-sided Wilcoxon p is 0.5" in res.output
    report = next(ws.reports_dir.glob("compare-toy-vbpr-*"))
    data = json.loads((report / "comparison.json").read_text())
    assert len(data["runs"]["none"]) == 2 and len(data["runs"]["befa"]) == 2
    assert set(data["tests"]["test"]) == {"Recall@10", "Recall@20", "NDCG@10", "NDCG@20"}
    assert (report / "comparison.png").stat().st_size > 1000
    assert (report / "comparison.svg").is_file()
    assert data["per_user"]["selected_by"] == "valid Recall@20"


def test_sweep_selects_on_validation(ws, tmp_path):
    f = tmp_path / "sweep.yaml"
    f.write_text("model: bprmf\nepochs: 3\ndim: 8\nbatch_size: 16\n"
                 "sweep:\n  lr: [0.001, 0.05]\n  model_params.reg_weight: [0.0, 0.01]\n")
    res = CliRunner().invoke(app, ["sweep", "--config", str(f), "-w", str(ws.root),
                                   "--no-progress"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    table = json.loads(next(ws.reports_dir.glob("sweep-toy-bprmf-*/sweep.json")).read_text())
    rows = table["rows"]
    assert len(rows) == 4 and "Best by valid Recall@20" in res.output
    best = max(rows, key=lambda r: r["valid Recall@20"])
    assert table["best"] == best["run"]
    f.write_text("model: bprmf\nsweep:\n  lr: 0.1\n")
    with pytest.raises(ConfigError, match="non-empty list"):
        from befa_viz.pipeline import run_sweep

        run_sweep(f, ws)


def test_pipeline_train_uses_latest_dataset_and_errors_without_features(tmp_path):
    w = Workspace(tmp_path / "w")
    toy_dataset().save(w.dataset_dir("toy"))
    run = train_model(w, model="bprmf", epochs=1)
    assert run.info["dataset"] == "toy" and run.info["features"] == {}
    with pytest.raises(ConfigError, match="run 'befa-viz encode' first"):
        train_model(w, model="vbpr", epochs=1)


def test_grid_expansion_and_paired_tests():
    assert len(expand_grid({"a": [1, 2, 3], "b": [0, 1]})) == 6
    out = paired_tests([0.1, 0.1, 0.1], [0.1, 0.1, 0.1])
    assert out["n_better"] == 0 and np.isnan(out["t_p"]) and np.isnan(out["wilcoxon_p"])
    rng = np.random.default_rng(0)
    a = rng.random(200)
    out = paired_tests(a, a + 0.05 + 0.01 * rng.normal(size=200))
    assert out["t_p"] < 1e-6 and out["wilcoxon_p"] < 1e-6
    assert TrainConfig().identity() == TrainConfig(epochs=3, device="cpu").identity()
