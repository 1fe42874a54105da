"""What a command-line user sees: "latest" defaults announced, explicit datasets where it
matters, one-line warnings, and config hints in the command-line form."""

from __future__ import annotations

import logging
import time
import warnings

import pytest
from typer.testing import CliRunner

from befa_viz.cli import _show_warning, app
from befa_viz.errors import ConfigError
from befa_viz.testing import toy_dataset
from befa_viz.workspace import Workspace

runner = CliRunner()


@pytest.fixture
def two_datasets(tmp_path):
    ws = Workspace(tmp_path / "ws")
    toy_dataset().save(ws.dataset_dir("older"))
    time.sleep(0.02)  # distinct mtimes: "newer" is the latest
    toy_dataset().save(ws.dataset_dir("newer"))
    return ws


def test_latest_dataset_is_announced_as_a_warning_line(two_datasets):
    r = runner.invoke(app, ["data", "stats", "-w", str(two_datasets.root)])
    assert r.exit_code == 0, r.output
    assert "warning: using dataset 'newer', the most recently imported" in r.stderr
    assert "pass --dataset to choose another (older)" in r.stderr


def test_single_dataset_is_not_a_warning(tmp_path):
    ws = Workspace(tmp_path / "ws")
    toy_dataset().save(ws.dataset_dir("only"))
    r = runner.invoke(app, ["data", "stats", "-w", str(ws.root)])
    assert r.exit_code == 0 and "warning" not in r.stderr
    assert "using dataset 'only' (the only one" in r.stderr


@pytest.mark.parametrize("argv", [
    ["compare", "-b", "bprmf", "--seeds", "1", "--epochs", "1"],
    ["sweep", "-c", "SWEEP"],
])
def test_compare_and_sweep_need_the_dataset_named(two_datasets, tmp_path, argv):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("model: bprmf\nepochs: 1\nsweep:\n  lr: [0.01, 0.02]\n")
    argv = [str(sweep) if a == "SWEEP" else a for a in argv]
    r = runner.invoke(app, [*argv, "-w", str(two_datasets.root)])
    assert isinstance(r.exception, ConfigError), r.output
    assert "has 2 datasets (older, newer)" in str(r.exception)
    assert "--dataset NAME" in str(r.exception)
    assert not two_datasets.runs_dir.exists()  # nothing trained


def test_set_of_a_backbone_keyword_suggests_model_params(tmp_path):
    ws = Workspace(tmp_path / "ws")
    toy_dataset().save(ws.dataset_dir("toy"))
    r = runner.invoke(app, ["train", "-m", "bprmf", "--epochs", "1", "-w", str(ws.root),
                            "--set", "reg_weight=1"])
    assert isinstance(r.exception, ConfigError)
    assert "use 'model_params.reg_weight' (--set model_params.reg_weight=1)" in str(r.exception)


def test_warnings_print_as_one_line(capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = _show_warning
        warnings.warn("an all-zero map\n  for item 'a'", UserWarning, stacklevel=1)
    err = capsys.readouterr().err
    assert err == "warning: an all-zero map for item 'a'\n"


def test_log_warnings_get_a_prefix(tmp_path):
    ws = Workspace(tmp_path / "ws")
    toy_dataset().save(ws.dataset_dir("toy"))
    r = runner.invoke(app, ["data", "stats", "-w", str(ws.root)])
    assert r.exit_code == 0
    from befa_viz.cli import _StderrHandler

    handler = next(h for h in logging.getLogger().handlers if isinstance(h, _StderrHandler))
    record = logging.LogRecord("befa_viz.x", logging.WARNING, __file__, 1, "look at %s", ("me",),
                               None)
    assert handler.format(record) == "warning: look at me"


@pytest.mark.weights
def test_no_progress_silences_the_weight_loading_bar(tmp_path):
    ws = Workspace(tmp_path / "ws")
    toy_dataset().save(ws.dataset_dir("toy"))
    r = runner.invoke(app, ["encode", "-w", str(ws.root), "--image-encoder", "none",
                            "--text-encoder", "hf:minilm", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "Loading weights" not in r.stderr
    assert "\r" not in r.output and "\x1b[" not in r.output


def test_bars_only_on_a_terminal(tmp_path, monkeypatch):
    """Redirected to a file (not a TTY), no bar is drawn: no carriage returns or cursor moves."""
    ws = Workspace(tmp_path / "ws")
    toy_dataset().save(ws.dataset_dir("toy"))
    r = runner.invoke(app, ["encode", "-w", str(ws.root), "--image-encoder", "tiny:cnn",
                            "--text-encoder", "tiny:text", "--progress"])
    assert r.exit_code == 0, r.output
    assert "\r" not in r.output and "\x1b[" not in r.output and "it/s" not in r.output
