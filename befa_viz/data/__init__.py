"""Datasets: core types, importers, preparation (filtering, remapping, seeded splits)."""

from __future__ import annotations

from befa_viz.data.types import Catalog, Interactions, RecDataset

__all__ = ["Catalog", "Interactions", "RecDataset"]
