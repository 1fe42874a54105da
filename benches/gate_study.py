"""Gate study: does the published BeFA adapter saturate, and where does it filter?

Trains the official BeFA backbone (``lightgcn_knn``: LightGCN + fixed kNN item graphs) with the
adapter in the official layer order, on any workspace dataset with encoded features, with the
raw feature tables frozen and trainable (as the official code), and reports for every run:

- the gate g ∈ (0,1)^d over training (per evaluation: mean, std, share < 0.1 and > 0.9; per
  dimension: the mean over items of each of the d gate dimensions) and at the best epoch;
- the *effective change* the adapter makes, per item i and modality, averaged over items:
  ``change_e`` = ‖g ⊙ e − e‖ / ‖e‖ (0: the gate passes the behaviour embedding e through
  unchanged, i.e. it is saturated; 1: it closes every dimension) and
  ``change_c`` = ‖g ⊙ e − ċ‖ / ‖ċ‖ (how far the adapted representation is from the plain
  projected content ċ that the backbone uses without the adapter; ≈ 1 or more: the content
  representation is replaced); ``item_std`` = the mean over dimensions of the gate's std
  across items (0: the gate does not depend on the item, so on the content, at all);
- with trainable features, the mean cosine between the fine-tuned table and the encoder output;
- test Recall@20 / NDCG@20 at the best validation epoch, next to most-popular.

Two stages per dataset (``--grid``):

1. **gate grid** (seed 999, with the adapter): a documented sub-grid of the official grid
   (lr {1e-4, 5e-4, 1e-3, 5e-3} × reg {1e-5, 1e-3, 1e-1} × L {1, 2, 4, 8} × dropout
   {0.1, 0.3, 0.5, 0.7} = 192 points), × features frozen / trainable. The best point per
   feature mode is picked on *validation* Recall@20.
2. **seeds**: that point, with and without the adapter (same backbone settings), over
   ``--seeds``; paired tests (scipy) of with − without: a paired t-test over seeds and a
   Wilcoxon signed-rank test over users (per-user test Recall@20 / NDCG@20 averaged over seeds).

Complete runs are reused; ``--jobs`` runs train at once, one torch thread each.

Usage::

    python benches/gate_study.py --workspace /tmp/gate/ws --prepare shop,movielens
    python benches/gate_study.py --workspace W --datasets hm --grid small --out /tmp/hm.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

MOVIELENS = Path(__file__).resolve().parents[2] / "shared" / "data" / "movielens-100k-posters"
MODEL = "lightgcn_knn"

# Sub-grids of the official grid that fit a 2-core machine (see the README "Gate study").
GRIDS: dict[str, dict[str, list[Any]]] = {
    # 2 lr × 2 (L, dropout) corners × 2 reg: 8 points per feature mode
    "small": {"lr": [5e-4, 5e-3], "model_params.reg_weight": [1e-5, 1e-1],
              "adapter": [("1", "0.1"), ("8", "0.7")]},
    # the lr 5e-3 slice of "small": 2 reg × 2 corners, 4 points per feature mode
    "tiny": {"lr": [5e-3], "model_params.reg_weight": [1e-5, 1e-1],
             "adapter": [("1", "0.1"), ("8", "0.7")]},
    # the lowest and highest reg at lr 5e-3, L 1, dropout 0.1: 2 points per feature mode
    "minimal": {"lr": [5e-3], "model_params.reg_weight": [1e-5, 1e-1],
                "adapter": [("1", "0.1")]},
    # the official grid (192 points per feature mode: hours on a laptop)
    "official": {"lr": [1e-4, 5e-4, 1e-3, 5e-3], "model_params.reg_weight": [1e-5, 1e-3, 1e-1],
                 "adapter": [(str(L), str(p)) for L in (1, 2, 4, 8) for p in (0.1, 0.3, 0.5, 0.7)]},
}


def _points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    out = []
    for lr in grid["lr"]:
        for reg in grid["model_params.reg_weight"]:
            for layers, drop in grid["adapter"]:
                out.append({"lr": lr, "model_params.reg_weight": reg,
                            "adapter_layers": int(layers), "adapter_dropout": float(drop)})
    return out


def _gate_stats(model: Any) -> dict[str, Any]:
    """Gate, effective change and per-dimension spread per modality (eval mode, no grad)."""
    import torch

    out: dict[str, Any] = {}
    if not model.adapters:
        return out
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            idx = torch.arange(model.n_items)
            e = model.behaviour_embedding(idx)  # [I, d]
            for m in model.modalities:
                raw = model.raw_features(m)
                c = model.projections[m](raw)  # ċ [I, d]
                g = model.gate(m, raw)  # [I, d]
                adapted = g * e
                en, cn = e.norm(dim=1).clamp_min(1e-12), c.norm(dim=1).clamp_min(1e-12)
                dim_mean = g.mean(0)  # [d]
                out[m] = {
                    "mean": float(g.mean()), "frac_below_0.1": float((g < 0.1).float().mean()),
                    "frac_above_0.9": float((g > 0.9).float().mean()),
                    "change_e": float(((adapted - e).norm(dim=1) / en).mean()),
                    "change_c": float(((adapted - c).norm(dim=1) / cn).mean()),
                    "item_std": float(g.std(0).mean()),
                    "dim_mean_min": float(dim_mean.min()), "dim_mean_max": float(dim_mean.max()),
                    "dims_mean_below_0.5": int((dim_mean < 0.5).sum()),
                    "dim_mean": [round(float(v), 4) for v in dim_mean],
                }
    finally:
        model.train(was)
    return out


def _train(job: dict[str, Any]) -> dict[str, Any]:
    """Train (or reuse) one run in a worker process; return its summary row."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from befa_viz.pipeline import Workspace, latest_features
    from befa_viz.train import evaluate_per_user, load_train_config, train

    ws = Workspace(job["workspace"])
    ds = ws.load_dataset(job["dataset"])
    feats = latest_features(ws, job["dataset"])
    over = {**job["point"], "adapter": job["adapter"], "seed": job["seed"],
            "epochs": job["epochs"], "patience": job["patience"],
            "train_features": job["train_features"], "dataset": job["dataset"],
            **{f"features.{m}": str(p) for m, p in feats.items()}}
    if job["adapter"] == "none":
        over.pop("adapter_layers"), over.pop("adapter_dropout")
    cfg = load_train_config(None, over, model=MODEL)
    traj_dir = Path(job["workspace"]) / "gate-trajectories"
    traj_dir.mkdir(exist_ok=True)
    trajectory: list[dict[str, Any]] = []

    def on_epoch_end(state: Any, model: Any, improved: bool) -> None:
        if state.history and "valid" in state.history[-1]:
            trajectory.append({"epoch": state.epoch, "gate": {
                m: {k: v[k] for k in ("mean", "frac_below_0.1", "frac_above_0.9", "item_std",
                                      "dim_mean_min", "dim_mean_max", "change_e")}
                for m, v in _gate_stats(model).items()}})

    t0 = time.perf_counter()
    run = train(ds, cfg, runs_dir=ws.runs_dir, resume=True, on_epoch_end=on_epoch_end)
    traj_path = traj_dir / f"{run.name}.json"
    if trajectory:
        traj_path.write_text(json.dumps(trajectory))
    elif traj_path.is_file():
        trajectory = json.loads(traj_path.read_text())
    model = run.model
    users, per_user = evaluate_per_user(model, ds, "test")
    return {**{k: job[k] for k in ("stage", "dataset", "adapter", "seed", "point",
                                   "train_features")},
            "valid Recall@20": run.valid_metrics["Recall@20"],
            "Recall@20": run.test_metrics["Recall@20"], "NDCG@20": run.test_metrics["NDCG@20"],
            "most_popular Recall@20": run.metrics.get("most_popular", {}).get("Recall@20"),
            "best_epoch": run.metrics.get("best_epoch"), "epochs_run": run.metrics.get("epochs_run"),
            "s_per_epoch": run.info["timings"]["seconds_per_epoch"],
            "gate": _gate_stats(model), "gate_notes": run.gate_notes,
            "feature_cosine": {m: d["mean"] for m, d in run.feature_drift.items()},
            "trajectory": trajectory, "users": users.tolist(),
            "user_recall": np.asarray(per_user["Recall@20"]).tolist(),
            "user_ndcg": np.asarray(per_user["NDCG@20"]).tolist(),
            "warnings": run.metrics.get("warnings", []),
            "seconds": time.perf_counter() - t0, "run": run.name}


