"""A catalog without interactions: imported as items only, encoded, explained model-free,
and refused (with the reason) where interactions are needed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from befa_viz import pipeline
from befa_viz.cli import app
from befa_viz.errors import ConfigError, DataError
from befa_viz.workspace import Workspace

runner = CliRunner()


def _photos(root, table: bool = False):
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(
            root / "images" / f"p{i}.png")
    if table:
        pd.DataFrame({"item_id": [f"p{i}" for i in range(4)],
                      "title": ["red shirt", "blue shirt", "green hat", "black shoe"],
                      "colour": ["red", "blue", "green", "black"]}).to_csv(
            root / "items.csv", index=False)
    return root


@pytest.fixture(scope="module")
def photo_ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("items_only")
    ws = Workspace(root / "ws")
    pipeline.import_dataset("table", _photos(root / "photos"), workspace=ws,
                            interactions="none")
    pipeline.encode_dataset(ws, image_encoder="tiny:cnn", text_encoder=None)
    return ws


def test_missing_interactions_suggest_items_only(tmp_path):
    src = _photos(tmp_path / "photos")
    r = runner.invoke(app, ["data", "import", "table", str(src), "-w", str(tmp_path / "ws")])
    assert isinstance(r.exception, DataError)
    assert "-o interactions=none to import the items only" in str(r.exception)


def test_items_table_without_interactions_imports_items_only(tmp_path):
    src = _photos(tmp_path / "shop", table=True)
    r = runner.invoke(app, ["data", "import", "table", str(src), "-w", str(tmp_path / "ws"),
                            "-o", "interactions=none", "-o", "extra_cols=colour"])
    assert r.exit_code == 0, r.output
    assert "4 items only, no interactions" in r.stdout
    ds = Workspace(tmp_path / "ws").load_dataset("shop")
    assert ds.items_only and ds.n_users == 0 and ds.n_items == 4
    assert ds.catalog.titles[0] == "red shirt" and ds.catalog.meta["colour"].tolist()[1] == "blue"
    assert all(ds.catalog.has_image(i) for i in range(4))


def test_photo_folder_is_encoded_and_validated(photo_ws):
    ds = photo_ws.load_dataset()
    assert ds.items_only and ds.catalog.item_ids == ["p0", "p1", "p2", "p3"]
    assert pipeline.latest_features(photo_ws)["image"].is_dir()
    report = pipeline.validate_dataset(workspace=photo_ws)
    assert report.ok and any("items only" in w for w in report.warnings)


@pytest.mark.parametrize("argv", [["train", "-m", "bprmf", "--epochs", "1"],
                                  ["data", "export", "--out", "OUT"]])
def test_training_and_export_refuse_with_the_reason(photo_ws, tmp_path, argv):
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in argv]
    r = runner.invoke(app, [*argv, "-w", str(photo_ws.root)])
    assert isinstance(r.exception, DataError)
    assert "no interactions (imported as items only)" in str(r.exception)


def test_heatmap_runs_model_free_on_items_only(photo_ws, tmp_path):
    out = tmp_path / "maps"
    r = runner.invoke(app, ["heatmap", "--items", "p1,p2", "--steps", "4", "--formats", "png",
                            "--no-progress", "--out", str(out), "-w", str(photo_ws.root)])
    assert r.exit_code == 0, r.output + repr(r.exception)
    assert "imported as items only; explaining the encoder alone" in r.stdout
    assert (out / "p1.png").read_bytes()[:4] == b"\x89PNG" and (out / "p2.npz").is_file()
    res = pipeline.content_heatmaps("p1", workspace=photo_ws, method="similarity")
    assert res.attributions[0].values.shape == (32, 32)
    assert res.attributions[0].params["encoder"] == "tiny:cnn"


def test_heatmap_refuses_model_targets_without_a_run(photo_ws):
    r = runner.invoke(app, ["heatmap", "--item", "p1", "--target", "content_score",
                            "-w", str(photo_ws.root)])
    assert isinstance(r.exception, ConfigError)
    assert "needs a trained recommender" in str(r.exception)
    assert "--target content_focus" in str(r.exception)
