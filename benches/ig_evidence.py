"""Which IG variant (if any) passes its controls? Rank method × target × baseline.

Runs ``run_benchmark`` on a workspace's synthetic shop (``befa-viz demo`` builds one), or with
``--dataset hm`` on the H&M sample and its garment masks (``befa-viz demo --dataset hm``), for
the given methods and one baseline, ranks the behaviour-driven rows by their worst margin over
the two controls (:func:`befa_viz.evidence.rank_methods`; bar: both margins > 0 with sign-test
p < 0.01 over ≥ 24 items) and prints the table; ``--record`` writes the winner into the
workspace's ``defaults/attribution.json``. Maps go through the workspace's attribution cache,
so re-running with more methods only computes the new ones. Outputs stay outside the repo.

    nice -n 10 .venv/bin/python benches/ig_evidence.py --workspace /tmp/ws \\
        --methods layer_ig ig_similarity gradcam similarity --baseline blur \\
        --items 24 --out /tmp/ig-evidence-blur [--record]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", required=True)
    ap.add_argument("--dataset", default="shop")
    ap.add_argument("--methods", nargs="+", default=["layer_ig", "ig_similarity", "gradcam",
                                                     "similarity"])
    ap.add_argument("--targets", nargs="+",
                    default=["behaviour_alignment", "content_score", "random"])
    ap.add_argument("--expensive-targets", nargs="+", default=None,
                    help="Targets of the non-cheap methods (default: --targets).")
    ap.add_argument("--baseline", default="blur")
    ap.add_argument("--items", type=int, default=24)
    ap.add_argument("--expensive-items", type=int, default=None,
                    help="Items of the non-cheap methods (default: --items).")
    ap.add_argument("--n-steps", type=int, default=16)
    ap.add_argument("--options", default="{}", help="JSON: extra options per method.")
    ap.add_argument("--alpha", type=float, default=0.01)
    ap.add_argument("--out", required=True, help="Report folder (outside the repo).")
    ap.add_argument("--record", action="store_true",
                    help="Write the winner to <workspace>/defaults/attribution.json.")
    ap.add_argument("--combine", nargs="+", default=None, metavar="OUT_DIR",
                    help="Rank the ranked.csv of earlier runs together (no new maps); with "
                         "--record, write the overall winner.")
    ap.add_argument("--encoder", default="torchvision:mobilenet_v2:IMAGENET1K_V1",
                    help="Encoder key of the --combine entry.")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    if a.combine:
        return _combine(a)

    from befa_viz.benchmark import run_benchmark
    from befa_viz.evidence import record_defaults

    t0 = time.perf_counter()
    res = run_benchmark(
        a.workspace, dataset=a.dataset, methods=a.methods, targets=a.targets,
        expensive_targets=a.expensive_targets, text_methods=(), n_items=a.items,
        n_items_expensive=a.expensive_items or a.items, n_steps=a.n_steps,
        baseline=a.baseline, method_options=json.loads(a.options), out_dir=a.out,
        n_examples=0, threads=1, progress=False)
    secs = time.perf_counter() - t0
    from befa_viz.workspace import Workspace

    ws = Workspace(a.workspace)
    enc = res.params.get("image_encoder", "")
    command = "python benches/ig_evidence.py " + " ".join(shlex.quote(x) for x in sys.argv[1:])
    choice, ranked = record_defaults(res, str(enc or "*"), workspace=ws if a.record else None,
                                     alpha=a.alpha, command=command)
    cols = [c for c in ("variant", "method", "target", "baseline", "n_items", "ratio",
                        "margin_random_target", "p_random_target", "margin_input", "p_input",
                        "worst_margin", "clears_bar", "seconds_per_map") if c in ranked.columns]
    print(ranked[cols].to_string(float_format=lambda v: f"{v:.3g}"))
    print(f"default → {choice.method} / {choice.target} / baseline {choice.baseline} "
          f"(clears the bar: {choice.passes})")
    print(f"maps computed {res.params.get('maps_computed')}, cached "
          f"{res.params.get('maps_cached')}; {secs:.0f} s")
    ranked.to_csv(os.path.join(a.out, "ranked.csv"), index=False)
    return 0


def _combine(a: argparse.Namespace) -> int:
    import pandas as pd

    from befa_viz.attribution.defaults import workspace_defaults_path, write_defaults
    from befa_viz.evidence import choose_default, merge_rankings

    ranked = merge_rankings([pd.read_csv(os.path.join(d, "ranked.csv")) for d in a.combine])
    command = "python benches/ig_evidence.py " + " ".join(shlex.quote(x) for x in sys.argv[1:])
    choice = choose_default(ranked, {"dataset": a.dataset, "alpha": a.alpha, "min_items": 24,
                                     "command": command, "runs_from": a.combine})
    cols = [c for c in ("variant", "method", "target", "baseline", "n_items", "ratio",
                        "margin_random_target", "p_random_target", "margin_input", "p_input",
                        "clears_bar") if c in ranked.columns]
    print(ranked[cols].to_string(float_format=lambda v: f"{v:.3g}"))
    print(f"default → {choice.method} / {choice.target} / baseline {choice.baseline} "
          f"(clears the bar: {choice.passes}); IG one flag away: {list(choice.alternatives)}")
    if a.record:
        from befa_viz.workspace import Workspace

        print(write_defaults(workspace_defaults_path(Workspace(a.workspace)),
                             {a.encoder: choice}))
    ranked.to_csv(os.path.join(a.out, "ranked-combined.csv"), index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
