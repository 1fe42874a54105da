"""Training, full-ranking evaluation, run directories, adapter comparison and sweeps."""

from __future__ import annotations

from befa_viz.train.compare import Comparison, compare, paired_tests
from befa_viz.train.config import TrainConfig, load_train_config
from befa_viz.train.evaluate import evaluate, evaluate_per_user
from befa_viz.train.features import FeatureFile, load_feature_file
from befa_viz.train.run import Run, run_name, select_features, train
from befa_viz.train.sampling import NegativeSampler
from befa_viz.train.sweep import SweepResult, expand_grid, read_sweep, sweep
from befa_viz.train.trainer import (
    FitResult,
    TrainState,
    build_model,
    fit,
    gate_summary,
    representation_summary,
)

__all__ = [
    "Comparison",
    "SweepResult",
    "compare",
    "expand_grid",
    "paired_tests",
    "read_sweep",
    "sweep",
    "FeatureFile",
    "FitResult",
    "NegativeSampler",
    "Run",
    "TrainConfig",
    "TrainState",
    "build_model",
    "evaluate",
    "evaluate_per_user",
    "fit",
    "gate_summary",
    "representation_summary",
    "load_feature_file",
    "load_train_config",
    "run_name",
    "select_features",
    "train",
]