def _run_jobs(jobs: list[dict[str, Any]], n_jobs: int) -> list[dict[str, Any]]:
    if n_jobs <= 1:
        return [_report(r) for r in map(_train, jobs)]
    with ProcessPoolExecutor(n_jobs, mp_context=get_context("spawn")) as pool:
        return [_report(r) for r in pool.map(_train, jobs)]


def _label(point: dict[str, Any]) -> str:
    short = {"lr": "lr", "model_params.reg_weight": "reg", "adapter_layers": "L",
             "adapter_dropout": "drop"}
    return " ".join(f"{short[k]}={v:g}" for k, v in point.items())


def _gate_cell(r: dict[str, Any]) -> str:
    return "; ".join(f"{m[:3]} {g['mean']:.3f} ({100 * g['frac_below_0.1']:.1f} % < 0.1)"
                     for m, g in r["gate"].items()) or "-"


def _report(r: dict[str, Any]) -> dict[str, Any]:
    feats = "trainable" if r["train_features"] else "frozen"
    print(f"[{r['stage']}] {r['dataset']:10} {r['adapter']:4} {feats:9} seed {r['seed']} "
          f"{_label(r['point']):36} valid R@20 {r['valid Recall@20']:.4f} test R@20 "
          f"{r['Recall@20']:.4f} gate {_gate_cell(r)} (best {r['best_epoch']}/{r['epochs_run']},"
          f" {r['s_per_epoch']:.2f} s/epoch, {r['seconds']:.0f} s)", flush=True)
    return r


