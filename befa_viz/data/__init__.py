"""Datasets: core types, importers, preparation (filtering, remapping, seeded splits)."""

from __future__ import annotations

from befa_viz.data.types import Catalog, Interactions, RecDataset

__all__ = ["Catalog", "Interactions", "RecDataset"]

# -- importers, preparation, MMRec format, validation (issue 2, datasets) ----------------------
from befa_viz.data.hm import import_hm  # noqa: E402
from befa_viz.data.mmrec import (  # noqa: E402
    export_mmrec,
    import_mmrec,
    load_feature_arrays,
    save_feature_arrays,
)
from befa_viz.data.movielens import import_movielens  # noqa: E402
from befa_viz.data.prepare import (  # noqa: E402
    PreparedInteractions,
    parse_split,
    prepare_interactions,
)
from befa_viz.data.registry import (  # noqa: E402
    DATASETS,
    ImporterOption,
    check_importer_options,
    importer_option_specs,
    importer_options,
)
from befa_viz.data.tabular import import_table  # noqa: E402
from befa_viz.data.validate import ValidationReport, check_dataset, dataset_summary  # noqa: E402

__all__ += [
    "DATASETS",
    "PreparedInteractions",
    "ValidationReport",
    "check_dataset",
    "dataset_summary",
    "export_mmrec",
    "import_hm",
    "import_mmrec",
    "import_movielens",
    "import_table",
    "importer_options",
    "importer_option_specs",
    "check_importer_options",
    "ImporterOption",
    "load_feature_arrays",
    "parse_split",
    "prepare_interactions",
    "save_feature_arrays",
]

# ---- synthetic planted-truth shop ----
from befa_viz.data.synth import (  # noqa: E402
    ShopConfig,
    generate_shop,
    render_item,
)

__all__ += ["ShopConfig", "generate_shop", "render_item"]

# ---- ground truth: planted (synthetic shop) or garment masks of real packshots ----
from befa_viz.data.garment import GarmentMask, MaskParams, garment_mask  # noqa: E402
from befa_viz.data.truth import (  # noqa: E402
    GroundTruth,
    has_ground_truth,
    load_ground_truth,
    make_garment_truth,
)

__all__ += ["GarmentMask", "GroundTruth", "MaskParams", "garment_mask", "has_ground_truth",
            "load_ground_truth", "make_garment_truth"]
