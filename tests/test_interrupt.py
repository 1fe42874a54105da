"""Ctrl-C: a real SIGINT to ``befa-viz encode`` / ``train`` in a subprocess prints one line
saying what was kept, exits 130, and the rerun resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from befa_viz import pipeline
from befa_viz.cli import app
from befa_viz.errors import Interrupted
from befa_viz.testing import toy_dataset
from befa_viz.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
# slows each forward pass down so that SIGINT lands mid-job, then runs the CLI
SLOW = """
import sys, time
import befa_viz.encoders.store as store
fwd = store._forward
store._forward = lambda *a: (time.sleep(0.15), fwd(*a))[1]
from befa_viz.cli import main
sys.argv = ["befa-viz", *sys.argv[1:]]
main()
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _interrupt(argv: list[str], ready: Callable[[], bool],
               timeout: float = 60) -> subprocess.CompletedProcess:
    proc = subprocess.Popen([sys.executable, "-c", SLOW, *argv], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    start = time.time()
    while not ready():
        if proc.poll() is not None or time.time() - start > timeout:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"the job ended before it could be interrupted: {out}\n{err}")
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture
def ws(tmp_path):
    w = Workspace(tmp_path / "ws")
    toy_dataset().save(w.dataset_dir("toy"))
    return w


def test_sigint_in_encode_keeps_chunks_and_the_rerun_resumes(ws):
    def chunks() -> list[Path]:
        return list(ws.features_dir.glob("toy/*/.partial/chunk-*.npz"))

    argv = ["encode", "-w", str(ws.root), "--image-encoder", "tiny:cnn", "--text-encoder",
            "none", "--batch-size", "1", "--chunk-size", "1", "--no-progress"]
    done = _interrupt(argv, lambda: len(chunks()) >= 2)
    assert done.returncode == 130, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    kept = len(chunks())
    assert last == f"interrupted; {kept} of 12 chunks kept, rerun resumes"
    assert "Traceback" not in done.stderr
    again = CliRunner().invoke(app, argv)  # the rerun, in-process (no second start-up)
    assert again.exit_code == 0, again.output
    assert f"resumed: {kept} of 12 chunks were kept by an interrupted run" in again.stderr
    assert f"encoded, resumed with {kept} chunk(s) kept" in again.stdout


def test_ctrl_c_in_heatmap_keeps_the_maps_done(tmp_path, monkeypatch):
    import befa_viz.attribution as attribution
    from befa_viz.testing import toy_workspace

    ws = toy_workspace(tmp_path / "ws")
    real = attribution.explain
    calls = {"n": 0}

    def explain(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(attribution, "explain", explain)
    argv = ["heatmap", "--items", "i1,i2,i3", "--steps", "2", "--formats", "png",
            "--no-progress", "-w", str(ws.root), "--out", str(tmp_path / "out")]
    with pytest.raises(Interrupted, match=r"^interrupted; 2 of 9 maps kept in the cache, "
                                          r"rerun resumes$"):
        pipeline.explain_items(["i1", "i2", "i3"], workspace=ws, n_steps=2, batch_size=1)
    monkeypatch.setattr(attribution, "explain", real)
    r = CliRunner().invoke(app, argv)
    assert r.exit_code == 0, r.output
    assert "resumed: 2 of 9 maps came from the cache, 7 computed" in r.stderr


def test_interrupted_training_says_what_to_rerun(ws, monkeypatch):
    import befa_viz.train.run as run_mod

    real_fit = run_mod.fit

    def fit(*args, on_epoch_end=None, **kwargs):
        def stop(state, model, improved):
            on_epoch_end(state, model, improved)
            if state.epoch == 2:
                raise KeyboardInterrupt
        return real_fit(*args, on_epoch_end=stop, **kwargs)

    monkeypatch.setattr(run_mod, "fit", fit)
    with pytest.raises(Interrupted, match=r"interrupted; 2 of 5 epochs kept \(run toy-bprmf-"):
        pipeline.train_model(ws, model="bprmf", epochs=5, overrides=["dim=8"])
    monkeypatch.setattr(run_mod, "fit", real_fit)
    run = pipeline.train_model(ws, model="bprmf", epochs=5, overrides=["dim=8"], resume=True)
    assert run.status == "complete" and run.metrics["epochs_run"] == 5
