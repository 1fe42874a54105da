"""The benchmark's result: its tables, where they were written, and how to print them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BenchmarkResult"]


_HEAD_COLS = ("modality", "variant", "method", "target", "n_items", "mass_in_mask", "chance",
              "ratio", "pointing", "margin_random_target", "margin_input", "margin_random_map",
              "p_random_target", "p_input", "precision", "passes")


@dataclass
class BenchmarkResult:
    """What :func:`run_benchmark` measured, and where its report went.

    Attributes:
        dataset: Dataset name.
        runs: Run name per variant (``"without"``, ``"with"``).
        table: One row per (modality, variant, method, target) (see :func:`aggregate`).
        items: One row per item and map (the scores before averaging).
        adapter: Drift / omission / mass-in-mask of each method's raw-feature
            (``content_focus``), without-adapter and with-adapter maps, paired over items.
        ranking: Per variant, test and validation Recall/NDCG of the runs (their recorded
            metrics at the best validation epoch).
        gate: Adapter gate distribution per modality of the run with the adapter.
        params: The request (items, steps, baselines, methods, seed, q) and timings.
        out_dir: Report folder (``None`` when nothing was written).
        paths: Written files by name.
        examples: Per method, the example maps drawn in the report's grids (for callers that
            embed them elsewhere): ``{method: {row label: [Attribution, ...]}}``.
    """

    dataset: str
    runs: dict[str, str]
    table: Any
    items: Any
    adapter: Any
    ranking: dict[str, dict[str, Any]]
    gate: dict[str, dict[str, float]]
    params: dict[str, Any]
    out_dir: Path | None = None
    paths: dict[str, Path] = field(default_factory=dict)
    examples: dict[str, dict[str, list[Any]]] = field(default_factory=dict)

    def headline(self) -> Any:
        """The rows that answer "is this method evidence?": behaviour-driven targets.

        Image rows of ``content_score`` and ``behaviour_alignment`` (both variants) and
        ``content_focus``, plus the text rows of ``content_score``; fewer columns.
        """
        t = self.table
        keep = t["target"].isin(("content_focus", "behaviour_alignment", "content_score"))
        keep &= (t["modality"] == "image") | (t["target"] == "content_score")
        cols = [c for c in _HEAD_COLS if c in t.columns]
        return t.loc[keep, cols].reset_index(drop=True)

    def format(self, digits: int = 2) -> str:
        """A fixed-width summary: the headline table, ranking and gate."""
        runs = ", ".join(f"{v}={n}" for v, n in self.runs.items())
        lines = [f"benchmark on {self.dataset!r}: runs {runs}"]
        head = self.headline()
        show = [c for c in ("modality", "variant", "method", "target", "ratio", "pointing",
                            "margin_random_target", "margin_input", "precision", "passes")
                if c in head.columns]
        lines.append(_fixed_width(head[show], digits))
        for v, m in self.ranking.items():
            lines.append(f"{v} adapter: " + "  ".join(
                f"{k} {m['test'][k]:.4f}" for k in ("Recall@20", "NDCG@20") if k in m["test"]))
        for mod, g in self.gate.items():
            lines.append(f"gate ({mod}): mean {g['mean']:.3f}, q05–q95 {g.get('q05', 0):.3f}–"
                         f"{g.get('q95', 0):.3f}")
        return "\n".join(lines)


def _fixed_width(df: Any, digits: int) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, (bool, np.bool_)):
            return "yes" if v else "no"
        if v is None or (isinstance(v, float) and not np.isfinite(v)):
            return "–"
        if isinstance(v, (float, np.floating)):
            return f"{v:.{digits}f}" if abs(v) >= 10 ** -digits or v == 0 else f"{v:.1e}"
        return str(v)

    header = [c.replace("margin_", "Δ").replace("random_target", "rand-target")
              for c in df.columns]
    rows = [[fmt(v) for v in r] for r in df.itertuples(index=False)]
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]
    return "\n".join("  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)).rstrip()
                     for r in [header, *rows])
