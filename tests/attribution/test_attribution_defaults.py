"""Evidence decides the default: ranking rows by margin over controls, recording the winner."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from befa_viz.attribution import default_method
from befa_viz.attribution.defaults import read_defaults, workspace_defaults_path, write_defaults
from befa_viz.errors import DataError
from befa_viz.evidence import choose_default, rank_methods


def _row(method, target, m_rt, p_rt, m_in, p_in, variant="without", n=24):
    return {"modality": "image", "variant": variant, "method": method, "target": target,
            "n_items": n, "ratio": 2.0, "margin_random_target": m_rt,
            "p_random_target": p_rt, "margin_input": m_in, "p_input": p_in, "passes": None}


TABLE = pd.DataFrame([
    _row("gradcam", "behaviour_alignment", 0.16, 0.004, 0.12, 0.001),
    _row("layer_ig", "behaviour_alignment", 0.06, 0.006, 0.02, 0.008),
    _row("ig", "content_score", 0.20, 0.2, 0.30, 0.001),  # big margin, p too large
    _row("layer_ig", "content_score", 0.30, 0.001, 0.30, 0.001, n=6),  # too few items
    _row("ig", "random", 0.0, 1.0, 0.1, 0.1, variant="model-free"),
])
OPTIONS = {"gradcam": {}, "layer_ig": {"baseline": "black"}, "ig": {"baseline": "blur"}}


def test_rank_by_worst_margin_and_the_bar():
    r = rank_methods(TABLE, OPTIONS)
    assert list(r["method"][:2]) == ["gradcam", "layer_ig"] and r["clears_bar"][:2].all()
    assert not r["clears_bar"][2:].any()  # p 0.2, and 6 items, both fail the bar
    assert "random" not in set(r["target"])  # only behaviour-driven targets are ranked
    assert r.loc[r["method"] == "layer_ig", "baseline"].iloc[0] == "black"


def test_an_ig_method_that_clears_the_bar_is_the_default_even_if_gradcam_is_better():
    d = choose_default(rank_methods(TABLE, OPTIONS), {"dataset": "shop", "n_steps": 16})
    assert (d.method, d.target, d.baseline, d.passes) == ("layer_ig", "behaviour_alignment",
                                                          "black", True)
    assert d.n_steps is None  # layer_ig chooses its steps by the completeness error
    assert d.evidence["dataset"] == "shop" and d.evidence["p_input"] == pytest.approx(0.008)


def test_without_a_passing_ig_method_the_passing_one_wins_and_ig_stays_one_flag_away():
    t = TABLE[~((TABLE["method"] == "layer_ig") & (TABLE["n_items"] == 24))]
    d = choose_default(rank_methods(t, OPTIONS))
    assert d.method == "gradcam" and d.passes and list(d.alternatives) == ["layer_ig"]
    nothing = t[t["method"] == "ig"]
    d2 = choose_default(rank_methods(nothing, OPTIONS))
    assert d2.method == "ig" and not d2.passes


def test_workspace_file_overrides_the_package_defaults(tmp_path):
    d = choose_default(rank_methods(TABLE, OPTIONS))
    assert default_method("enc:x", workspace=tmp_path).source == "package"
    path = write_defaults(workspace_defaults_path(tmp_path), {"enc:x": d}, benchmark="b1")
    got = default_method("enc:x", workspace=tmp_path)
    assert (got.method, got.source) == ("layer_ig", str(path))
    assert default_method("enc:other", workspace=tmp_path).source == "package"  # no entry
    assert read_defaults(path)["benchmark"] == "b1"
    json.loads(path.read_text())  # strict JSON (no NaN)
    path.write_text("{broken")
    with pytest.raises(DataError, match="re-run"):
        default_method("enc:x", workspace=tmp_path)


def test_package_defaults_cover_every_encoder():
    d = default_method("some:unbenchmarked-encoder")
    assert d.method and d.target and d.evidence


def test_rankings_of_several_baselines_merge_into_one():
    from befa_viz.evidence import merge_rankings

    blur = rank_methods(TABLE, {"layer_ig": {"baseline": "blur"}})
    black = rank_methods(TABLE[TABLE["method"] == "layer_ig"], OPTIONS)
    both = merge_rankings([blur, black])
    lig = both[(both["method"] == "layer_ig") & (both["target"] == "behaviour_alignment")]
    assert sorted(lig["baseline"]) == ["black", "blur"]
    assert len(merge_rankings([blur, blur])) == len(blur)  # duplicates dropped
    assert list(both["clears_bar"]) == sorted(both["clears_bar"], reverse=True)
