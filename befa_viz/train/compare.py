"""With vs without the BeFA adapter: the same backbone, data, features and seeds.

:func:`compare` trains the backbone with ``adapter="none"`` and ``adapter="befa"`` for each
seed (reusing complete runs of the same config), then reports mean ± std of the validation and
test metrics, paired tests over seeds (paired t-test and Wilcoxon signed-rank on the
per-seed differences) and a per-user Wilcoxon test on test Recall@20 for the seed pair with
the best validation score. With a handful of seeds the seed-level tests have little power: the
smallest two-sided exact Wilcoxon p-value with n pairs is 2 / 2ⁿ (0.25 for 3 seeds), so they
are reported as descriptive; the per-user test has far more pairs but only describes one seed.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from befa_viz.cache import atomic_write_bytes, hash_key
from befa_viz.data.types import RecDataset
from befa_viz.errors import ConfigError
from befa_viz.train.config import TrainConfig
from befa_viz.train.evaluate import evaluate_per_user
from befa_viz.train.run import Run, train

__all__ = ["Comparison", "compare", "paired_tests", "COMPARE_METRICS"]

log = logging.getLogger(__name__)

COMPARE_METRICS: tuple[str, ...] = ("Recall@10", "Recall@20", "NDCG@10", "NDCG@20")
VARIANTS: tuple[str, str] = ("none", "befa")


def paired_tests(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray
) -> dict[str, Any]:
    """Paired t-test and Wilcoxon signed-rank test of ``b - a`` (two-sided).

    Returns ``nan`` p-values where a test is undefined (fewer than 2 pairs, all differences
    equal or zero) and, for the Wilcoxon test, the smallest p-value reachable with this many
    non-zero pairs, so a reader sees when significance was impossible.

    Example:
        >>> out = paired_tests([0.1, 0.2, 0.3], [0.2, 0.3, 0.5])
        >>> out["n"], round(out["mean_diff"], 3), out["wilcoxon_min_p"]
        (3, 0.133, 0.25)
    """
    from scipy import stats

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    d = y - x
    n = len(d)
    out: dict[str, Any] = {"n": n, "mean_diff": float(d.mean()) if n else float("nan"),
                           "t_p": float("nan"), "wilcoxon_p": float("nan"),
                           "n_better": int((d > 0).sum()), "n_worse": int((d < 0).sum())}
    nonzero = int((d != 0).sum())
    out["wilcoxon_min_p"] = float(min(1.0, 2.0 / 2**nonzero)) if nonzero else float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if n >= 2 and np.std(d) > 0:
            out["t_p"] = float(stats.ttest_rel(y, x).pvalue)
        if nonzero >= 1:
            out["wilcoxon_p"] = float(stats.wilcoxon(y, x, zero_method="wilcox").pvalue)
    return out


@dataclass
class Comparison:
    """Result of :func:`compare`.

    Attributes:
        backbone: The backbone name.
        dataset: Dataset name.
        seeds: The seeds, paired across variants.
        runs: ``{"none": [Run per seed], "befa": [...]}``.
        summary: ``{split: {metric: {variant: {"mean", "std", "values"}}}}``.
        tests: ``{split: {metric: paired_tests(...)}}`` over seeds.
        per_user: Per-user Wilcoxon on test Recall@20 for the best-validation seed pair.
        paths: Written files (``json``, ``png``, ``svg``, ``csv``).
    """

    backbone: str
    dataset: str
    seeds: list[int]
    runs: dict[str, list[Run]]
    summary: dict[str, dict[str, dict[str, dict[str, Any]]]]
    tests: dict[str, dict[str, dict[str, Any]]]
    per_user: dict[str, Any]
    paths: dict[str, Path] = field(default_factory=dict)

    def table(self) -> Any:
        """One row per split and metric: mean ± std per variant, difference and p-values."""
        import pandas as pd

        rows = []
        for split, metrics in self.summary.items():
            for metric, by_variant in metrics.items():
                t = self.tests[split][metric]
                rows.append({
                    "split": split, "metric": metric,
                    "none_mean": by_variant["none"]["mean"], "none_std": by_variant["none"]["std"],
                    "befa_mean": by_variant["befa"]["mean"], "befa_std": by_variant["befa"]["std"],
                    "diff": t["mean_diff"], "t_p": t["t_p"], "wilcoxon_p": t["wilcoxon_p"],
                })
        return pd.DataFrame(rows)

    def format(self) -> str:
        """A plain-text table with the tests and the power caveat."""
        lines = [f"{self.backbone} on {self.dataset}: without vs with BeFA, "
                 f"{len(self.seeds)} seeds ({', '.join(map(str, self.seeds))})",
                 f"{'split':6} {'metric':10} {'none':>17} {'befa':>17} {'diff':>8} "
                 f"{'t p':>6} {'W p':>6}"]
        for r in self.table().itertuples():
            lines.append(
                f"{r.split:6} {r.metric:10} {r.none_mean:.4f} ± {r.none_std:.4f} "
                f"{r.befa_mean:.4f} ± {r.befa_std:.4f} {r.diff:+.4f} {_p(r.t_p):>6} "
                f"{_p(r.wilcoxon_p):>6}")
        n = len(self.seeds)
        lines.append(f"Seed-level tests have little power: with {n} seeds the smallest two-sided "
                     f"Wilcoxon p is {2 / 2**n:.3g}.")
        pu = self.per_user
        if pu:
            lines.append(
                f"Per-user test Recall@20, seed {pu['seed']} (best validation): mean diff "
                f"{pu['mean_diff']:+.4f} over {pu['n']} users ({pu['n_better']} better, "
                f"{pu['n_worse']} worse), Wilcoxon p = {_p(pu['wilcoxon_p'])}.")
        gates = [r.gate for r in self.runs["befa"] if r.gate]
        for m in sorted(gates[0]) if gates else []:
            means = [g[m]["mean"] for g in gates]
            lines.append(f"BeFA gate ({m}): mean {np.mean(means):.3f} over seeds; "
                         f"q05–q95 of seed 1: {gates[0][m]['q05']:.3f}–"
                         f"{gates[0][m]['q95']:.3f}.")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "backbone": self.backbone, "dataset": self.dataset, "seeds": self.seeds,
            "runs": {v: [r.name for r in rs] for v, rs in self.runs.items()},
            "summary": self.summary, "tests": self.tests, "per_user": self.per_user,
            "gate": {v: [r.gate for r in rs] for v, rs in self.runs.items()},
            "note": f"Seed-level tests use {len(self.seeds)} paired seeds; the smallest two-sided "
                    f"Wilcoxon p-value reachable is {2 / 2**len(self.seeds):.3g}.",
        }

    def figure(self) -> Any:
        """Bars of mean ± std per metric, without and with BeFA, for valid and test."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(8, 3.4), layout="constrained")
        axes = fig.subplots(1, len(self.summary), sharey=True, squeeze=False)[0]
        width = 0.38
        for ax, (split, metrics) in zip(axes, self.summary.items(), strict=True):
            names = list(metrics)
            x = np.arange(len(names))
            colours = ("#8c8c8c", "#1f77b4")
            for j, (variant, colour) in enumerate(zip(VARIANTS, colours, strict=True)):
                means = [metrics[m][variant]["mean"] for m in names]
                stds = [metrics[m][variant]["std"] for m in names]
                ax.bar(x + (j - 0.5) * width, means, width, yerr=stds, capsize=3, color=colour,
                       label="without adapter" if variant == "none" else "with BeFA")
            ax.set_xticks(x, names)
            ax.set_title(split)
            ax.grid(axis="y", alpha=0.3)
        axes[0].set_ylabel(f"mean ± std over {len(self.seeds)} seeds")
        axes[0].legend(loc="upper left", fontsize=8)
        fig.suptitle(f"{self.backbone} on {self.dataset}")
        return fig

    def save(self, folder: str | os.PathLike[str]) -> dict[str, Path]:
        """Write ``comparison.json``, ``.csv``, ``.png`` and ``.svg`` into ``folder``."""
        import io

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {k: folder / f"comparison.{k}" for k in ("json", "csv", "png", "svg")}
        blob = json.dumps(self.to_dict(), indent=2, default=_json_default).encode()
        atomic_write_bytes(paths["json"], blob)
        atomic_write_bytes(paths["csv"], self.table().to_csv(index=False).encode())
        fig = self.figure()
        for fmt in ("png", "svg"):
            buf = io.BytesIO()
            fig.savefig(buf, format=fmt, dpi=150)
            atomic_write_bytes(paths[fmt], buf.getvalue())
        self.paths = paths
        return paths


