"""Token highlighting: one span per token, monotone intensities, shared scales, wrapping."""

from __future__ import annotations

import re

import numpy as np
import pytest

from befa_viz.attribution.result import Attribution
from befa_viz.errors import DataError
from befa_viz.testing import synthetic_attribution as synth
from befa_viz.viz import figure_scales, token_figure, token_html, token_pair_figure, token_pair_html


def _text(values, tokens=None, item="i0") -> Attribution:
    values = np.asarray(values, dtype=float)
    tokens = tokens or [f"w{i}" for i in range(len(values))]
    return Attribution(item, "text", "ig", "user_score", values, tokens=tokens)


def _intensities(html: str) -> list[float]:
    return [float(x) for x in re.findall(r'data-intensity="([0-9.]+)"', html)]


def _alphas(html: str) -> list[float]:
    return [float(x) for x in re.findall(r"rgba\(\d+, \d+, \d+, ([0-9.]+)\)", html)]


def test_one_span_per_token_with_monotone_intensity():
    scores = np.array([0.3, -2.0, 0.0, 1.0, -0.5, 4.0])
    html = token_html(_text(scores))
    assert html.count('class="befa-token"') == len(scores)
    inten = np.array(_intensities(html))
    order = np.argsort(np.abs(scores))
    assert np.all(np.diff(inten[order]) >= 0)
    assert np.all(np.diff(np.array(_alphas(html))[order]) >= 0)
    assert inten[np.argmax(np.abs(scores))] == pytest.approx(1.0)  # percentile 100 = max
    assert inten[2] == 0.0
    np.testing.assert_allclose(inten, np.abs(scores) / 4.0, atol=1e-4)


def test_tokens_are_escaped_and_signs_coloured():
    html = token_html(_text([1.0, -1.0], ["<b>", "a&b"]), signed=True)
    assert "&lt;b&gt;" in html and "a&amp;b" in html and "<b>" not in html.split("Highlight")[0]
    assert "rgba(214, 38, 41" in html and "rgba(33, 102, 191" in html  # red +, blue −


def test_shared_pair_scale_gives_equal_scores_equal_intensity():
    a = _text([1.0, 2.0, 1.0])
    b = _text([1.0, 8.0, 1.0])
    shared = _intensities(token_pair_html(a, b, normalise="none"))
    assert len(shared) == 6
    assert shared[0] == shared[3] == pytest.approx(1 / 8, abs=1e-4)
    own = _intensities(token_pair_html(a, b, normalise="none", shared_scale=False))
    assert own[1] == own[4] == 1.0 and own[0] == pytest.approx(0.5, abs=1e-4)


def test_token_pair_figure_scales():
    a, b = synth(0, "without", "text"), synth(0, "with", "text")
    shared = figure_scales(token_pair_figure(a, b))
    assert shared[0].vmax == shared[1].vmax and shared[0].shared
    own = figure_scales(token_pair_figure(a, b, shared_scale=False))
    assert own[0].vmax != pytest.approx(own[1].vmax)
    bars = [ax for ax in token_pair_figure(a, b).axes if hasattr(ax, "_colorbar")]
    assert len(bars) == 1 and bars[0]._colorbar.norm.vmax == pytest.approx(shared[0].vmax)


def test_token_figure_wraps_long_text():
    tokens = [f"token{i}" for i in range(60)]
    att = _text(np.linspace(0, 1, 60), tokens)
    narrow, wide = token_figure(att, width=4), token_figure(att, width=12)
    assert narrow.get_figheight() > wide.get_figheight()
    ys = {round(t.get_position()[1], 4) for t in narrow.texts if t.get_text() in tokens}
    assert len(ys) > 3
    drawn = [t.get_text() for t in narrow.texts if t.get_text() in tokens]
    assert drawn == tokens  # every token drawn once, in order


def test_text_input_errors():
    with pytest.raises(DataError, match="3 scores but 2 tokens"):
        token_html(Attribution("i0", "text", "ig", "t", np.ones(3), tokens=["a", "b"]))
    with pytest.raises(DataError, match="modality 'image'"):
        token_html(synth(0))
    with pytest.raises(DataError, match="'i0' and 'i1'"):
        token_pair_figure(_text([1.0]), _text([1.0], item="i1"))
