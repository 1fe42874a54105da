"""Attribution: targets (what is explained), methods (how), and the Attribution result."""

from __future__ import annotations

from befa_viz.attribution import ig as _ig  # noqa: F401  (registers the IG variants)
from befa_viz.attribution.defaults import MethodDefault, default_method
from befa_viz.attribution.explain import explain, explain_pair, prepare_inputs
from befa_viz.attribution.methods import (
    ATTRIBUTIONS,
    attribute,
    make_baseline,
    merge_tokens,
    method_modalities,
    method_options,
)
from befa_viz.attribution.result import Attribution
from befa_viz.attribution.sanity import SanityReport, randomised_copy, sanity_check
from befa_viz.attribution.targets import (
    TARGETS,
    AttributionTarget,
    BehaviourAlignmentTarget,
    ContentFocusTarget,
    ContentScoreTarget,
    RandomDirectionTarget,
    UserScoreTarget,
    create_target,
)

__all__ = [
    "ATTRIBUTIONS",
    "TARGETS",
    "Attribution",
    "AttributionTarget",
    "BehaviourAlignmentTarget",
    "ContentFocusTarget",
    "ContentScoreTarget",
    "MethodDefault",
    "RandomDirectionTarget",
    "SanityReport",
    "UserScoreTarget",
    "attribute",
    "create_target",
    "default_method",
    "explain",
    "explain_pair",
    "make_baseline",
    "merge_tokens",
    "method_modalities",
    "method_options",
    "prepare_inputs",
    "randomised_copy",
    "sanity_check",
]
