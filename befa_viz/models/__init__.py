"""Recommenders (one file per backbone) and the BeFA adapter."""

from __future__ import annotations

from befa_viz.models.adapter import ADAPTERS, BehaviorAdapter
from befa_viz.models.base import MODELS, Recommender
from befa_viz.models.bm3 import BM3
from befa_viz.models.bprmf import BPRMF
from befa_viz.models.freedom import FREEDOM
from befa_viz.models.lattice import LATTICE
from befa_viz.models.lightgcn import LightGCN
from befa_viz.models.lightgcn_knn import LightGCNkNN
from befa_viz.models.mgcn import MGCN
from befa_viz.models.vbpr import VBPR

__all__ = [
    "ADAPTERS",
    "BM3",
    "BPRMF",
    "FREEDOM",
    "LATTICE",
    "MGCN",
    "MODELS",
    "VBPR",
    "BehaviorAdapter",
    "LightGCN",
    "LightGCNkNN",
    "Recommender",
]

