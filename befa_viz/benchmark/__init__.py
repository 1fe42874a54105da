"""Validate attribution methods against ground-truth masks (``befa-viz benchmark``).

A heatmap method earns trust only by finding a truth known independently of it. Two kinds of
dataset have one (:mod:`befa_viz.data.truth`):

* the **synthetic shop** (:mod:`befa_viz.data.synth`): users choose by the product's kind,
  colour and pattern only, and the generator records which pixels are the product (and which
  are props, a decoy, a sticker, a price tag, a watermark) and which words name an attribute;
* **real packshots with garment masks** (``befa-viz data masks``, e.g. the H&M sample): the
  garment's pixels from the light background (:mod:`befa_viz.data.garment`), with a usable
  flag per item — items whose mask is unusable are skipped and counted — and weak word labels
  (words of the item's colour / type / pattern attributes). Here nothing guarantees that users
  chose by the garment alone, so the garment mask is the place where the *content* is, not a
  planted cause of the behaviour.

This package
attributes each *target* with each *method* on a sample of items and scores the maps against
that truth **next to controls**, because raw mass-in-mask is not evidence by itself
(DESIGN.md, "What a first experiment showed"):

* **random-target control** — the same method on ⟨E(x), r⟩ for a random unit direction r per
  item. A method whose behaviour-driven map localises no better than this shows the input and
  the baseline, not the target;
* **input control** — the model-free map |x − blur(x)| (``input_x_blur``; text: each token
  embedding's distance to the pad embedding);
* **random map** — smooth random blobs (uniform noise on a 7×7 grid, upsampled bilinearly):
  what chance gives.

Scores per map (images; maps are compared at the attribution's size, masks resized nearest; a
padded input's maps, masks and controls are cropped to its ``content_box`` first, so the pad
never counts):

* ``mass_in_mask`` — share of the *evidence* (|values|; for ``similarity`` max(cos, 0), since
  a location unlike the reference is no evidence for it) inside the product mask; ``chance``
  is the mask's area share and ``ratio`` = mass / chance;
* ``pointing`` — the evidence maximum lies on the product (pointing game);
* ``drift`` / ``omission`` — :mod:`befa_viz.metrics.attribution` against the product mask
  with the top-``q`` mass region;
* ``decoy_mass`` — evidence on the decoy (a blob in the product's own colour and pattern,
  only on items that have one), ``decoy_chance`` its area share;
* ``margin_random_target`` / ``margin_input`` / ``margin_random_map`` — mass_in_mask minus the
  control's mass_in_mask on the same item; ``win_*`` the share of items where the map beats
  the control, ``p_*`` a two-sided exact sign test over items;
* ``rho_random_target`` / ``rho_input`` — Spearman correlation with the control maps.

A method ``passes`` for a target when it beats both the random-target and the input control
on average with a sign-test p below 0.05. Text: ``precision`` = precision@k of the words with
the largest |attribution| against the planted relevance labels (k = the number of relevant
words of the item; ``chance`` = their share), with the same controls.

Targets (see :mod:`befa_viz.attribution.targets`): ``content_focus`` and ``random`` are
model-free (variant ``model-free``); ``behaviour_alignment`` and ``content_score`` are computed
for both runs of the pair (variant ``without`` / ``with``; with the adapter, ``content_score``
is the adapted pathway, ``adapted_alignment``). Maps go through the workspace's attribution
cache, under the same keys the pipeline uses, so a second run costs only the scoring.

Modules: :mod:`~befa_viz.benchmark.scoring` (the scores and controls, pure numpy),
:mod:`~befa_viz.benchmark.result` (:class:`BenchmarkResult`), :mod:`~befa_viz.benchmark.run`
(sampling, maps, :func:`run_benchmark`) and :mod:`~befa_viz.benchmark.report` (tables, figures,
HTML). The benchmark is a verb built on :mod:`befa_viz.pipeline`; the pipeline never imports it.
"""

from __future__ import annotations

from befa_viz.benchmark.result import BenchmarkResult
from befa_viz.benchmark.run import benchmark_options, run_benchmark, sample_items
from befa_viz.benchmark.scoring import (
    CHEAP_METHODS,
    DEFAULT_METHODS,
    DEFAULT_TARGETS,
    aggregate,
    evidence_map,
    random_map,
    score_image_maps,
    score_text_maps,
    sign_test,
    token_precision,
)

__all__ = [
    "BenchmarkResult",
    "CHEAP_METHODS",
    "DEFAULT_METHODS",
    "DEFAULT_TARGETS",
    "aggregate",
    "benchmark_options",
    "evidence_map",
    "random_map",
    "run_benchmark",
    "sample_items",
    "score_image_maps",
    "score_text_maps",
    "sign_test",
    "token_precision",
]
