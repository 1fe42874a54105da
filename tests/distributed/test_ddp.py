"""DDP training: 2 gloo processes follow the single-process run, also across a resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

# Exact equivalence holds for batch-decomposable objectives: BPR is a batch mean, but MMRec's
# EmbLoss (‖T‖_F / B, not squared) is not (a half batch weighs it by √2) and dropout draws
# other masks on a half batch; both are switched off here (see README "Running on a cluster").
TRAIN = {"model": "vbpr", "adapter": "befa", "dataset": "toy", "seed": 3,
         "overrides": ["batch_size=16", "model_params.reg_weight=0", "adapter_dropout=0"]}


def _ws(path):
    from befa_viz.pipeline import encode_dataset
    from befa_viz.testing import toy_dataset
    from befa_viz.workspace import Workspace

    ws = Workspace(path)
    toy_dataset(folder=ws.root / "img").save(ws.dataset_dir("toy"))
    encode_dataset(ws, "toy", image_encoder="tiny:cnn", text_encoder="tiny:text")
    return ws


def _weights(run):
    return {k: v.detach().clone() for k, v in run.model.state_dict().items()
            if v.layout == torch.strided}


def test_two_process_ddp_matches_single_process_and_resumes(tmp_path):
    from befa_viz.pipeline import train_model

    single = train_model(_ws(tmp_path / "a"), epochs=4, **TRAIN)
    ws = _ws(tmp_path / "b")
    half = train_model(ws, epochs=2, devices=2, **TRAIN)  # then "interrupted"
    assert half.metrics["epochs_run"] == 2
    ddp = train_model(ws, epochs=4, devices=2, resume=True, **TRAIN)  # resumed under DDP
    # Same batches, negatives and steps: each rank takes half of every batch and the
    # all-reduced gradient is the whole batch's, so only the summation order differs.
    assert [h["epoch"] for h in ddp.metrics["history"]] == [1, 2, 3, 4]
    np.testing.assert_allclose([h["loss"] for h in ddp.metrics["history"]],
                               [h["loss"] for h in single.metrics["history"]], rtol=1e-5)
    for k in ("Recall@20", "NDCG@20"):
        assert ddp.test_metrics[k] == pytest.approx(single.test_metrics[k], abs=1e-6)
    ws_, wd = _weights(single), _weights(ddp)
    for k in ws_:
        torch.testing.assert_close(wd[k], ws_[k], rtol=1e-4, atol=1e-5)


def test_ddp_rejects_more_gpus_than_present(tmp_path):
    from befa_viz.errors import ConfigError
    from befa_viz.pipeline import train_model

    if torch.cuda.device_count() >= 64:
        pytest.skip("a machine with 64 GPUs")
    with pytest.raises(ConfigError, match="needs 64 GPUs"):
        train_model(_ws(tmp_path), epochs=1, devices=64, device="cuda", **TRAIN)


def test_torchrun_two_processes_match_single_process(tmp_path):
    """``torchrun --standalone --nproc-per-node 2 -m befa_viz.cli train``: each process joins
    the launcher's job from the environment (no spawning) and the run equals the
    single-process one up to summation order, as with --devices 2."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from befa_viz.pipeline import train_model
    from befa_viz.train import Run

    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.is_file():
        torchrun = Path(shutil.which("torchrun") or "torchrun")
    single = train_model(_ws(tmp_path / "a"), epochs=2, **TRAIN)
    ws = _ws(tmp_path / "b")
    args = ["--model", TRAIN["model"], "--adapter", TRAIN["adapter"], "--dataset", "toy",
            "--seed", str(TRAIN["seed"]), "--epochs", "2", "--no-progress", "-w", str(ws.root)]
    for o in TRAIN["overrides"]:
        args += ["--set", o]
    # a clean environment: the launcher's ranks must not inherit what other tests set
    keep = ("PATH", "HOME", "TMPDIR", "LANG", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
            "TORCH_HOME", "XDG_CACHE_HOME")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([str(torchrun), "--standalone", "--nproc-per-node", "2", "-m",
                        "befa_viz.cli", "train", *args], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[:3000] + " ... " + r.stderr[-3000:]
    assert r.stdout.count("run: ") == 1  # rank 0 reports
    ddp = Run.load(next(p for p in ws.runs_dir.iterdir() if p.is_dir()))
    np.testing.assert_allclose([h["loss"] for h in ddp.metrics["history"]],
                               [h["loss"] for h in single.metrics["history"]], rtol=1e-5)
    ws_, wd = _weights(single), _weights(ddp)
    for k in ws_:
        torch.testing.assert_close(wd[k], ws_[k], rtol=1e-4, atol=1e-5)


def test_torchrun_env_is_read_from_the_launcher(monkeypatch):
    from befa_viz.distributed import torchrun_env

    for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK",
              "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    assert torchrun_env() is None
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert torchrun_env() is None  # no rendezvous address: not a launched rank
    monkeypatch.setenv("MASTER_ADDR", "head")
    monkeypatch.setenv("MASTER_PORT", "29500")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert torchrun_env() == (3, 4, 1, 2)