def _prepare(ws: Any, names: list[str]) -> None:
    from befa_viz.pipeline import encode_dataset, import_dataset, synth_dataset

    for name in names:
        t0 = time.perf_counter()
        if name == "shop":
            synth_dataset(ws, "shop")
        elif name == "movielens":
            import_dataset("movielens", MOVIELENS, workspace=ws, name="movielens")
        else:
            raise SystemExit(f"--prepare knows shop and movielens; import and encode {name!r} "
                             "with 'befa-viz data import' and 'befa-viz encode' first.")
        encode_dataset(ws, name, image_encoder="torchvision:mobilenet_v2",
                       text_encoder="hf:minilm", progress=False)
        print(f"prepared {name} in {time.perf_counter() - t0:.0f} s", flush=True)


def _paired(rows_a: list[dict[str, Any]], rows_b: list[dict[str, Any]]) -> dict[str, Any]:
    """With (b) − without (a): t-test over seeds and Wilcoxon over users (seed-averaged)."""
    import numpy as np
    from scipy import stats

    from befa_viz.train import paired_tests

    seeds = sorted(set(r["seed"] for r in rows_a) & set(r["seed"] for r in rows_b))
    by = {(r["adapter"], r["seed"]): r for r in rows_a + rows_b}
    out: dict[str, Any] = {"seeds": seeds}
    for key, per_user in (("Recall@20", "user_recall"), ("NDCG@20", "user_ndcg")):
        a = [by[("none", s)][key] for s in seeds]
        b = [by[("befa", s)][key] for s in seeds]
        out[key] = {"without": a, "with": b, "seeds": paired_tests(a, b)}
        ua = np.mean([by[("none", s)][per_user] for s in seeds], axis=0)
        ub = np.mean([by[("befa", s)][per_user] for s in seeds], axis=0)
        d = ub - ua
        p = float(stats.wilcoxon(ub, ua).pvalue) if (d != 0).any() else float("nan")
        out[key]["users"] = {"n": int(len(d)), "mean_diff": float(d.mean()), "wilcoxon_p": p,
                             "n_better": int((d > 0).sum()), "n_worse": int((d < 0).sum())}
    return out


