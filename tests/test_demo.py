"""The scaled-down demo path (``size="small"``): end to end, reuse on a second run, CLI."""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from befa_viz import explore, pipeline
from befa_viz.demo import DEMO_SIZES, run_demo
from befa_viz.errors import ConfigError


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    ws = tmp_path_factory.mktemp("demo-ws")
    t0 = time.perf_counter()
    result = run_demo(ws, size="small", progress=False)
    return result, time.perf_counter() - t0


def _weights_mtimes(ws):
    return {p.name: (p / "model.safetensors").stat().st_mtime_ns
            for p in pipeline.Workspace(ws).run_dirs()}


def test_small_demo_runs_end_to_end_quickly(first):
    result, wall = first
    assert wall < 60 and result.seconds < 60
    assert set(result.stages) == {"shop", "encode", "train without adapter",
                                  "train with adapter", "benchmark", "explain sample", "report"}
    assert not any(result.reused.values())  # a fresh workspace: everything computed
    page = result.report.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.count("data:image/png;base64") >= 3
    assert "Main figure" in page and "Ranking quality" in page and "benchmark" in page
    assert '<script' not in page and 'src="http' not in page  # one page, opens offline
    assert set(result.runs) == {"without", "with"}
    for v in ("without", "with"):
        assert 0 <= result.ranking[v]["test"]["Recall@20"] <= 1
    assert set(result.scores) == set(DEMO_SIZES["small"].demo_methods)
    assert result.main_method in DEMO_SIZES["small"].demo_methods
    summary = result.summary()
    for text in ("Recall@20", "drift", "benchmark", str(result.report),
                 "streamlit run apps/explorer.py -- --workspace"):
        assert text in summary
    saved = json.loads((result.report.parent / "summary.json").read_text())
    assert saved["runs"] == result.runs and saved["seconds"] == result.seconds
    assert result.benchmark.paths["report.html"].is_file()


def test_explorer_finds_the_demo_maps_in_the_cache(first):
    result, _ = first
    size = DEMO_SIZES["small"]
    table = explore.score_table(workspace=result.workspace, run=result.runs["without"],
                                method="gradcam", limit=size.n_items)
    assert len(table) == size.n_items
    assert table["cached_without"].all() and table["cached_with"].all()


def test_second_run_reuses_everything(first):
    result, _ = first
    before = _weights_mtimes(result.workspace)
    again = run_demo(result.workspace, size="small", progress=False)
    assert again.reused == {"shop": True, "features": True, "run without": True,
                            "run with": True, "attribution maps": True}
    assert again.runs == result.runs
    assert _weights_mtimes(result.workspace) == before  # no retraining
    assert again.benchmark.params["maps_computed"] == 0
    assert again.benchmark.params["report_reused"]
    assert again.ranking == result.ranking
    assert again.report.is_file()
    # the report keeps the first run's stage times for the stages this rerun reused
    for stage in ("encode", "train without adapter", "train with adapter", "benchmark"):
        assert again.first_stages[stage] == result.stages[stage]
    assert again.first_stages["report"] == again.stages["report"]
    saved = json.loads((again.report.parent / "summary.json").read_text())
    assert saved["first_stages"] == again.first_stages
    page = again.report.read_text(encoding="utf-8")
    first = ", ".join(f"{k} {v:.1f} s" for k, v in result.stages.items() if k != "report")
    assert f"Stage times: {first} (the run that computed each stage" in page
    # each method's without/with maps share one scale: one grid per method, links are relative
    assert len(list(again.report.parent.glob("sample_grid*.png"))) == 1 + len(again.scores)
    assert '<a href="../benchmark-' in page


def test_cli_demo_small(first):
    from befa_viz.cli import app

    result, _ = first
    out = CliRunner().invoke(app, ["demo", "--size", "small", "-w", str(result.workspace),
                                   "--no-progress"])
    assert out.exit_code == 0, out.output
    assert "Recall@20" in out.output and "report:" in out.output
    assert f"streamlit run apps/explorer.py -- --workspace {result.workspace}" in out.output
    bad = CliRunner().invoke(app, ["demo", "--size", "huge"])
    assert bad.exit_code != 0 and "small" in bad.output


def test_unknown_size_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="small"):
        run_demo(tmp_path, size="huge")  # type: ignore[arg-type]


def test_a_different_shop_of_the_same_name_is_not_overwritten(tmp_path):
    from befa_viz.errors import DataError

    pipeline.synth_dataset(tmp_path, "shop-small", n_items=8, n_users=4, image_size=32,
                           interactions_per_user=(3, 4))
    with pytest.raises(DataError, match="--workspace"):
        run_demo(tmp_path, size="small", progress=False)
    assert pipeline.Workspace(tmp_path).run_dirs() == []


def test_sample_scores_leave_unscored_maps_out():
    import math
    import warnings
    from types import SimpleNamespace

    from befa_viz.demo import _sample_scores

    def exp(with_drift):
        return SimpleNamespace(variants=("without", "with"), scores={
            "without": {"drift": 0.2, "omission": 0.4},
            "with": {"drift": with_drift, "omission": with_drift}})

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Mean of empty slice"
        out = _sample_scores({"ig": [exp(None), exp(None)], "gradcam": [exp(0.5), exp(None)]})
    assert out["ig"]["without"]["drift"] == 0.2 and out["ig"]["without"]["n_scored"] == 2
    assert math.isnan(out["ig"]["with"]["drift"]) and out["ig"]["with"]["n_scored"] == 0
    assert out["gradcam"]["with"]["drift"] == 0.5 and out["gradcam"]["with"]["n_scored"] == 1
