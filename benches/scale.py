"""Scale-out on this machine: single process vs 1 and 2 Ray workers (encode, attribution).

* **encode**: MobileNetV2 (ImageNet weights) on the first ``--encode-items`` MovieLens posters
  (read from ``../shared/data``; features written under ``--out``, never into the repo):
  ``encode_catalog`` in this process vs ``encode_catalog_ray`` with 1 and 2 actors.
* **attribution**: ``explain_items(top_drift=N)`` (IG, ``--steps`` steps, blur baseline,
  with/without-BeFA pair plus the behaviour-alignment relevance maps and the faithfulness
  curves) on a toy shop of ``--attr-items`` items whose 32-px images MobileNetV2 resizes to
  224 px, i.e. the per-item cost of a real photo; VBPR runs trained for 2 epochs.
* **Ray overhead**: ``ray.init`` of a local 2-CPU Ray, and the first actor's start-up.
* **peak RSS** of each worker process (``ru_maxrss``).

Every engine writes into its own cache folder, so each measures a cold job; features and maps
are checked equal to the single-process ones. One torch thread per process throughout.

    PYTHONPATH=. .venv/bin/python benches/scale.py [--encode-items 96] [--attr-items 12]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encode import movielens_catalog  # noqa: E402

from befa_viz.cache import Cache  # noqa: E402
from befa_viz.distributed import RayEngine, encode_catalog_ray  # noqa: E402
from befa_viz.encoders import create_encoder  # noqa: E402
from befa_viz.encoders.store import encode_catalog  # noqa: E402

KEY = "torchvision:mobilenet_v2"


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_encode(args: argparse.Namespace, out: Path) -> dict:
    cat = movielens_catalog(args.encode_items)
    kw = {"dataset_fingerprint": "bench", "dataset_name": "ml", "chunk_size": args.chunk_size,
          "batch_size": args.batch_size}
    t = time.perf_counter()
    local = encode_catalog(cat, create_encoder(KEY, modality="image"),
                           cache=Cache(out / "enc-local"), **kw)
    res = {"items": len(cat), "local_seconds": time.perf_counter() - t,
           "local_rss_mb": rss_mb()}
    for w in args.workers:
        eng = RayEngine(num_workers=w)
        t = time.perf_counter()
        table = encode_catalog_ray(cat, KEY, modality="image", engine=eng,
                                   cache=Cache(out / f"enc-ray{w}"), **kw)
        res[f"ray{w}_seconds"] = time.perf_counter() - t
        res[f"ray{w}_stats"] = dict(eng.stats)
        res[f"ray{w}_max_abs_diff"] = float(np.abs(table.values - local.values).max())
    return res


def bench_attribution(args: argparse.Namespace, out: Path) -> dict:
    from befa_viz.pipeline import clear_memos, encode_dataset, explain_items, train_model
    from befa_viz.testing import toy_dataset
    from befa_viz.workspace import Workspace

    ws = Workspace(out / "ws")
    if not (ws.dataset_dir("toy") / "dataset.json").is_file():
        toy_dataset(n_users=40, n_items=args.attr_items, folder=ws.root / "img").save(
            ws.dataset_dir("toy"))
    encode_dataset(ws, "toy", image_encoder=KEY, text_encoder="tiny:text")
    for adapter in ("none", "befa"):
        train_model(ws, model="vbpr", adapter=adapter, dataset="toy", epochs=2, resume=True)
    kw = {"top_drift": args.attr_items, "workspace": ws, "method": "ig", "n_steps": args.steps,
          "baseline": "blur", "faithfulness_steps": 8, "batch_size": args.attr_batch}
    clear_memos()
    t = time.perf_counter()
    local = explain_items(cache=out / "attr-local", **kw)
    res = {"items": len(local), "maps": 3 * len(local), "steps": args.steps,
           "local_seconds": time.perf_counter() - t, "local_rss_mb": rss_mb()}
    print("attribution", json.dumps(res), flush=True)
    for w in args.workers:
        eng = RayEngine(num_workers=w)
        t = time.perf_counter()
        got = explain_items(cache=out / f"attr-ray{w}", engine=eng, **kw)
        res[f"ray{w}_seconds"] = time.perf_counter() - t
        res[f"ray{w}_stats"] = dict(eng.stats)
        res[f"ray{w}_max_abs_diff"] = max(
            float(np.abs(b.attributions[v].values - a.attributions[v].values).max())
            for a, b in zip(local, got, strict=True) for v in a.attributions)
        print("attribution", w, json.dumps({k: v for k, v in res.items() if f"ray{w}" in k}),
              flush=True)
    return res


class _Noop:
    def ping(self) -> int:
        return os.getpid()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--encode-items", type=int, default=96)
    p.add_argument("--attr-items", type=int, default=12)
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--attr-batch", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--chunk-size", type=int, default=8)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--skip", nargs="*", default=[], choices=["encode", "attribution"])
    p.add_argument("--out", type=Path, default=Path("/tmp/befa-scale"))
    args = p.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    import ray

    report: dict = {"uptime": os.popen("uptime").read().strip(), "cpus": os.cpu_count()}
    t = time.perf_counter()
    ray.init(num_cpus=max(args.workers), _node_ip_address="127.0.0.1", include_dashboard=False,
             object_store_memory=256 * 1024**2, configure_logging=False, log_to_driver=False)
    report["ray_init_seconds"] = time.perf_counter() - t
    t = time.perf_counter()
    a = ray.remote(num_cpus=1)(_Noop).remote()
    ray.get(a.ping.remote())
    report["first_actor_seconds"] = time.perf_counter() - t
    ray.kill(a)
    if "encode" not in args.skip:
        report["encode"] = bench_encode(args, args.out)
        print(json.dumps(report["encode"], indent=1), flush=True)
    if "attribution" not in args.skip:
        report["attribution"] = bench_attribution(args, args.out)
        print(json.dumps(report["attribution"], indent=1), flush=True)
    report["uptime_end"] = os.popen("uptime").read().strip()
    (args.out / "scale.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k not in ("encode", "attribution")},
                     indent=1))
    for job in ("encode", "attribution"):
        r = report.get(job)
        if not r:
            continue
        row = [f"{job}: {r['items']} items, single process {r['local_seconds']:.1f} s"]
        for w in args.workers:
            s = r[f"ray{w}_seconds"]
            row.append(f"ray x{w} {s:.1f} s ({r['local_seconds'] / s:.2f}x, peak RSS/worker "
                       f"{max(r[f'ray{w}_stats'].get('peak_rss_mb', {'-': 0}).values()):.0f} MiB)")
        print("; ".join(row))


if __name__ == "__main__":
    main()
