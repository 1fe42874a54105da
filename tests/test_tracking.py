"""MLflow tracking (``--track mlflow``) against a temporary local store."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from befa_viz import pipeline
from befa_viz.cli import app
from befa_viz.errors import DataError, MissingDependencyError
from befa_viz.testing import toy_dataset
from befa_viz.tracking import track_run
from befa_viz.workspace import Workspace

mlflow = pytest.importorskip("mlflow", reason="mlflow is in the dev extra; install befa-viz[track]")
runner = CliRunner()


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    w = Workspace(tmp_path_factory.mktemp("ws"))
    toy_dataset().save(w.dataset_dir("toy"))
    pipeline.encode_dataset(w, image_encoder="tiny:cnn", text_encoder=None)
    return w


def _client(uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def test_cli_train_tracks_params_epochs_gate_and_files(ws, tmp_path):
    store = tmp_path / "store"
    r = runner.invoke(app, ["train", "-m", "vbpr", "--adapter", "befa", "--epochs", "3",
                            "--no-progress", "-w", str(ws.root), "--set", "dim=8",
                            "--set", "model_params.reg_weight=0.01",
                            "--track", "mlflow", "--tracking-uri", str(store)])
    assert r.exit_code == 0, r.output + repr(r.exception)
    assert "mlflow: tracked as run" in r.stdout and "mlflow ui --backend-store-uri" in r.stdout
    client = _client(store.as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("befa-viz").experiment_id])
    assert run.data.params["model"] == "vbpr" and run.data.params["adapter"] == "befa"
    assert run.data.params["model_params.reg_weight"] == "0.01"
    assert run.data.params["features.image.encoder"] == "tiny:cnn"
    loss = client.get_metric_history(run.info.run_id, "loss")
    assert sorted(m.step for m in loss) == [1, 2, 3]
    assert len(client.get_metric_history(run.info.run_id, "valid.Recall_at_20")) == 3
    assert 0.0 < run.data.metrics["gate.image.mean"] < 1.0
    assert "test.Recall_at_20" in run.data.metrics
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "metrics.json", "run.json"} <= files
    assert run.info.status == "FINISHED"
    # the same run again is not logged twice
    again = pipeline.track_runs(run.data.tags["befa_viz.run"], ws, tracking_uri=store)
    assert again[0].reused and again[0].run_id == run.info.run_id


def test_default_store_is_the_workspace_and_figures_are_attached(ws, tmp_path):
    run = pipeline.train_model(ws, model="bprmf", epochs=1, overrides=["dim=8"])
    fig = tmp_path / "pair.png"
    fig.write_bytes(b"\x89PNG fake")
    (tracked,) = pipeline.track_runs(run, ws, experiment="exp", artifacts=[fig])
    assert tracked.tracking_uri == (ws.root / "mlruns").as_uri()
    assert (ws.root / "mlruns").is_dir()
    names = {a.path for a in _client(tracked.tracking_uri).list_artifacts(tracked.run_id,
                                                                          "reports")}
    assert names == {"reports/pair.png"}


def test_errors_are_clear(ws, tmp_path, monkeypatch):
    with pytest.raises(DataError, match="not a finished befa-viz run"):
        track_run(tmp_path, tracking_uri=tmp_path / "store")
    run_dir = ws.run_dirs()[0]
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)  # as if not installed
    with pytest.raises(MissingDependencyError, match=r"befa-viz\[track\]"):
        track_run(run_dir, tracking_uri=tmp_path / "store")
