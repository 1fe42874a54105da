"""``befa-viz heatmap`` end to end on the toy workspace (CliRunner and the real entry point)."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest
from typer.testing import CliRunner

from befa_viz.cli import app, main

pytestmark = pytest.mark.filterwarnings("ignore:ig. completeness error:UserWarning")
runner = CliRunner()


def _main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run the console entry point (which turns BefaVizError into exit 2)."""
    monkeypatch.setattr(sys, "argv", ["befa-viz", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    out, err = capsys.readouterr()
    return int(exc.value.code), out, err


def test_heatmap_item_writes_png_and_json(toy_ws, tmp_path):
    out = tmp_path / "out"
    args = ["heatmap", "--item", "i3", "--steps", "4", "--formats", "png", "--out", str(out),
            "--cache-dir", str(tmp_path / "cache"), "--no-progress", "-w", str(toy_ws.root)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    folder = out / "i3-image-ig-content_score"
    assert f"report: {folder}" in res.output
    assert "target content_score, method ig (4 steps, baseline blur" in res.output
    lines = res.output.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("item  variant"))
    assert lines[head + 1].split()[:2] == ["i3", "without"]
    assert lines[head + 2].split()[0] == "with" and lines[head + 2].split()[6] == "no"
    assert "controls not checked" in lines[head + 2]  # no benchmark, no --sanity: said so
    assert "completeness error" in lines[head + 2]
    assert lines[head + 3].split()[0] == "Σ|with|/Σ|without|"  # the pair's magnitude ratio
    assert (folder / "report.png").read_bytes()[:4] == b"\x89PNG"
    assert (folder / "heatmap.png").is_file()
    scores = json.loads((folder / "scores.json").read_text())
    assert set(scores["scores"]) == {"without", "with"}
    assert f"{scores['scores']['with']['drift']:.3f}" in lines[head + 2]
    # the same request again is served from the cache
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    lines = res.output.splitlines()  # one-time notices may differ: find the table again
    head = next(i for i, line in enumerate(lines) if line.startswith("item  variant"))
    assert lines[head + 2].split()[6] == "yes"


def test_heatmap_batch_writes_csv(toy_ws, tmp_path):
    out = tmp_path / "batch"
    res = runner.invoke(app, ["heatmap", "--items", "i3, i4", "--method", "gradcam",
                              "--formats", "", "--out", str(out), "--compare", "none",
                              "--run", toy_ws.run_dirs()[0].name, "--no-progress",
                              "--cache-dir", str(tmp_path / "cache"), "-w", str(toy_ws.root)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert f"scores: {out / 'scores.csv'}" in res.output and "(2 items)" in res.output
    table = pd.read_csv(out / "scores.csv", dtype={"item_id": str})
    assert list(table["item_id"]) == ["i3", "i4"] and "drift_without" in table.columns
    assert "drift_with" not in table.columns


def test_heatmap_help_says_ids_are_original():
    res = runner.invoke(app, ["heatmap", "--help"])
    flat = " ".join(res.output.split())
    assert res.exit_code == 0 and "original" in flat.lower() and "MovieLens" in flat


@pytest.mark.parametrize(("args", "message"), [
    (["--item", "i99"], "Unknown item id 'i99'"),
    (["--item", "i3", "--steps", "0"], "must be >= 1; got 0"),
    (["--item", "i3", "--user", "u1", "--target", "content_focus"], "user_score"),
    (["--item", "i3", "--out", "{blocker}/sub"], "Cannot write the report"),
    (["--item", "i3", "--run", "nope"], "No run 'nope'"),
])
def test_heatmap_errors_one_line_exit_2(toy_ws, tmp_path, monkeypatch, capsys, args, message):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    args = [a.replace("{blocker}", str(blocker)) for a in args]
    code, _, err = _main(monkeypatch, capsys, "heatmap", *args, "--no-progress",
                         "--cache-dir", str(tmp_path / "cache"), "-w", str(toy_ws.root))
    assert code == 2
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and message in error_lines[0], err
    assert not (blocker.parent / "sub").exists()


def test_heatmap_usage_errors(toy_ws, monkeypatch, capsys):
    code, _, err = _main(monkeypatch, capsys, "heatmap", "--item", "i3", "--method", "igg",
                         "-w", str(toy_ws.root))
    assert code == 2 and "Did you mean 'ig'" in " ".join(err.split())
    code, _, err = _main(monkeypatch, capsys, "heatmap", "--item", "i3", "--items", "i4",
                         "-w", str(toy_ws.root))
    assert code == 2 and "exactly one of --item, --items or --top-drift" in " ".join(err.split())


def test_heatmap_audio_features_explains_dimensions_and_modalities(tmp_path):
    """An MMRec-format dataset with an audio modality and no media: not a dead end."""
    import numpy as np

    from befa_viz.data import export_mmrec
    from befa_viz.testing import toy_dataset

    rng = np.random.default_rng(0)
    folder = export_mmrec(toy_dataset(), tmp_path / "mm" / "toy",
                          features={"image": rng.normal(size=(12, 5)),
                                    "audio": rng.normal(size=(12, 7))})
    ws = str(tmp_path / "ws")
    assert runner.invoke(app, ["data", "import", "mmrec", str(folder), "-w", ws]).exit_code == 0
    r = runner.invoke(app, ["train", "--model", "vbpr", "--adapter", "none", "--epochs", "1",
                            "-w", ws])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["heatmap", "--item", "i3", "--modality", "audio", "-w", ws])
    assert r.exit_code == 0, r.output + repr(r.exception)
    assert "IG over the feature dimensions" in r.output
    assert "item i3: controls not checked · completeness error 0%" in r.output
    assert "top dimensions: dim " in r.output
    shares = r.output.split("content score by modality: ")[1].splitlines()[0]
    assert "audio" in shares and "image" in shares
    r = runner.invoke(app, ["heatmap", "--item", "i3", "--modality", "video", "-w", ws])
    assert r.exit_code != 0
