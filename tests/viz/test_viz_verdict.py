"""Every map carries its verdict: unscored maps, completeness warnings, absolute-scale pairs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from befa_viz.attribution.result import Attribution
from befa_viz.pipeline import benchmark_verdicts  # reads the workspace; viz gets the rows
from befa_viz.testing import synthetic_attribution as synth
from befa_viz.viz import figure_scales, magnitude_map, pair_figure
from befa_viz.viz._scale import image_rgb
from befa_viz.viz.heatmap import _base_rgb
from befa_viz.viz.verdict import (
    Verdict,
    map_verdict,
    pair_ratio,
    unscored_reason,
)


def _with(att: Attribution, **kw) -> Attribution:
    return dataclasses.replace(att, **kw)


def test_all_zero_constant_and_still_targets_get_a_reason_not_scores():
    a = synth(0)
    assert unscored_reason(a) is None
    assert unscored_reason(_with(a, values=np.zeros((32, 32)))) == "all-zero map"
    assert unscored_reason(_with(a, values=np.full((32, 32), 0.3))) == "constant map"
    still = _with(a, params={**a.params, "target_value": 0.8, "baseline_value": 0.8 - 1e-6})
    assert "barely moves" in unscored_reason(still)
    v = map_verdict(_with(a, values=np.zeros((32, 32))))
    assert v.unscored == "all-zero map" and "not scored: all-zero map" in v.label()


def test_completeness_error_warns_above_the_threshold():
    a = synth(0)
    p = {**a.params, "target_value": 1.0, "baseline_value": 0.0}
    ok = map_verdict(_with(a, delta=0.05, params=p))
    bad = map_verdict(_with(a, delta=-0.54, params=p))
    assert ok.relative_delta == pytest.approx(0.05) and not ok.delta_warning
    assert bad.delta_warning and "⚠ completeness error 54%" in bad.label()


def test_benchmark_row_decides_then_sanity_then_unknown(tmp_path):
    folder = tmp_path / "reports" / "benchmark-shop-abc"
    folder.mkdir(parents=True)
    pd.DataFrame([{"modality": "image", "variant": "without", "method": "synthetic",
                   "target": "content_score", "n_items": 24, "passes": True,
                   "margin_random_target": 0.16, "p_random_target": 0.004,
                   "margin_input": 0.12, "p_input": 0.001}]).to_csv(folder / "table.csv")
    table = benchmark_verdicts(tmp_path, "shop")
    assert benchmark_verdicts(tmp_path, "other") is None
    a = _with(synth(0, "without"), target="content_score",
              params={**synth(0, "without").params, "adapter": False})
    v = map_verdict(a, benchmark=table, sanity={"passes": False, "rho": {"model": 0.9}})
    assert v.passes is True and v.source.startswith("benchmark shop")
    assert "+0.160 over random target" in v.detail and "24 items" in v.detail
    with_ = _with(a, params={**a.params, "adapter": True})  # no row for the with variant
    s = map_verdict(with_, benchmark=table, sanity={"passes": False, "rho": {"model": 0.9}})
    assert s.passes is False and s.source == "sanity" and "ρ model 0.90" in s.detail
    assert map_verdict(with_).passes is None and map_verdict(with_).status == \
        "controls not checked"


def test_absolute_scale_pair_shows_the_weak_side_blank():
    strong = synth(0, "without")
    weak = _with(synth(0, "with"), values=synth(0, "with").values * 1e-7)
    fig = pair_figure(strong, weak)
    a, b = figure_scales(fig)
    assert a.vmax == b.vmax and a.normalise == "none"
    assert magnitude_map(weak, normalise="none").max() / b.vmax < 1e-5
    panels = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    grey = _base_rgb(image_rgb(weak), "grey")
    np.testing.assert_allclose(np.asarray(panels[2], dtype=float), grey, atol=1e-4)  # blank
    assert not np.allclose(np.asarray(panels[1], dtype=float), grey, atol=1e-2)  # strong: heat
    text = " ".join(t.get_text() for t in fig.texts)
    assert f"Σ|with| / Σ|without| = {pair_ratio(strong, weak):.3g}" in text
    assert pair_ratio(strong, weak) < 1e-6
    assert "controls not checked" in text
    # per-map normalisation is an option, and then both look alike (which is why it is not
    # the default)
    fig_n = pair_figure(strong, weak, normalise="mean")
    assert figure_scales(fig_n)[0].normalise == "mean"


def test_pair_ratio_and_stored_verdicts_on_figures():
    a = synth(0, "without")
    assert pair_ratio(a, _with(a, values=a.values * 3)) == pytest.approx(3.0)
    assert pair_ratio(_with(a, values=np.zeros((32, 32))), a) is None
    stored = _with(a, params={**a.params, "verdict": Verdict(False, "benchmark shop (x)",
                                                              "Δ −0.1").to_dict()})
    text = " ".join(t.get_text() for t in pair_figure(stored, synth(0, "with")).texts)
    assert "FAILS controls" in text and "Δ −0.1" in text
