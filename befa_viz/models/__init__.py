"""Recommenders (one file per backbone) and the BeFA adapter."""

from __future__ import annotations

from befa_viz.models.adapter import ADAPTERS, BehaviorAdapter
from befa_viz.models.base import MODELS, Recommender

__all__ = ["ADAPTERS", "MODELS", "BehaviorAdapter", "Recommender"]
