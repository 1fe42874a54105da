"""Model-parameter randomisation (Quantus MPRT, cascading top-down) for every method.

For each method, on the items the shop benchmark uses, the behaviour-alignment maps of the
run without the adapter are compared (Spearman ρ of |A|, Quantus' own normalisation) with the
same method's maps after Quantus re-initialises the model's layers top-down — the target's
projection first, then the encoder from its last layer to its first. ``--full-cascade`` lists
ρ after every layer (one explanation per layer and item: only for cheap methods); otherwise
only the fully randomised model is explained (Quantus ``skip_layers``), which is the number
reported per method. A map that still correlates with itself after every weight was redrawn
shows the input, not the model (Adebayo et al. 2018).

    nice -n 10 .venv/bin/python benches/ig_randomisation.py --workspace /tmp/ws \\
        --methods gradcam layer_ig ig_similarity ig --items 6 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

# steps / options per method, as the evidence benchmark ran them
OPTIONS = {
    "ig": {"baseline": "blur", "n_steps": 16},
    "layer_ig": {"baseline": "blur", "n_steps": None},
    "ig_similarity": {"baseline": "blur"},
    "ig_region": {"baseline": "blur", "max_steps": 32},
    "ig_expected": {"max_steps": 32},
    "ig_blur_path": {"n_segments": 2, "n_steps": 8},
    "ig_smooth": {"baseline": "blur", "n_steps": 16, "n_samples": 4},
    "gradcam": {},
    "similarity": {},
    "occlusion": {"baseline": "blur", "window": 56, "stride": 28},
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", required=True)
    ap.add_argument("--dataset", default="shop")
    ap.add_argument("--methods", nargs="+", default=["gradcam", "layer_ig", "ig_similarity"])
    ap.add_argument("--target", default="behaviour_alignment")
    ap.add_argument("--items", type=int, default=6)
    ap.add_argument("--full-cascade", nargs="*", default=[],
                    help="Methods to report layer by layer (cheap ones).")
    ap.add_argument("--baseline", default=None,
                    help="Override the baseline of the methods that take one.")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    if a.baseline:
        for o in OPTIONS.values():
            if "baseline" in o:
                o["baseline"] = a.baseline
    torch.set_num_threads(1)

    import warnings

    from befa_viz import pipeline
    from befa_viz.attribution import attribute, create_target
    from befa_viz.attribution.randomisation import model_randomisation
    from befa_viz.benchmark import sample_items
    from befa_viz.workspace import Workspace

    ws = Workspace(a.workspace)
    run = next(r for r in (pipeline.resolve_attribution_run(ws, d, "image")
                           for d in ws.run_dirs(a.dataset))
               if not getattr(r.model, "adapters", None) and r.info.get("dataset") == a.dataset)
    ds = run.dataset
    _, idx = sample_items(ds, a.items, a.items)
    enc = pipeline.encoder_for_run(run, "image", reuse=False)
    pixels = enc.load_pixels([ds.catalog.image(i) for i in idx])
    target = create_target(a.target, model=run.model, modality="image", item_idx=idx,
                           users=ds.interactions.train())
    out: dict[str, dict] = {}
    for m in a.methods:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            maps = np.stack([r.values for r in attribute(m, enc, target, pixels,
                                                         **OPTIONS.get(m, {}))])
        res = model_randomisation(enc, target, pixels, maps, m, OPTIONS.get(m, {}),
                                  cascade=m in a.full_cascade)
        last = list(res)[-1]
        rho = res[last]
        out[m] = {"rho_full_randomisation": rho.tolist(), "median": float(np.median(rho)),
                  "last_layer": last, "n_layers": len(res) - 1,
                  "seconds": round(time.perf_counter() - t0, 1)}
        if m in a.full_cascade:
            out[m]["cascade_median"] = {k: float(np.median(v)) for k, v in res.items()}
        print(f"{m:14s} MPRT ρ (fully randomised, top-down cascade over {len(res) - 1} "
              f"randomised stages) median {np.median(rho):+.3f}  per item "
              f"{np.round(rho, 2).tolist()}  ({out[m]['seconds']} s)", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"run": run.name, "items": [ds.catalog.item_ids[i] for i in idx],
                       "target": a.target, "methods": out}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
