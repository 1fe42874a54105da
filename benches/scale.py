"""Scale-out on this machine: single process vs 1 and 2 Ray workers (encode, attribution).

* **encode**: MobileNetV2 (ImageNet weights) on the first ``--encode-items`` MovieLens posters
  (read from ``../shared/data``; features written under ``--out``, never into the repo):
  ``encode_catalog`` in this process vs ``encode_catalog_ray`` with 1 and 2 actors.
* **attribution**: ``explain_items(top_drift=N)`` (IG, ``--steps`` steps, blur baseline,
  with/without-BeFA pair plus the behaviour-alignment relevance maps and the faithfulness
  curves) on a toy shop of ``--attr-items`` items whose 32-px images MobileNetV2 resizes to
  224 px, i.e. the per-item cost of a real photo; VBPR runs trained for 2 epochs.

Every job starts cold (own cache folder, the process's run/encoder memos cleared), and its
results are checked equal to the single-process ones. Per engine it reports:

* **end to end** — the job's wall time as a user pays it, ``ray.init`` excluded (it is paid
  once per process and reported apart); the speed-up is single-process / this;
* **start-up** — single process: opening the runs and building the encoder; Ray: from the
  actor pool's creation until the last actor's first task starts (process, imports, runs,
  encoder), plus ``ray.init`` of a local Ray (once);
* **steady state** — items per minute once warm: single process, items / (end to end −
  start-up); Ray, the sum over workers of items / task seconds. Their ratio is the
  steady-state speed-up;
* **task seconds** — the workers' summed task time against the single process's compute
  time (> 1: per-task overhead, or CPU contention with the other worker and other jobs);
* **CPU s/item** — CPU seconds per item of the workers' tasks (single process: of the
  job), which other load on the machine hardly changes: equal figures mean no per-task
  overhead of ours, whatever the wall times;
* **peak RSS** per worker (``ru_maxrss``) and the load average before and after each job.

One torch thread per process throughout. The whole table, on an idle 2-core machine, in
about 3–4 minutes:

    PYTHONPATH=. .venv/bin/python benches/scale.py
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

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


def load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def _ray_row(eng: RayEngine, seconds: float, local: dict[str, Any], load0: float
             ) -> dict[str, Any]:
    st = eng.stats
    rss = list(st.get("peak_rss_mb", {}).values())
    return {"seconds": seconds, "startup_seconds": st.get("actor_start_seconds"),
            "steady_items_per_min": st.get("steady_items_per_min"),
            "task_seconds": st.get("worker_seconds"),
            "task_over_local_compute": st.get("worker_seconds", 0.0)
            / max(local["seconds"] - local["startup_seconds"], 1e-9),
            "cpu_seconds_per_item": st.get("worker_cpu_seconds", 0.0) / max(st["items"], 1),
            "peak_rss_mb": [round(r) for r in rss], "tasks": st.get("tasks"),
            "load": [load0, load()]}


def cold(folder: Path) -> Path:
    """An empty cache folder: every job of the bench starts cold, even when --out is reused."""
    shutil.rmtree(folder, ignore_errors=True)
    return folder


def bench_encode(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    cat = movielens_catalog(args.encode_items)
    for name in ["enc-local", *[f"enc-ray{w}" for w in args.workers]]:
        cold(out / name)
    kw = {"dataset_fingerprint": "bench", "dataset_name": "ml", "chunk_size": args.chunk_size,
          "batch_size": args.batch_size}
    load0 = load()
    t = time.perf_counter()
    enc = create_encoder(KEY, modality="image")
    built = time.perf_counter() - t
    cpu = time.process_time()
    local = encode_catalog(cat, enc, cache=Cache(out / "enc-local"), **kw)
    seconds = time.perf_counter() - t
    res: dict[str, Any] = {"items": len(cat), "local": {
        "seconds": seconds, "startup_seconds": built,
        "steady_items_per_min": 60 * len(cat) / (seconds - built), "peak_rss_mb": [rss_mb()],
        "cpu_seconds_per_item": (time.process_time() - cpu) / len(cat),
        "load": [load0, load()]}}
    for w in args.workers:
        eng = RayEngine(num_workers=w)
        load0 = load()
        t = time.perf_counter()
        table = encode_catalog_ray(cat, KEY, modality="image", engine=eng,
                                   cache=Cache(out / f"enc-ray{w}"), **kw)
        res[f"ray{w}"] = _ray_row(eng, time.perf_counter() - t, res["local"], load0)
        res[f"ray{w}"]["max_abs_diff"] = float(np.abs(table.values - local.values).max())
        print("encode", w, json.dumps(res[f"ray{w}"]), flush=True)
    return res


def bench_attribution(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    from befa_viz.pipeline import (
        clear_memos,
        encode_dataset,
        encoder_for_run,
        explain_items,
        find_paired_run,
        resolve_attribution_run,
        train_model,
    )
    from befa_viz.testing import toy_dataset
    from befa_viz.workspace import Workspace

    ws = Workspace(out / f"ws-{args.attr_items}")  # one toy shop per size
    if not (ws.dataset_dir("toy") / "dataset.json").is_file():
        toy_dataset(n_users=40, n_items=args.attr_items, folder=ws.root / "img").save(
            ws.dataset_dir("toy"))
    encode_dataset(ws, "toy", image_encoder=KEY, text_encoder="tiny:text")
    for adapter in ("none", "befa"):
        train_model(ws, model="vbpr", adapter=adapter, dataset="toy", epochs=2, resume=True)
    for name in ["attr-local", *[f"attr-ray{w}" for w in args.workers]]:
        cold(out / name)
    kw = {"top_drift": args.attr_items, "workspace": ws, "method": "ig", "n_steps": args.steps,
          "baseline": "blur", "faithfulness_steps": 8, "batch_size": args.attr_batch}
    clear_memos()
    load0 = load()
    t = time.perf_counter()
    run = resolve_attribution_run(ws, None, "image")
    for r in (run, find_paired_run(ws, run)):
        _ = r.model
    encoder_for_run(run, "image")
    built = time.perf_counter() - t
    cpu = time.process_time()
    local = explain_items(cache=out / "attr-local", **kw)
    seconds = time.perf_counter() - t
    cpu = time.process_time() - cpu
    ds = ws.load_dataset("toy")  # top_drift explains every item with training users
    counts = np.bincount(ds.interactions.train().item_idx, minlength=ds.n_items)
    n = int(sum(bool(c) and ds.catalog.has_image(i) for i, c in enumerate(counts)))
    res: dict[str, Any] = {"items": n, "steps": args.steps,
                           "local": {"seconds": seconds, "startup_seconds": built,
                                     "steady_items_per_min": 60 * n / (seconds - built),
                                     "cpu_seconds_per_item": cpu / n,
                                     "peak_rss_mb": [rss_mb()], "load": [load0, load()]}}
    print("attribution local", json.dumps(res["local"]), flush=True)
    for w in args.workers:
        clear_memos()
        eng = RayEngine(num_workers=w)
        load0 = load()
        t = time.perf_counter()
        got = explain_items(cache=out / f"attr-ray{w}", engine=eng, **kw)
        res[f"ray{w}"] = _ray_row(eng, time.perf_counter() - t, res["local"], load0)
        res[f"ray{w}"]["max_abs_diff"] = max(
            float(np.abs(b.attributions[v].values - a.attributions[v].values).max())
            for a, b in zip(local, got, strict=True) for v in a.attributions)
        print("attribution", w, json.dumps(res[f"ray{w}"]), flush=True)
    return res


def table(report: dict[str, Any], workers: list[int]) -> str:
    """The markdown table of the run (one row per job and engine)."""
    lines = ["| job | engine | end to end | speed-up | start-up | steady items/min | "
             "steady speed-up | task s / local compute s | CPU s/item | peak RSS/worker | "
             "load |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for job in ("encode", "attribution"):
        r = report.get(job)
        if not r:
            continue
        loc = r["local"]
        name = f"{job}, {r['items']} items" + (f", IG {r['steps']} steps" if "steps" in r
                                                else "")
        for eng in ["local", *[f"ray{w}" for w in workers]]:
            e = r[eng]
            label = "single process" if eng == "local" else f"Ray, {eng[3:]} worker(s)"
            ratio = e.get("task_over_local_compute")
            lines.append(
                f"| {name} | {label} | {e['seconds']:.1f} s | "
                f"{loc['seconds'] / e['seconds']:.2f}x | {e['startup_seconds']:.1f} s | "
                f"{e['steady_items_per_min']:.1f} | "
                f"{e['steady_items_per_min'] / loc['steady_items_per_min']:.2f}x | "
                f"{'-' if ratio is None else f'{ratio:.2f}'} | "
                f"{e['cpu_seconds_per_item']:.3g} | "
                f"{'/'.join(f'{m:.0f}' for m in e['peak_rss_mb'])} MiB | "
                f"{e['load'][0]:.1f}→{e['load'][1]:.1f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--encode-items", type=int, default=96)
    p.add_argument("--attr-items", type=int, default=12)
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--attr-batch", type=int, default=1,
                   help="Items per IG batch and per Ray task (2 items x 16 steps at 224 px "
                        "is about 3 GB per worker).")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--chunk-size", type=int, default=8)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--skip", nargs="*", default=[], choices=["encode", "attribution"])
    p.add_argument("--out", type=Path, default=Path("/tmp/befa-scale"))
    args = p.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    import ray

    report: dict[str, Any] = {"uptime": os.popen("uptime").read().strip(),
                              "cpus": os.cpu_count()}
    t = time.perf_counter()
    ray.init(num_cpus=max(args.workers), _node_ip_address="127.0.0.1", include_dashboard=False,
             object_store_memory=256 * 1024**2, configure_logging=False, log_to_driver=False)
    report["ray_init_seconds"] = time.perf_counter() - t
    if "encode" not in args.skip:
        report["encode"] = bench_encode(args, args.out)
    if "attribution" not in args.skip:
        report["attribution"] = bench_attribution(args, args.out)
    report["uptime_end"] = os.popen("uptime").read().strip()
    (args.out / "scale.json").write_text(json.dumps(report, indent=1))
    print(f"\n{report['uptime']}\n{report['uptime_end']}")
    print(f"ray.init (local, {max(args.workers)} CPUs): {report['ray_init_seconds']:.1f} s, "
          "once per process, not in the table")
    diffs = {f"{j} x{w}": report[j][f"ray{w}"]["max_abs_diff"] for j in ("encode", "attribution")
             if j in report for w in args.workers}
    print(f"max |Ray - single process|: {diffs}")
    print(table(report, args.workers))


if __name__ == "__main__":
    main()
