"""A run copied into another workspace reads that workspace's dataset, never the old one's."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from befa_viz import pipeline
from befa_viz.errors import DataError, StaleArtifactError
from befa_viz.testing import toy_dataset
from befa_viz.workspace import Workspace


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("ws_a"))
    toy_dataset().save(ws.dataset_dir("toy"))
    run = pipeline.train_model(ws, model="bprmf", epochs=1)
    return ws, run.path


def _copy_run(run_dir, ws: Workspace):
    target = ws.runs_dir / run_dir.name
    shutil.copytree(run_dir, target)
    return target


def test_copied_run_uses_the_new_workspace_dataset(trained, tmp_path):
    _, run_dir = trained
    ws_b = Workspace(tmp_path / "ws_b")
    toy_dataset().save(ws_b.dataset_dir("toy"))
    _copy_run(run_dir, ws_b)
    run = pipeline.load_run(ws_b, run_dir.name)
    assert run.dataset.path == ws_b.dataset_dir("toy")


def test_copied_run_refuses_other_data_under_the_same_name(trained, tmp_path):
    _, run_dir = trained
    ws_b = Workspace(tmp_path / "ws_b")
    ds = toy_dataset()
    other = dataclasses.replace(ds, catalog=dataclasses.replace(
        ds.catalog, titles=[t + " (new shop)" for t in ds.catalog.titles]))
    other.save(ws_b.dataset_dir("toy"))
    _copy_run(run_dir, ws_b)
    with pytest.raises(StaleArtifactError, match="fingerprint"):
        _ = pipeline.load_run(ws_b, run_dir.name).dataset


def test_copied_run_without_the_dataset_names_the_new_place(trained, tmp_path):
    ws_a, run_dir = trained
    ws_b = Workspace(tmp_path / "ws_b")
    _copy_run(run_dir, ws_b)
    with pytest.raises(DataError, match="is not at") as e:
        _ = pipeline.load_run(ws_b, run_dir.name).dataset
    assert str(ws_b.dataset_dir("toy")) in str(e.value)
    assert ws_a.dataset_dir("toy").is_dir()  # the old one exists, and was not used
