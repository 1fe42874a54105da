"""``befa-viz demo --dataset hm``: option checks (the full run takes minutes; see README)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from befa_viz.demo import DEFAULT_DATA, REAL_DEMOS, run_demo
from befa_viz.errors import ConfigError, DataError


def test_demo_hm_needs_its_data(tmp_path):
    with pytest.raises(DataError, match=r"needs its data at .*--data PATH"):
        run_demo(tmp_path / "ws", dataset="hm", data=tmp_path / "nowhere", progress=False)
    with pytest.raises(ConfigError, match="'shop' or 'hm'"):
        run_demo(tmp_path / "ws", dataset="movielens", progress=False)
    assert not (tmp_path / "ws" / "datasets").exists()  # nothing started


def test_demo_hm_settings():
    cfg = REAL_DEMOS["hm"]
    assert cfg.source == "hm" and cfg.dataset == "hm"
    assert DEFAULT_DATA["hm"].name == "hm-fashion-sample"


def test_cli_demo_dataset_option(tmp_path):
    from befa_viz.cli import app

    out = CliRunner().invoke(app, ["demo", "--dataset", "hm", "--data", str(tmp_path / "x"),
                                   "-w", str(tmp_path / "ws"), "--no-progress"])
    assert out.exit_code != 0 and "--data PATH" in str(out.exception)