def _p(p: float) -> str:
    return "n/a" if p != p else f"{p:.3g}"


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    return str(o)


def compare(
    dataset: RecDataset,
    config: TrainConfig,
    *,
    runs_dir: str | os.PathLike[str],
    reports_dir: str | os.PathLike[str] | None = None,
    seeds: int | Sequence[int] = 3,
    progress: bool = False,
) -> Comparison:
    """Train ``config.model`` without and with the adapter over several seeds and compare.

    Args:
        dataset: The dataset.
        config: Base configuration (its ``adapter`` and ``seed`` are replaced per run).
        runs_dir: Where the runs go; complete runs of the same config are reused.
        reports_dir: Where the JSON/CSV/PNG/SVG report goes (``None``: not saved).
        seeds: Number of seeds (``config.seed``, ``config.seed + 1``, ...) or the seeds.
        progress: Show progress bars.

    Returns:
        The comparison (with ``paths`` filled when saved).
    """
    from befa_viz.models import MODELS

    if not getattr(MODELS.get(config.model), "multimodal", True):
        multimodal = [n for n in MODELS.names() if getattr(MODELS.get(n), "multimodal", True)]
        raise ConfigError(
            f"{config.model!r} is a behaviour-only backbone: it has no content pathway, so there "
            "is nothing to compare with and without the adapter. Choose a multimodal backbone "
            f"({', '.join(multimodal)})."
        )
    seed_list = (list(range(config.seed, config.seed + int(seeds))) if isinstance(seeds, int)
                 else [int(s) for s in seeds])
    if not seed_list or len(set(seed_list)) != len(seed_list):
        raise ConfigError(f"seeds must be a positive count or distinct seeds; got {seeds!r}.")
    runs: dict[str, list[Run]] = {v: [] for v in VARIANTS}
    for s in seed_list:
        for v in VARIANTS:
            log.info("compare: training %s adapter=%s seed=%d", config.model, v, s)
            runs[v].append(train(dataset, config.replace(adapter=v, seed=s), runs_dir=runs_dir,
                                 resume=True, progress=progress))
    summary: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    tests: dict[str, dict[str, dict[str, Any]]] = {}
    for split, attr in (("valid", "valid_metrics"), ("test", "test_metrics")):
        summary[split], tests[split] = {}, {}
        for m in COMPARE_METRICS:
            vals = {v: [getattr(r, attr)[m] for r in runs[v]] for v in VARIANTS}
            summary[split][m] = {v: {"mean": float(np.mean(x)),
                                     "std": float(np.std(x, ddof=1)) if len(x) > 1 else 0.0,
                                     "values": x} for v, x in vals.items()}
            tests[split][m] = paired_tests(vals["none"], vals["befa"])
    # per-user test on the seed whose pair is best on validation (never chosen on test)
    sel = config.metric
    best = int(np.argmax([runs["none"][i].valid_metrics[sel] + runs["befa"][i].valid_metrics[sel]
                          for i in range(len(seed_list))]))
    per: dict[str, np.ndarray] = {}
    users_ref = None
    for v in VARIANTS:
        users, metrics = evaluate_per_user(runs[v][best].model, dataset, "test",
                                           batch_size=config.eval_batch_size, ks=(20,),
                                           mask_valid=config.mask_valid_in_test)
        users_ref = users if users_ref is None else users_ref
        per[v] = metrics["Recall@20"]
    per_user = {"seed": seed_list[best], "metric": "Recall@20", "selected_by": f"valid {sel}",
                **paired_tests(per["none"], per["befa"])}
    per_user.pop("wilcoxon_min_p")
    result = Comparison(config.model, dataset.name, seed_list, runs, summary, tests, per_user)
    if reports_dir is not None:
        key = hash_key([r.name for v in VARIANTS for r in runs[v]], length=8)
        result.save(Path(reports_dir) / f"compare-{dataset.name}-{config.model}-{key}")
    return result
