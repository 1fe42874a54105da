"""Quality check on real fashion photos: every backbone, with and without BeFA, on the H&M sample.

Imports ``../shared/data/hm-fashion-sample`` into a scratch workspace (outside the repo: the
data's terms forbid redistribution; nothing derived from it may be committed), encodes the
packshots with MobileNetV2 (ImageNet weights) and the article texts with all-MiniLM-L6-v2
(1,175 of the 1,994 articles are image-only: their text feature is a zero row, recorded in the
feature manifest), and trains every registered backbone with the MMRec protocol (full ranking,
train items masked, early stopping on valid Recall@20, test at the best epoch), in the same
two stages as ``benches/movielens_quality.py``:

1. **Tuning** (``--grid small``): each backbone without the adapter at every point of a small
   grid (``GRIDS``; learning rate × the backbone's main regulariser), first seed; the point
   with the best *validation* Recall@20 is kept (test is never looked at). The BeFA variant
   uses the same settings, so with vs without differs only in the adapter.
2. **Seeds**: the selected settings with every seed, with and without the adapter. The table
   gives mean ± std of test Recall@20 / NDCG@20 next to most-popular and LightGCN, and the
   adapter gate's distribution (mean, 5th / 50th / 95th percentile, share above 0.9) per run.

Complete runs are reused (``resume=True``). The sample is small (713 customers, 1,994
articles, 8,381 interactions after collapsing repeat purchases): differences of a few 0.001
in Recall@20 are within the seed spread, which the table shows.

Usage::

    python benches/hm_quality.py                               # tune, then 3 seeds, all models
    python benches/hm_quality.py --models vbpr,freedom --grid none --seeds 999
    python benches/hm_quality.py --jobs 2 --out /tmp/hm.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

# the tune-then-seeds runner is MovieLens's (this folder is on sys.path when run as a script)
from movielens_quality import _grid_points, _ms, _overrides, _run_jobs

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hm-fashion-sample"

# Small grids from each backbone's MMRec hyper-parameter lists (befa_viz/configs/) plus the
# learning rate from BeFA's grid; selected on validation only. Kept small so the whole bench
# fits in about half an hour on two shared cores.
GRIDS: dict[str, dict[str, list[Any]]] = {
    "bprmf": {"lr": [1e-3, 5e-3], "model_params.reg_weight": [1e-3, 1e-1]},
    "lightgcn": {"lr": [1e-3, 5e-3], "model_params.reg_weight": [1e-4, 1e-2]},
    "vbpr": {"lr": [1e-3, 5e-3], "model_params.reg_weight": [1e-1, 1.0]},
    "lattice": {"lr": [1e-3, 5e-3], "model_params.reg_weight": [1e-5, 1e-3]},
    "freedom": {"lr": [1e-3, 5e-3], "model_params.dropout": [0.8, 0.9]},
    "bm3": {"lr": [1e-3, 5e-3], "model_params.cl_weight": [2.0, 0.1]},
    "mgcn": {"lr": [1e-3, 5e-3]},
}


def _gate_text(gates: list[dict[str, dict[str, float]]]) -> str:
    """Per modality: mean gate, its 5/50/95th percentiles and the share above 0.9 (seed means)."""
    if not gates:
        return "-"
    parts = []
    for mod in sorted(gates[0]):
        def avg(key: str, mod: str = mod) -> float:
            return statistics.mean(g[mod].get(key, float("nan")) for g in gates)

        parts.append(f"{mod} {avg('mean'):.3f} (q05 {avg('q05'):.2f}, q50 {avg('q50'):.2f}, "
                     f"q95 {avg('q95'):.2f}; >0.9 {avg('frac_above_0.9'):.0%})")
    return "; ".join(parts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--workspace", type=Path, default=Path("/tmp/befa-hm-quality"))
    p.add_argument("--models", default=None, help="Comma-separated backbones (default: all).")
    p.add_argument("--adapters", default="none,befa")
    p.add_argument("--seeds", default="999,1000,1001", help="Comma-separated seeds; the first "
                   "one is used for tuning.")
    p.add_argument("--grid", choices=["small", "none"], default="small")
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--patience", type=int, default=20)
    p.add_argument("--jobs", type=int, default=2, help="Runs trained at once (1 thread each).")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   help="Extra key=value config overrides for every run.")
    p.add_argument("--image-encoder", default="torchvision:mobilenet_v2")
    p.add_argument("--text-encoder", default="hf:minilm")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()

    import torch

    torch.set_num_threads(1)
    from befa_viz.metrics import MostPopular
    from befa_viz.models import MODELS
    from befa_viz.pipeline import Workspace, encode_dataset, import_dataset
    from befa_viz.train import evaluate

    if not args.data.is_dir():
        raise SystemExit(f"H&M sample not found at {args.data}")
    ws = Workspace(args.workspace)
    t0 = time.perf_counter()
    import_dataset("hm", args.data, workspace=ws, name="hm", check_images=True)
    ds = ws.load_dataset("hm")
    enc = encode_dataset(ws, "hm", image_encoder=args.image_encoder,
                         text_encoder=args.text_encoder, missing="zeros", progress=False)
    n_text = sum(bool(t.strip()) for t in ds.catalog.texts)
    print(f"dataset: {ds.n_users} users, {ds.n_items} items ({n_text} with text), "
          f"{ds.interactions.n_interactions} interactions; features "
          + ", ".join(f"{m} {t.encoder_key} {t.dim}-d" for m, t in enc.tables.items())
          + f" ({time.perf_counter() - t0:.0f} s to import + encode)", flush=True)

    pop = evaluate(MostPopular(ds.interactions.train().csr()), ds, "test")
    seeds = [int(s) for s in args.seeds.split(",")]
    models = args.models.split(",") if args.models else MODELS.names()
    adapters = args.adapters.split(",")
    base = [f"patience={args.patience}", *args.overrides]
    common = {"workspace": str(ws.root), "epochs": args.epochs, "dataset": "hm"}

    selected: dict[str, dict[str, Any]] = {m: {} for m in models}
    tune_rows: list[dict[str, Any]] = []
    if args.grid == "small":
        jobs = [{**common, "stage": "tune", "model": m, "adapter": "none", "seed": seeds[0],
                 "point": pt, "overrides": _overrides(pt, base)}
                for m in models for pt in _grid_points(GRIDS.get(m, {}))]
        tune_rows = _run_jobs(jobs, args.jobs)
        for m in models:
            best = max((r for r in tune_rows if r["model"] == m),
                       key=lambda r: r["valid Recall@20"])  # validation only
            selected[m] = best["point"]
            print(f"selected for {m}: {selected[m] or 'defaults'} "
                  f"(valid R@20 {best['valid Recall@20']:.4f})", flush=True)

    jobs = [{**common, "stage": "seeds", "model": m, "adapter": a, "seed": s,
             "point": selected[m], "overrides": _overrides(selected[m], base)}
            for m in models for a in adapters
            if a == "none" or MODELS.get(m).multimodal for s in seeds]
    rows = _run_jobs(jobs, args.jobs)

    def values(m: str, a: str, key: str) -> list[Any]:
        return [r[key] for r in rows if r["model"] == m and r["adapter"] == a]

    lgcn = values("lightgcn", "none", "Recall@20")
    lgcn_mean = statistics.mean(lgcn) if lgcn else None
    print(f"\nH&M sample, test at the best validation epoch, seeds {seeds} (mean ± std over "
          f"seeds); most-popular Recall@20 {pop['Recall@20']:.4f}, NDCG@20 {pop['NDCG@20']:.4f}")
    print("| model | settings (tuned on valid) | adapter | test Recall@20 | test NDCG@20 "
          "| valid Recall@20 | vs most-pop | vs LightGCN | gate: mean (q05, q50, q95; >0.9) |")
    print("|---|---|---|---:|---:|---:|---:|---:|---|")
    summary = []
    for m in models:
        for a in adapters:
            rec = values(m, a, "Recall@20")
            if not rec:
                continue
            mean = statistics.mean(rec)
            point = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in selected[m].items()) \
                or "defaults"
            vs_lg = f"{mean / lgcn_mean:.2f}×" if lgcn_mean else "n/a"
            gates = [g for g in values(m, a, "gate") if g]
            print(f"| {m} | {point} | {a} | {_ms(rec)} | {_ms(values(m, a, 'NDCG@20'))} | "
                  f"{_ms(values(m, a, 'valid Recall@20'))} | {mean / pop['Recall@20']:.2f}× | "
                  f"{vs_lg} | {_gate_text(gates)} |")
            summary.append({"model": m, "adapter": a, "settings": selected[m],
                            "Recall@20": rec, "NDCG@20": values(m, a, "NDCG@20"),
                            "valid Recall@20": values(m, a, "valid Recall@20"),
                            "gate": gates})
    if args.out:
        args.out.write_text(json.dumps({"seeds": seeds, "most_popular": pop, "grids": GRIDS,
                                        "selected": selected, "tuning": tune_rows,
                                        "runs": rows, "summary": summary}, indent=2,
                                       default=str))


if __name__ == "__main__":
    main()
