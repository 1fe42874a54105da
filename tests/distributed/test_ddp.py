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
