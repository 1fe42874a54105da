"""Shared fixtures and the rules for tests that need the shared data or real weights."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(1)  # small models train faster with one thread on 2 cores

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MOVIELENS_DIR = SHARED_DATA / "movielens-100k-posters"
HM_DIR = SHARED_DATA / "hm-fashion-sample"
REQUIRE_SHARED = os.environ.get("BEFA_REQUIRE_SHARED") == "1"


def require_shared(path: Path = MOVIELENS_DIR) -> Path:
    """Skip (or, with BEFA_REQUIRE_SHARED=1, fail) when the shared data is absent."""
    if not path.exists():
        msg = f"shared data not found at {path} (place ../shared beside the checkout)"
        if REQUIRE_SHARED:
            pytest.fail(msg + "; BEFA_REQUIRE_SHARED=1 requires it", pytrace=False)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def movielens_dir() -> Path:
    return require_shared()


@pytest.fixture(scope="session")
def hm_dir() -> Path:
    return require_shared(HM_DIR)


@pytest.fixture(scope="session")
def toy():
    from befa_viz.testing import toy_dataset

    return toy_dataset()


@pytest.fixture(scope="session")
def toy_ws(tmp_path_factory):
    """``befa_viz.testing.toy_workspace``: toy dataset, tiny features, paired vbpr runs.

    Shared by the session: tests may add cache entries and reports, never change its runs,
    dataset or features (build a fresh ``toy_workspace(tmp_path)`` for that).
    """
    from befa_viz.testing import toy_workspace

    return toy_workspace(tmp_path_factory.mktemp("toy-ws"))
