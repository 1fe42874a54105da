"""Warm item switch: cached scores, memoised encoders and runs, and their invalidation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from befa_viz import pipeline
from befa_viz.encoders.base import Encoder
from befa_viz.errors import StaleArtifactError
from befa_viz.pipeline import memos, scores
from befa_viz.testing import toy_workspace

pytestmark = pytest.mark.filterwarnings("ignore:ig. completeness error:UserWarning")


@pytest.fixture
def encoder_forwards():
    """Count forward passes of any encoder (a global forward pre-hook, removed afterwards)."""
    calls: list[str] = []

    def hook(module, args):
        if isinstance(module, Encoder):
            calls.append(module.key)

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    yield calls
    handle.remove()


@pytest.fixture
def faithfulness_calls(monkeypatch):
    """Variants whose faithfulness curves were computed."""
    calls: list[str] = []
    real = scores._faithfulness

    def counting(job, variant, *args, **kwargs):
        calls.append(variant)
        return real(job, variant, *args, **kwargs)

    monkeypatch.setattr(scores, "_faithfulness", counting)  # where _variant_scores looks it up
    return calls


def _explain(ws, cache, **kw):
    return pipeline.explain_item("i5", workspace=ws, n_steps=4, cache=cache, **kw)


def test_warm_request_runs_no_encoder_forward(toy_ws, tmp_path, encoder_forwards):
    cache = tmp_path / "c"
    cold = _explain(toy_ws, cache)
    assert encoder_forwards  # maps and faithfulness curves ran the encoder
    assert cold.scores_cached == {"without": False, "with": False}
    for fresh_process in (False, True):
        if fresh_process:
            pipeline.clear_memos()  # an explorer that just started: only the disk is warm
        encoder_forwards.clear()
        warm = _explain(toy_ws, cache)
        assert encoder_forwards == []
        assert warm.cached == warm.scores_cached == {"without": True, "with": True}
    run = pipeline.resolve_attribution_run(toy_ws)
    assert pipeline.encoder_for_run(run) is pipeline.encoder_for_run(run)  # memoised
    assert pipeline.encoder_for_run(run, reuse=False) is not pipeline.encoder_for_run(run)


def test_scores_from_the_cache_equal_computed_ones(toy_ws, tmp_path):
    cache = tmp_path / "c"
    first = _explain(toy_ws, cache)
    served = _explain(toy_ws, cache)
    recomputed = _explain(toy_ws, cache, use_cache=False)
    assert served.scores_cached == {"without": True, "with": True}
    assert recomputed.scores_cached == {"without": False, "with": False}
    for v in first.variants:
        assert served.scores[v] == first.scores[v] == recomputed.scores[v]
        assert {"deletion_resolution", "faithfulness_f_x"} <= set(first.scores[v])
    np.testing.assert_array_equal(served.relevance["map"], first.relevance["map"])


def test_changing_q_or_steps_recomputes_scores_not_maps(
        toy_ws, tmp_path, count_method_calls, faithfulness_calls, encoder_forwards):
    cache = tmp_path / "c"
    base = _explain(toy_ws, cache)
    n_maps = len(count_method_calls)
    faithfulness_calls.clear()
    encoder_forwards.clear()
    other_q = _explain(toy_ws, cache, q=0.3)
    assert len(count_method_calls) == n_maps and other_q.cached == {"without": True, "with": True}
    assert other_q.scores_cached == {"without": False, "with": False}
    assert faithfulness_calls == [] and encoder_forwards == []  # q: drift/omission only
    for v in base.variants:
        assert other_q.scores[v]["q"] == 0.3
        assert other_q.scores[v]["deletion_auc"] == base.scores[v]["deletion_auc"]
    assert _explain(toy_ws, cache, q=0.3).scores_cached == {"without": True, "with": True}
    more_steps = _explain(toy_ws, cache, faithfulness_steps=7)
    assert len(count_method_calls) == n_maps and faithfulness_calls == ["without", "with"]
    assert all(more_steps.scores[v]["faithfulness_steps"] == 7 for v in base.variants)
    assert more_steps.scores_cached == {"without": False, "with": False}


def test_weights_change_invalidates_run_memo_and_scores(tmp_path, faithfulness_calls):
    ws = toy_workspace(tmp_path / "ws")
    name = next(p.name for p in ws.run_dirs() if "-none-" in p.name)
    run = pipeline.resolve_attribution_run(ws, name)
    assert pipeline.resolve_attribution_run(ws, name) is run  # memoised
    w_before = run.model.projections["image"].weight.detach().clone()
    pipeline.explain_item("i3", workspace=ws, run=name, n_steps=4)
    faithfulness_calls.clear()

    weights = load_file(run.path / "model.safetensors")
    weights["projections.image.weight"] += 0.5
    save_file(weights, run.path / "model.safetensors")  # same size: mtime tells
    fresh = pipeline.resolve_attribution_run(ws, name)
    assert fresh is not run
    torch.testing.assert_close(fresh.model.projections["image"].weight, w_before + 0.5)

    e = pipeline.explain_item("i3", workspace=ws, run=name, n_steps=4)
    assert e.cached == {"without": False, "with": True}
    # "with" keeps its map and faithfulness, but its drift/omission are measured against
    # the no-adapter run's (changed) behaviour-alignment map, so they are not served
    assert e.scores_cached == {"without": False, "with": False}
    assert faithfulness_calls == ["without"]


def test_encoder_memo_rechecks_the_fingerprint(toy_ws, monkeypatch):
    from befa_viz.encoders.tiny import TinyCNN

    run = pipeline.resolve_attribution_run(toy_ws)
    enc = pipeline.encoder_for_run(run, "image")
    assert pipeline.encoder_for_run(run, "image") is enc
    monkeypatch.setattr(TinyCNN, "fingerprint", lambda self: "0123456789abcdef")
    with pytest.raises(StaleArtifactError, match="other weights"):
        pipeline.encoder_for_run(run, "image")


def test_memo_is_bounded_lru():
    memo = memos._Memo(2)
    memo.put("a", 1)
    memo.put("b", 2)
    assert memo.get("a") == 1  # "b" is now the least recently used
    memo.put("c", 3)
    assert len(memo) == 2 and memo.get("b") is None and memo.get("a") == 1
    memo.clear()
    assert len(memo) == 0
