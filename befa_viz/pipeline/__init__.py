"""The verbs every frontend (CLI, explorer, notebooks) calls.

Each verb takes plain arguments plus a :class:`~befa_viz.workspace.Workspace`, does one job,
and returns a result object or paths. Frontends never reach below this package and ``viz``.

One module per stage, each importing only the engines (data, encoders, models, train,
attribution, metrics, viz, ...) and the stages before it:

* :mod:`~befa_viz.pipeline.data`: import, validate, stats, export, synthesise, garment masks;
* :mod:`~befa_viz.pipeline.encode`: encode a dataset to the feature store;
* :mod:`~befa_viz.pipeline.train`: train, evaluate, compare, sweep, track runs;
* :mod:`~befa_viz.pipeline.memos`: the in-process memos of the attribution verbs;
* :mod:`~befa_viz.pipeline.runs`: the run pair and encoder that explain an item;
* :mod:`~befa_viz.pipeline.maps`: the maps of one explain call (job, inputs, cache keys);
* :mod:`~befa_viz.pipeline.scores`: scores computed from a map (faithfulness, drift/omission);
* :mod:`~befa_viz.pipeline.explain`: explain items without and with the adapter;
* :mod:`~befa_viz.pipeline.report`: write figures and files, the heatmap report;
* :mod:`~befa_viz.pipeline.features`: attribution over precomputed feature dimensions.

The planted-truth benchmark (:mod:`befa_viz.benchmark`) is a verb built on these stages;
the demo (:mod:`befa_viz.demo`) and the explorer's helpers (:mod:`befa_viz.explore`) are
frontends over them. See ARCHITECTURE.md.
"""

from __future__ import annotations

from befa_viz.pipeline.data import (
    IMPORTED_FEATURES_DIR,
    MasksResult,
    dataset_features,
    dataset_features_dir,
    dataset_stats,
    export_mmrec,
    import_dataset,
    latest_features,
    make_masks,
    synth_dataset,
    validate_dataset,
)
from befa_viz.pipeline.encode import (
    DEFAULT_IMAGE_ENCODER,
    DEFAULT_TEXT_ENCODER,
    EncodeResult,
    encode_dataset,
)
from befa_viz.pipeline.explain import (
    ItemExplanation,
    benchmark_verdicts,
    default_recipe,
    explain_item,
    explain_items,
    workspace_defaults_path,
)
from befa_viz.pipeline.features import (
    FeatureExplanation,
    explain_features,
)
from befa_viz.pipeline.maps import (
    DEFAULT_BASELINES,
    DEFAULT_TARGET,
    VARIANTS,
)
from befa_viz.pipeline.memos import (
    ENCODER_MEMO_SIZE,
    RUN_MEMO_SIZE,
    clear_memos,
)
from befa_viz.pipeline.report import (
    MODEL_FREE_TARGETS,
    ContentHeatmaps,
    HeatmapReport,
    content_heatmaps,
    has_explainable_run,
    heatmap_report,
    write_item_report,
    write_item_reports,
)
from befa_viz.pipeline.runs import (
    encoder_for_run,
    find_paired_run,
    resolve_attribution_run,
)
from befa_viz.pipeline.scores import (
    SCORING_VERSION,
)
from befa_viz.pipeline.train import (
    compare_adapter,
    evaluate_run,
    load_run,
    resolve_run,
    run_sweep,
    track_runs,
    train_model,
)
from befa_viz.workspace import Workspace

__all__ = [
    "ContentHeatmaps",
    "DEFAULT_BASELINES",
    "DEFAULT_IMAGE_ENCODER",
    "DEFAULT_TARGET",
    "DEFAULT_TEXT_ENCODER",
    "ENCODER_MEMO_SIZE",
    "EncodeResult",
    "FeatureExplanation",
    "HeatmapReport",
    "IMPORTED_FEATURES_DIR",
    "ItemExplanation",
    "MODEL_FREE_TARGETS",
    "MasksResult",
    "RUN_MEMO_SIZE",
    "SCORING_VERSION",
    "VARIANTS",
    "Workspace",
    "benchmark_verdicts",
    "clear_memos",
    "compare_adapter",
    "content_heatmaps",
    "dataset_features",
    "dataset_features_dir",
    "dataset_stats",
    "default_recipe",
    "encode_dataset",
    "encoder_for_run",
    "evaluate_run",
    "explain_features",
    "explain_item",
    "explain_items",
    "export_mmrec",
    "find_paired_run",
    "has_explainable_run",
    "heatmap_report",
    "import_dataset",
    "latest_features",
    "load_run",
    "make_masks",
    "resolve_attribution_run",
    "resolve_run",
    "run_sweep",
    "synth_dataset",
    "track_runs",
    "train_model",
    "validate_dataset",
    "workspace_defaults_path",
    "write_item_report",
    "write_item_reports",
]
