"""``befa-viz data import|validate|stats|export`` through typer's CliRunner, and the verbs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from befa_viz import pipeline
from befa_viz.cli import app
from befa_viz.data import DATASETS, RecDataset, export_mmrec, importer_options
from befa_viz.errors import ConfigError, DataError, UnknownNameError
from befa_viz.testing import toy_dataset

runner = CliRunner()


def _shop(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    ids = [f"s{i}" for i in range(5)]
    for i in ids:
        Image.new("RGB", (6, 6), (200, 10, 10)).save(root / "images" / f"{i}.jpg")
    pd.DataFrame({"item_id": ids, "title": ids, "text": [f"about {i}" for i in ids]}).to_csv(
        root / "items.csv", index=False)
    users = np.repeat([f"u{u}" for u in range(6)], 4)
    items = [ids[(u + k) % 5] for u in range(6) for k in range(4)]
    pd.DataFrame({"user_id": users, "item_id": items}).to_csv(root / "interactions.csv",
                                                              index=False)
    return root


def test_registry_lists_importers():
    assert DATASETS.names() == ["hm", "mmrec", "movielens", "table"]
    assert "missing_image" in importer_options("table")
    assert "cold_users" in importer_options("mmrec")


def test_cli_import_stats_validate_export_round_trip(tmp_path):
    ws = tmp_path / "ws"
    src = _shop(tmp_path / "shop")
    r = runner.invoke(app, ["data", "import", "table", str(src), "--name", "shop", "-w", str(ws),
                            "--seed", "5", "--split", "0.5,0.25,0.25", "--missing-image", "error",
                            "-o", "empty_text=error"])
    assert r.exit_code == 0, r.output
    assert "Imported 'shop' (table)" in r.output and "6 users, 5 items, 24 interactions" in r.output
    folder = ws / "datasets" / "shop"
    info = json.loads((folder / "dataset.json").read_text())["info"]
    assert info["options"]["seed"] == 5 and info["options"]["split"] == [0.5, 0.25, 0.25]
    assert info["options"]["empty_text"] == "error"

    r = runner.invoke(app, ["data", "stats", "-w", str(ws)])
    assert r.exit_code == 0, r.output
    assert "users" in r.output and "items with image" in r.output and "shop (table)" in r.output
    r = runner.invoke(app, ["data", "stats", "-w", str(ws), "--json"])
    stats = json.loads(r.output)
    assert stats["split"] == {"train": 12, "valid": 6, "test": 6}
    assert stats["items_with_image"] == 5

    r = runner.invoke(app, ["data", "validate", "-w", str(ws), "--dataset", "shop",
                            "--check-images"])
    assert r.exit_code == 0 and "Dataset 'shop': OK" in r.output

    out = tmp_path / "mm"
    r = runner.invoke(app, ["data", "export", "--format", "mmrec", "--out", str(out),
                            "-w", str(ws)])
    assert r.exit_code == 0, r.output
    assert (out / "shop.inter").is_file()

    r = runner.invoke(app, ["data", "import", "mmrec", str(out), "--name", "again",
                            "-w", str(ws)])
    assert r.exit_code == 0, r.output
    again = RecDataset.load(ws / "datasets" / "again")
    assert again.fingerprint() == RecDataset.load(folder).fingerprint()


def test_cli_errors(tmp_path):
    ws = tmp_path / "ws"
    r = runner.invoke(app, ["data", "import", "movielen", str(tmp_path), "-w", str(ws)])
    flat = " ".join(r.output.replace("│", " ").split())  # undo rich's boxed wrapping
    assert r.exit_code == 2 and "Did you mean 'movielens'?" in flat
    src = _shop(tmp_path / "shop")
    r = runner.invoke(app, ["data", "import", "table", str(src), "-w", str(ws),
                            "-o", "missing_imag=skip"])
    assert isinstance(r.exception, ConfigError)
    assert "Did you mean 'missing_image'" in str(r.exception)
    r = runner.invoke(app, ["data", "stats", "-w", str(ws)])
    assert isinstance(r.exception, DataError) and "No dataset in workspace" in str(r.exception)
    r = runner.invoke(app, ["data", "export", "--format", "csv", "--out", str(tmp_path / "o"),
                            "-w", str(ws)])
    assert r.exit_code == 2 and "unknown format 'csv'" in " ".join(r.output.split())


def test_import_dataset_is_idempotent_and_guards_names(tmp_path):
    ws = tmp_path / "ws"
    src = _shop(tmp_path / "shop")
    p1 = pipeline.import_dataset("table", src, workspace=ws, name="s", seed=1)
    stamp = (p1 / "dataset.json").stat().st_mtime_ns
    assert pipeline.import_dataset("table", src, workspace=ws, name="s", seed=1) == p1
    assert (p1 / "dataset.json").stat().st_mtime_ns == stamp  # unchanged: not rewritten
    with pytest.raises(DataError, match=r"already exists .* \(--overwrite\)"):
        pipeline.import_dataset("table", src, workspace=ws, name="s", seed=2)
    p2 = pipeline.import_dataset("table", src, workspace=ws, name="s", seed=2, overwrite=True)
    assert json.loads((p2 / "dataset.json").read_text())["info"]["options"]["seed"] == 2
    with pytest.raises(ConfigError, match="must use only"):
        pipeline.import_dataset("table", src, workspace=ws, name="../evil")
    with pytest.raises(UnknownNameError, match="Did you mean 'table'"):
        pipeline.import_dataset("tabel", src, workspace=ws)


def test_mmrec_features_travel_with_the_dataset(tmp_path):
    ws = tmp_path / "ws"
    feats = {"image": np.arange(24, dtype=np.float64).reshape(12, 2)}
    src = export_mmrec(toy_dataset(), tmp_path / "src", features=feats)
    folder = pipeline.import_dataset("mmrec", src, workspace=ws)
    assert (folder / "features" / "image_feat.npy").is_file()
    manifest = json.loads((folder / "features" / "manifest.json").read_text())
    assert manifest["modalities"]["image"]["shape"] == [12, 2]
    loaded = pipeline.dataset_features(workspace=ws)
    np.testing.assert_array_equal(loaded["image"], feats["image"].astype(np.float32))
    assert pipeline.dataset_stats(workspace=ws)["imported_features"] == {"image": [12, 2]}
    assert pipeline.validate_dataset(workspace=ws).ok
    out = pipeline.export_mmrec(tmp_path / "out", workspace=ws)
    np.testing.assert_array_equal(np.load(out / "image_feat.npy"), loaded["image"])
    # a corrupted feature file is reported by validate
    np.save(folder / "features" / "image_feat.npy", np.full((12, 2), np.nan))
    report = pipeline.validate_dataset(workspace=ws)
    assert not report.ok and "NaN/inf" in report.problems[0]
    with pytest.raises(DataError, match="1 problem"):
        report.raise_for_problems()


def test_validate_reports_missing_image_files(tmp_path):
    ws = tmp_path / "ws"
    src = _shop(tmp_path / "shop")
    pipeline.import_dataset("table", src, workspace=ws, name="s")
    (src / "images" / "s3.jpg").unlink()
    report = pipeline.validate_dataset("s", workspace=ws)
    assert not report.ok and "1 image file(s) missing: 's3'" in report.problems[0]
    r = runner.invoke(app, ["data", "validate", "-w", str(ws)])
    assert "problem: 1 image file(s) missing" in r.output
    assert isinstance(r.exception, DataError)