def _ms(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workspace", type=Path, default=Path("/tmp/befa-gate-study"))
    p.add_argument("--datasets", default="shop,movielens",
                   help="Comma-separated workspace datasets (with encoded features).")
    p.add_argument("--prepare", default="", help="Comma-separated datasets to generate/import "
                   "and encode first (shop, movielens).")
    p.add_argument("--grid", choices=sorted(GRIDS), default="tiny")
    p.add_argument("--features", default="frozen,trainable")
    p.add_argument("--seeds", default="999,1000,1001")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--jobs", type=int, default=2, help="Runs trained at once (1 thread each).")
    p.add_argument("--out", type=Path, default=None, help="JSON with every run and test.")
    args = p.parse_args()

    import torch

    torch.set_num_threads(1)
    from befa_viz.pipeline import Workspace

    ws = Workspace(args.workspace)
    if args.prepare:
        _prepare(ws, args.prepare.split(","))
    seeds = [int(s) for s in args.seeds.split(",")]
    modes = [m == "trainable" for m in args.features.split(",")]
    grid = _points(GRIDS[args.grid])
    common = {"workspace": str(ws.root), "epochs": args.epochs, "patience": args.patience}
    t_start = time.perf_counter()
    result: dict[str, Any] = {"grid": args.grid, "points": grid, "seeds": seeds,
                              "epochs": args.epochs, "patience": args.patience, "datasets": {}}
    for name in args.datasets.split(","):
        jobs = [{**common, "stage": "grid", "dataset": name, "adapter": "befa", "seed": seeds[0],
                 "point": pt, "train_features": tf} for tf in modes for pt in grid]
        grid_rows = _run_jobs(jobs, args.jobs)
        best = {tf: max((r for r in grid_rows if r["train_features"] == tf),
                        key=lambda r: r["valid Recall@20"])["point"] for tf in modes}
        jobs = [{**common, "stage": "seeds", "dataset": name, "adapter": a, "seed": s,
                 "point": best[tf], "train_features": tf}
                for tf in modes for a in ("none", "befa") for s in seeds]
        seed_rows = _run_jobs(jobs, args.jobs)
        tests = {}
        for tf in modes:
            mine = [r for r in seed_rows if r["train_features"] == tf]
            tests["trainable" if tf else "frozen"] = _paired(
                [r for r in mine if r["adapter"] == "none"],
                [r for r in mine if r["adapter"] == "befa"])
        result["datasets"][name] = {"grid": grid_rows, "selected": {str(k): v for k, v in
                                                                    best.items()},
                                    "seeds": seed_rows, "tests": tests}
        _print_tables(name, grid_rows, seed_rows, tests)
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s", flush=True)
    if args.out:
        for d in result["datasets"].values():  # keep the JSON small: no per-user arrays
            for r in d["grid"] + d["seeds"]:
                for k in ("users", "user_recall", "user_ndcg"):
                    r.pop(k, None)
        args.out.write_text(json.dumps(result, indent=1))


def _print_tables(name: str, grid_rows: list[dict[str, Any]], seed_rows: list[dict[str, Any]],
                  tests: dict[str, Any]) -> None:
    pop = grid_rows[0]["most_popular Recall@20"]
    print(f"\n### {name}: gate grid (seed {grid_rows[0]['seed']}, with the adapter; most-popular "
          f"test Recall@20 {pop:.4f})\n")
    print("| features | setting | valid R@20 | test R@20 | modality | gate mean | < 0.1 | > 0.9 "
          "| per-dim mean min–max | item std | change_e | change_c | feature cos |")
    print("|---|---|---:|---:|---|---:|---:|---:|---|---:|---:|---:|---:|")
    for r in grid_rows:
        for m, g in r["gate"].items():
            fc = r["feature_cosine"].get(m)
            print(f"| {'trainable' if r['train_features'] else 'frozen'} | {_label(r['point'])} | "
                  f"{r['valid Recall@20']:.4f} | {r['Recall@20']:.4f} | {m} | {g['mean']:.3f} | "
                  f"{100 * g['frac_below_0.1']:.1f} % | {100 * g['frac_above_0.9']:.1f} % | "
                  f"{g['dim_mean_min']:.3f}–{g['dim_mean_max']:.3f} | {g['item_std']:.3f} | "
                  f"{g['change_e']:.3f} | {g['change_c']:.2f} | "
                  f"{'-' if fc is None else f'{fc:.3f}'} |")
    print(f"\n### {name}: with vs without the adapter (test at the best validation epoch, "
          "mean ± std over seeds)\n")
    print("| features | setting | Recall@20 without | Recall@20 with | NDCG@20 without | "
          "NDCG@20 with | seeds t-test p (R / N) | users Wilcoxon p (R / N) | gate mean (with) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for mode, t in tests.items():
        rows = [r for r in seed_rows if r["train_features"] == (mode == "trainable")]
        gates = [g["mean"] for r in rows if r["adapter"] == "befa" for g in r["gate"].values()]
        rec, nd = t["Recall@20"], t["NDCG@20"]
        print(f"| {mode} | {_label(rows[0]['point'])} | {_ms(rec['without'])} | "
              f"{_ms(rec['with'])} | {_ms(nd['without'])} | {_ms(nd['with'])} | "
              f"{rec['seeds']['t_p']:.3f} / {nd['seeds']['t_p']:.3f} | "
              f"{rec['users']['wilcoxon_p']:.3g} / {nd['users']['wilcoxon_p']:.3g} | "
              f"{statistics.mean(gates):.3f} |")


if __name__ == "__main__":
    main()
