"""Importer options: list values, validation against the signature, ``data kinds``, CLI hints."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from befa_viz import pipeline
from befa_viz.cli import app
from befa_viz.data import check_importer_options, export_mmrec, importer_option_specs
from befa_viz.data.registry import cli_hint
from befa_viz.errors import ConfigError
from befa_viz.testing import toy_dataset

runner = CliRunner()


def _table(root: Path) -> Path:
    root.mkdir(parents=True)
    pd.DataFrame({"item_id": ["a", "b", "c"], "title": ["A", "B", "C"],
                  "colour": ["red", "blue", "red"], "size": ["S", "M", "L"]}).to_csv(
        root / "items.csv", index=False)
    pd.DataFrame({"user_id": ["u", "u", "v", "v", "w", "w"],
                  "item_id": ["a", "b", "b", "c", "a", "c"]}).to_csv(
        root / "interactions.csv", index=False)
    return root


@pytest.mark.parametrize("options, expected", [
    ({"modalities": "audio"}, {"modalities": ["audio"]}),           # never 'a','u','d','i','o'
    ({"modalities": "audio, image"}, {"modalities": ["audio", "image"]}),
    ({"modalities": ["image"]}, {"modalities": ["image"]}),
    ({"modalities": "none"}, {"modalities": None}),
    ({"cold_users": "DROP"}, {"cold_users": "drop"}),
    ({"id_maps": True}, {"id_maps": True}),
])
def test_options_are_converted_by_the_signature(options, expected):
    assert check_importer_options("mmrec", options) == expected


@pytest.mark.parametrize("kind, options, needle", [
    ("mmrec", {"cold_users": "xyz"}, "accepted: error, drop. For example: -o cold_users=drop"),
    ("mmrec", {"id_maps": "sometimes"}, "accepted: auto or bool"),
    ("table", {"k_core": "many"}, "'k_core' got 'many'; accepted: int"),
    ("table", {"k_core": 2.5}, "accepted: int"),
    ("table", {"missing_imag": "skip"}, "Did you mean 'missing_image'"),
])
def test_bad_option_values_are_refused(kind, options, needle):
    with pytest.raises(ConfigError, match="importer") as e:
        check_importer_options(kind, options)
    assert needle in str(e.value)


def test_specs_carry_choices_defaults_and_meaning():
    spec = {o.name: o for o in importer_option_specs("table")}
    assert spec["extra_cols"].is_list and spec["extra_cols"].default == ()
    assert spec["missing_image"].choices == ("error", "skip", "keep")
    assert spec["missing_image"].default == "error"
    assert "PIL" in spec["check_images"].help


def test_cli_list_option_keeps_whole_names(tmp_path):
    src = _table(tmp_path / "shop")
    r = runner.invoke(app, ["data", "import", "table", str(src), "-w", str(tmp_path / "ws"),
                            "--split", "1,0,0", "-o", "extra_cols=colour,size"])
    assert r.exit_code == 0, r.output
    items = pd.read_csv(tmp_path / "ws" / "datasets" / "shop" / "items.csv")
    assert {"colour", "size"} <= set(items.columns)
    info = json.loads((tmp_path / "ws" / "datasets" / "shop" / "dataset.json").read_text())
    assert info["info"]["columns"]["extra"] == ["colour", "size"]


def test_cli_refuses_a_value_outside_the_choices(tmp_path):
    src = export_mmrec(toy_dataset(), tmp_path / "src")
    r = runner.invoke(app, ["data", "import", "mmrec", str(src), "-w", str(tmp_path / "ws"),
                            "-o", "cold_users=xyz"])
    assert r.exit_code != 0
    assert "-o cold_users=drop" in str(r.exception) and "xyz" in str(r.exception)
    assert not (tmp_path / "ws" / "datasets").exists()


def test_importer_hints_use_the_cli_form(tmp_path):
    src = export_mmrec(toy_dataset(), tmp_path / "src")
    inter = next(src.glob("*.inter"))
    lines = inter.read_text().splitlines()
    lines.append("99\t0\t0\t2")  # a user with a test line but no train line
    inter.write_text("\n".join(lines) + "\n")
    with pytest.raises(Exception, match="cold_users='drop'"):  # Python callers: Python form
        pipeline.import_dataset("mmrec", src, workspace=tmp_path / "ws")
    r = runner.invoke(app, ["data", "import", "mmrec", str(src), "-w", str(tmp_path / "ws")])
    assert r.exit_code != 0 and "-o cold_users=drop" in str(r.exception)
    assert "cold_users='drop'" not in str(r.exception)


def test_cli_hint_leaves_other_text_alone():
    assert cli_hint("mmrec", "pass overwrite=True (--overwrite)") == \
        "pass overwrite=True (--overwrite)"


def test_data_kinds_shows_values_defaults_and_meaning():
    r = runner.invoke(app, ["data", "kinds"])
    assert r.exit_code == 0, r.output
    assert "-o cold_users=error|drop  (default: error)" in r.output
    assert "-o extra_cols=<list of text>" in r.output
    assert "Users with valid/test but no train lines" in r.output


def _encoded_ws(tmp_path: Path):
    from befa_viz.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    toy_dataset().save(ws.dataset_dir("toy"))
    pipeline.encode_dataset(ws, image_encoder="tiny:cnn", text_encoder="tiny:text")
    return ws


def test_export_writes_encoded_features_with_provenance(tmp_path):
    import numpy as np

    from befa_viz.encoders.store import load_features

    ws = _encoded_ws(tmp_path)
    r = runner.invoke(app, ["data", "export", "--out", str(tmp_path / "mm"), "-w", str(ws.root)])
    assert r.exit_code == 0, r.output
    assert "image_feat.npy: tiny:cnn" in r.stdout
    entry = pipeline.latest_features(ws, "toy")["image"]
    np.testing.assert_array_equal(np.load(tmp_path / "mm" / "image_feat.npy"),
                                  load_features(entry).values)
    prov = json.loads((tmp_path / "mm" / "features.json").read_text())
    assert set(prov["modalities"]) == {"image", "text"}
    # and MMRec's importer reads it back with the features
    again = pipeline.import_dataset("mmrec", tmp_path / "mm", workspace=ws, name="again")
    assert pipeline.dataset_stats("again", workspace=ws)["imported_features"]["image"] == \
        list(np.load(tmp_path / "mm" / "image_feat.npy").shape)
    assert again.is_dir()


def test_export_without_features_and_names_unexportable_entries(tmp_path, caplog):
    ws = _encoded_ws(tmp_path)
    r = runner.invoke(app, ["data", "export", "--out", str(tmp_path / "bare"), "--no-features",
                            "-w", str(ws.root)])
    assert r.exit_code == 0 and not list((tmp_path / "bare").glob("*_feat.npy"))
    # an entry computed from an older version of the dataset is named, not silently dropped
    entry = pipeline.latest_features(ws, "toy")["text"]
    man = json.loads((entry / "manifest.json").read_text())
    (entry / "manifest.json").write_text(json.dumps({**man, "dataset_fingerprint": "old"}))
    with caplog.at_level("WARNING"):
        pipeline.export_mmrec(tmp_path / "mm", workspace=ws)
    assert "text features in" in caplog.text and "another version of the dataset" in caplog.text
    assert (tmp_path / "mm" / "image_feat.npy").is_file()
    assert not (tmp_path / "mm" / "text_feat.npy").exists()


def test_column_hints_use_the_cli_form(tmp_path):
    src = _table(tmp_path / "shop")
    pd.DataFrame({"customer": ["u"], "item_id": ["a"]}).to_csv(src / "interactions.csv",
                                                               index=False)
    r = runner.invoke(app, ["data", "import", "table", str(src), "-w", str(tmp_path / "ws")])
    assert "Name it with -o user_col=COLUMN." in str(r.exception)
