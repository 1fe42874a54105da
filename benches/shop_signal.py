"""Does content help the recommender on the synthetic shop? (issue 6: tune the generator)

Trains, on the same shop and with the project's trainer (MMRec protocol, test Recall@20 at the
best validation epoch):

- ``pop``: most popular items (no learning);
- ``bprmf``: ID-only matrix factorisation;
- ``vbpr+attr``: VBPR with the *true* attributes (one-hot kind, colour, pattern) as content —
  what a perfect content encoder could give;
- ``vbpr+mnv2``: VBPR with MobileNetV2 ImageNet features of the images (``--mobilenet``; raw
  1280-d and whitened PCA-32);
- ``oracle``: the generator's own choice probabilities (an upper bound; not learnt).

Usage::

    .venv/bin/python benches/shop_signal.py [--mobilenet] [--seeds 0,1] [--models lightgcn,bm3]
        [knob=value ...]

Knobs are :class:`befa_viz.data.synth.ShopConfig` fields, e.g. ``taste_strength=1.0``. Without
``--mobilenet`` no image is rendered (only the interactions are sampled), so a run takes
seconds. One torch thread (faster on the 2-core machine).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import tempfile
import time

import numpy as np
import torch

from befa_viz.data.synth import (
    ShopConfig,
    _chronological_split,
    _draws,
    _interactions,
    generate_shop,
)
from befa_viz.data.types import Catalog, Interactions, RecDataset
from befa_viz.metrics import MostPopular
from befa_viz.models import MODELS
from befa_viz.train import TrainConfig, build_model, evaluate, fit


def _dataset(cfg: ShopConfig) -> tuple[RecDataset, np.ndarray, np.ndarray]:
    """The shop's interactions without images, plus one-hot attributes and choice log-probs."""
    d = _draws(cfg)
    tastes, users, items, times = _interactions(cfg, d.attrs, d.popularity)
    split = _chronological_split(users, times, cfg.split)
    sizes = (cfg.n_kinds, cfg.n_colours, cfg.n_patterns)
    onehot = np.zeros((cfg.n_items, sum(sizes)), np.float32)
    off = np.cumsum((0,) + sizes[:-1])
    for a in range(3):
        onehot[np.arange(cfg.n_items), off[a] + d.attrs[:, a]] = 1
    util = tastes.astype(np.float64) @ onehot.T
    p = np.exp(util - util.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p = (1 - cfg.popularity_share) * p + cfg.popularity_share * d.popularity[None]
    ids = [f"i{i}" for i in range(cfg.n_items)]
    cat = Catalog(ids, ids, ids)
    inter = Interactions(users, items, split, cfg.n_users, cfg.n_items, timestamp=times)
    return RecDataset("shop", cat, inter), onehot, np.log(p)


class _Oracle:
    def __init__(self, logp: np.ndarray) -> None:
        self.logp = torch.from_numpy(logp.astype(np.float32))

    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        return self.logp[users]


def _mobilenet(ds: RecDataset) -> np.ndarray:
    import torchvision

    net = torchvision.models.mobilenet_v2(weights="IMAGENET1K_V1").eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    out = []
    with torch.no_grad():
        for s in range(0, ds.n_items, 32):
            x = torch.stack([torch.from_numpy(np.asarray(ds.catalog.image(i), np.float32) / 255)
                             .permute(2, 0, 1) for i in range(s, min(ds.n_items, s + 32))])
            x = torch.nn.functional.interpolate(x, size=224, mode="bilinear", antialias=True)
            f = net.features((x - mean) / std).mean((2, 3))
            out.append(f.numpy())
    return np.concatenate(out)


def _pca_white(x: np.ndarray, k: int) -> np.ndarray:
    x = x - x.mean(0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    return (u[:, :k] * np.sqrt(len(x))).astype(np.float32)


def _train(ds: RecDataset, model: str, feats: dict[str, np.ndarray], seed: int) -> dict:
    cfg = TrainConfig(model=model, lr=5e-3, epochs=400, patience=15, seed=seed, dim=64,
                      topk=(10, 20))
    m = build_model(cfg, ds, {k: torch.from_numpy(v) for k, v in feats.items()})
    t = time.perf_counter()
    res = fit(m, ds, cfg)
    return {"Recall@20": res.test["Recall@20"], "NDCG@20": res.test["NDCG@20"],
            "epoch": res.state.best_epoch, "s": round(time.perf_counter() - t, 1)}


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mobilenet", action="store_true")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--models", default="",
                    help="Extra backbones trained with the true attributes as content (behaviour-"
                         "only ones without), e.g. lightgcn,bm3,freedom.")
    ap.add_argument("knobs", nargs="*")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    knobs = {}
    for kv in args.knobs:
        k, v = kv.split("=", 1)
        try:
            knobs[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            knobs[k] = v
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        cfg = ShopConfig.from_knobs(**{**knobs, "seed": seed})
        ds, onehot, logp = _dataset(cfg)
        res = {"seed": seed}
        res["pop"] = {"Recall@20": evaluate(MostPopular(ds.interactions.train().csr()), ds,
                                            "test", ks=(20,))["Recall@20"]}
        res["oracle"] = {"Recall@20": evaluate(_Oracle(logp), ds, "test", ks=(20,))["Recall@20"]}
        res["bprmf"] = _train(ds, "bprmf", {}, 999)
        res["vbpr+attr"] = _train(ds, "vbpr", {"attr": onehot}, 999)
        for name in filter(None, args.models.split(",")):
            multimodal = MODELS.get(name).multimodal
            res[f"{name}+attr" if multimodal else name] = _train(
                ds, name, {"attr": onehot} if multimodal else {}, 999)
        if args.mobilenet:
            with tempfile.TemporaryDirectory() as tmp:
                shop = generate_shop(f"{tmp}/shop", **{**knobs, "seed": seed})
                assert shop.interactions.fingerprint() == ds.interactions.fingerprint()
                t = time.perf_counter()
                f = _mobilenet(shop)
                res["mnv2_seconds"] = round(time.perf_counter() - t, 1)
            res["vbpr+mnv2"] = _train(ds, "vbpr", {"image": f}, 999)
            res["vbpr+mnv2pca32"] = _train(ds, "vbpr", {"image": _pca_white(f, 32)}, 999)
        rows.append(res)
        print(json.dumps(res), flush=True)
    keys = [k for k in rows[0] if isinstance(rows[0][k], dict)]
    summary = {k: round(float(np.mean([r[k]["Recall@20"] for r in rows])), 4) for k in keys}
    print("mean test Recall@20", json.dumps(summary), "knobs", json.dumps(knobs))


if __name__ == "__main__":
    main(sys.argv[1:])
