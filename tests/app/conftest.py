"""Fixtures of the explorer tests: toy workspaces built once per session."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "apps" / "explorer.py"


@pytest.fixture(scope="session")
def explorer_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy workspace: dataset, tiny features, vbpr without and with the adapter."""
    from befa_viz.testing import toy_workspace

    return toy_workspace(tmp_path_factory.mktemp("explorer-ws")).root


@pytest.fixture(scope="session")
def unpaired_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A toy workspace with only the run without the adapter."""
    from befa_viz.testing import toy_workspace

    return toy_workspace(tmp_path_factory.mktemp("unpaired-ws"), adapters=("none",)).root


@pytest.fixture(scope="session")
def textonly_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace whose newest dataset has no images (text features and runs only), beside
    the toy dataset with images but no runs."""
    import os

    from befa_viz.pipeline import encode_dataset, train_model
    from befa_viz.testing import toy_dataset
    from befa_viz.workspace import Workspace

    ws = Workspace(tmp_path_factory.mktemp("textonly-ws"))
    ds = toy_dataset(folder=ws.root / "images")
    ds.save(ws.dataset_dir("toy"))
    os.utime(ws.dataset_dir("toy") / "dataset.json", (1e9, 1e9))  # older: not the default
    catalog = dataclasses.replace(ds.catalog, image_paths=[None] * ds.n_items)
    dataclasses.replace(ds, name="noimages", catalog=catalog).save(ws.dataset_dir("noimages"))
    encode_dataset(ws, "noimages", image_encoder=None, text_encoder="tiny:text")
    for adapter in ("none", "befa"):
        train_model(ws, model="vbpr", adapter=adapter, dataset="noimages", epochs=1, seed=1)
    return ws.root


@pytest.fixture(scope="session")
def shop_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic shop (ground-truth masks and attributes) with a vbpr pair."""
    from befa_viz.pipeline import encode_dataset, synth_dataset, train_model
    from befa_viz.workspace import Workspace

    ws = Workspace(tmp_path_factory.mktemp("shop-ws"))
    synth_dataset(ws, "shop", n_items=16, n_users=12, image_size=32,
                  interactions_per_user=(4, 6))
    encode_dataset(ws, "shop", image_encoder="tiny:cnn", text_encoder="tiny:text")
    for adapter in ("none", "befa"):
        train_model(ws, model="vbpr", adapter=adapter, dataset="shop", epochs=1, seed=1)
    return ws.root
