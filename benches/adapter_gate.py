"""Does the BeFA gate act on the synthetic shop? Gate knobs vs. accuracy (FREEDOM and VBPR).

DESIGN.md ("What a first experiment showed") warns that the adapter's sigmoid gate, trained with
plain BPR, settles near 1 so that g ⊙ e = e and the adapter does nothing. This bench trains, on
the demo's shop with its real features (MobileNetV2 images, all-MiniLM-L6-v2 texts) and the
demo's schedule (lr 5e-3, at most 40 epochs, early stopping on validation Recall@20), each
backbone in these settings:

- ``none``: no adapter;
- ``befa``: the adapter with the defaults (gate bias 0, temperature 1, no gate penalty);
- ``T0.25``: ``adapter_temperature=0.25`` (sharper sigmoid);
- ``reg0.1/t0.5``, ``reg1/t0.5``: ``adapter_params.gate_reg`` 0.1 / 1 with
  ``adapter_params.gate_target=0.5`` (budget penalty (mean gate − 0.5)²);
- ``bias-2``: ``adapter_gate_bias=-2`` (every gate starts near 0.12);
- FREEDOM only, ``aux0.1``, ``aux0.1+befa``, ``aux0.1+reg1/t0.5``: the same with
  ``model_params.aux_weight=0.1``. FREEDOM's content, and so the adapter, reaches the loss only
  through an auxiliary BPR term weighted by ``aux_weight`` (1e-4 by default), which leaves the
  adapter almost no gradient; these are compared with ``aux0.1`` (no adapter).

It reports test Recall@20 / NDCG@20 at the best validation epoch and the gate distribution over
all items × dimensions (``gate`` in each run's ``metrics.json``): mean, 5th/50th/95th percentile,
share of gates below 0.1 and above 0.9. Everything goes through the public pipeline
(``synth_dataset``, ``encode_dataset``, ``train_model``); runs are reused when the workspace
already holds them (same config hash), so a second call only prints the tables.

Usage::

    .venv/bin/python benches/adapter_gate.py --workspace /tmp/gate_ws [--seeds 999,1000]
        [--models freedom,vbpr] [--configs none,befa,...] [--epochs 40] [--out gate.json]

The workspace should already hold the encoded shop (copy a finished ``make demo`` workspace's
``datasets/`` and ``features/``); otherwise the shop is generated and encoded first (needs the
offline MobileNetV2 and MiniLM weights; minutes). One torch thread.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from befa_viz import pipeline  # noqa: E402

#: name → (adapter, TrainConfig overrides on top of the demo's lr).
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "none": ("none", {}),
    "befa": ("befa", {}),
    "T0.25": ("befa", {"adapter_temperature": 0.25}),
    "reg0.1/t0.5": ("befa", {"adapter_params": {"gate_reg": 0.1, "gate_target": 0.5}}),
    "reg1/t0.5": ("befa", {"adapter_params": {"gate_reg": 1.0, "gate_target": 0.5}}),
    "bias-2": ("befa", {"adapter_gate_bias": -2.0}),
    # FREEDOM only: its content (and so the adapter) enters the loss only through an auxiliary
    # BPR term weighted by aux_weight (default 1e-4); these raise it to 0.1 (BeFA's grid top).
    "aux0.1": ("none", {"model_params": {"aux_weight": 0.1}}),
    "aux0.1+befa": ("befa", {"model_params": {"aux_weight": 0.1}}),
    "aux0.1+reg1/t0.5": ("befa", {"model_params": {"aux_weight": 0.1},
                                  "adapter_params": {"gate_reg": 1.0, "gate_target": 0.5}}),
}
FREEDOM_ONLY = ("aux0.1", "aux0.1+befa", "aux0.1+reg1/t0.5")


def _baseline(name: str) -> str:
    """The adapter-free config a setting is compared with."""
    return "aux0.1" if name.startswith("aux0.1") else "none"
GATE_KEYS = ("mean", "q05", "q50", "q95", "frac_below_0.1", "frac_above_0.9")


def _train(ws: str, model: str, name: str, seed: int, epochs: int, lr: float,
           features: dict[str, Any]) -> dict[str, Any]:
    adapter, extra = CONFIGS[name]
    t0 = time.perf_counter()
    run = pipeline.train_model(ws, model=model, adapter=adapter, dataset="shop",
                               features=features, overrides={"lr": lr, **extra}, seed=seed,
                               epochs=epochs, resume=True)
    m = json.loads((Path(run.path) / "metrics.json").read_text())
    return {"model": model, "config": name, "seed": seed, "run": Path(run.path).name,
            "seconds": round(time.perf_counter() - t0, 1), "best_epoch": m["best_epoch"],
            "epochs_run": m["epochs_run"], "recall20": m["test"]["Recall@20"],
            "ndcg20": m["test"]["NDCG@20"],
            "gate": {mod: {k: g[k] for k in GATE_KEYS} for mod, g in m.get("gate", {}).items()}}


def _fmt_gate(gs: list[dict[str, float]]) -> str:
    """Mean over the given gate summaries (seeds, or seeds × modalities)."""
    a = {k: float(np.mean([g[k] for g in gs])) for k in GATE_KEYS}
    return (f"{a['mean']:.3f} | {a['q05']:.3f} / {a['q50']:.3f} / {a['q95']:.3f} | "
            f"{a['frac_below_0.1']:.2f} | {a['frac_above_0.9']:.2f}")


def tables(rows: list[dict[str, Any]]) -> str:
    """Markdown: one row per (model, config), seeds averaged; gate per modality."""
    out = ["| model | config | seeds | R@20 | N@20 | ΔR@20 vs no adapter | modality | gate mean | "
           "q05 / q50 / q95 | <0.1 | >0.9 |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for model in dict.fromkeys(r["model"] for r in rows):
        for name in CONFIGS:
            base = [r["recall20"] for r in rows
                    if r["model"] == model and r["config"] == _baseline(name)]
            rs = [r for r in rows if r["model"] == model and r["config"] == name]
            if not rs:
                continue
            rec = [r["recall20"] for r in rs]
            nd = [r["ndcg20"] for r in rs]
            rtxt = f"{np.mean(rec):.4f}" + (f" ({min(rec):.3f}–{max(rec):.3f})"
                                             if len(rs) > 1 else "")
            delta = f"{np.mean(rec) - np.mean(base):+.4f}" if base else "–"
            head = f"| {model} | {name} | {len(rs)} | {rtxt} | {np.mean(nd):.4f} | {delta} |"
            mods = sorted({mod for r in rs for mod in r["gate"]})
            if not mods:
                out.append(head + " – | – | – | – | – |")
            for mod in mods:
                out.append(f"{head} {mod} | {_fmt_gate([r['gate'][mod] for r in rs])} |")
                head = "| | | | | | |"
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workspace", default="/tmp/gate_ws")
    p.add_argument("--seeds", default="999")
    p.add_argument("--models", default="freedom,vbpr")
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--out", default=None, help="write all rows as JSON here")
    args = p.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING)
    configs = args.configs.split(",")
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise SystemExit(f"Unknown config(s) {unknown}; known: {list(CONFIGS)}")

    pipeline.synth_dataset(args.workspace, "shop")
    enc = pipeline.encode_dataset(args.workspace, "shop", image_encoder="torchvision:mobilenet_v2",
                                  text_encoder="hf:minilm")
    features = {m: path for m, path in enc.items()}
    rows = []
    t0 = time.perf_counter()
    for seed in (int(s) for s in args.seeds.split(",")):
        for model in args.models.split(","):
            for name in configs:
                if name in FREEDOM_ONLY and model != "freedom":
                    continue
                r = _train(args.workspace, model, name, seed, args.epochs, args.lr, features)
                rows.append(r)
                print(f"[{time.perf_counter() - t0:6.0f}s] {model:8s} {name:12s} seed {seed}: "
                      f"R@20 {r['recall20']:.4f} N@20 {r['ndcg20']:.4f} "
                      f"best ep {r['best_epoch']}/{r['epochs_run']} ({r['seconds']}s)",
                      flush=True)
    print()
    print(tables(rows))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
