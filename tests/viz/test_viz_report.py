"""Item reports, atomic saving of figures and arrays, and offline HTML reports."""

from __future__ import annotations

import base64
import io
import json
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from befa_viz.errors import ConfigError
from befa_viz.testing import synthetic_attribution as synth
from befa_viz.viz import (
    Section,
    figure_scales,
    heatmap_figure,
    html_report,
    item_report_figure,
    save_arrays,
    save_figure,
    token_pair_html,
)
from befa_viz.viz import report as report_module


@pytest.fixture(scope="module")
def small_fig() -> Figure:
    return heatmap_figure(synth(0))


def test_item_report_combines_everything_and_records_scales():
    imgs = [(synth(0, "without"), synth(0, "with")), synth(0, "with", grid=8)]
    txt = (synth(0, "without", "text"), synth(0, "with", "text"))
    scores = {"without adapter": {"drift": 0.4, "omission": 0.3},
              "with adapter": {"drift": 0.1, "omission": 0.05}}
    fig = item_report_figure({"id": "i0", "title": "red box", "year": 2024}, imgs, txt, scores,
                             {"model randomisation ρ": 0.2})
    scales = figure_scales(fig)
    assert [s.modality for s in scales] == ["image", "image", "image", "text", "text"]
    assert scales[0].vmax == scales[1].vmax and scales[3].vmax == scales[4].vmax
    text = " ".join(t.get_text() for t in fig.texts)
    for needle in ("Item i0 — red box", "year: 2024", "0.400", "0.050", "model randomisation ρ",
                   "99th percentile", "with adapter"):
        assert needle in text, needle
    per_image = figure_scales(item_report_figure({"id": "i0"}, imgs[0], shared_scale=False))
    assert per_image[0].vmax != pytest.approx(per_image[1].vmax)


def test_item_report_without_attributions_shows_metadata():
    fig = item_report_figure({"id": "i3", "title": "t", "text": "plain words here",
                              "image": np.zeros((10, 8, 3), np.uint8)})
    assert figure_scales(fig) == []
    assert "plain words here" in " ".join(t.get_text() for t in fig.texts)


def test_save_figure_writes_valid_png_and_svg(tmp_path, small_fig):
    paths = save_figure(small_fig, tmp_path / "out" / "item", dpi=50)
    assert [p.name for p in paths] == ["item.png", "item.svg"]
    with Image.open(paths[0]) as im:
        im.verify()
    with Image.open(paths[0]) as im:
        w, h = small_fig.get_size_inches() * 50
        assert im.size == (round(w), round(h))
    root = ET.parse(paths[1]).getroot()
    assert root.tag.endswith("svg")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["item.png", "item.svg"]


def test_save_figure_failure_leaves_nothing(tmp_path, small_fig):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="Cannot write .*file/sub/item.png"):
        save_figure(small_fig, blocker / "sub" / "item")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_save_figure_removes_earlier_formats_when_a_later_one_fails(tmp_path, small_fig,
                                                                   monkeypatch):
    real = report_module.atomic_write_bytes

    def flaky(path, data):
        if path.suffix == ".svg":
            raise PermissionError(13, "Permission denied")
        real(path, data)

    monkeypatch.setattr(report_module, "atomic_write_bytes", flaky)
    with pytest.raises(ConfigError, match="Permission denied"):
        save_figure(small_fig, tmp_path / "item")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", [{"formats": ("png", "jpg")}, {"path": "x.png"}])
def test_save_figure_rejects_bad_arguments(tmp_path, small_fig, bad):
    kw = {"path": tmp_path / "x", **bad}
    if isinstance(kw["path"], str):
        kw["path"] = tmp_path / kw["path"]
    with pytest.raises(ConfigError):
        save_figure(small_fig, **kw)
    assert list(tmp_path.iterdir()) == []


def test_save_arrays_npy_and_npz(tmp_path):
    a, b, t = synth(0, "without", grid=8), synth(0, "with"), synth(0, "with", "text")
    p = save_arrays(a, tmp_path / "single")
    assert p.name == "single.npy"
    np.testing.assert_array_equal(np.load(p), a.values)
    p = save_arrays([a, b, t], tmp_path / "all.npz")
    with np.load(p, allow_pickle=False) as z:
        meta = json.loads(bytes(z["meta_json"]).decode())
        names = list(meta)
        assert len(names) == 3 and names[0] == "i0_image_synthetic_behaviour_alignment"
        np.testing.assert_array_equal(z[names[0]], a.values)  # raw grid, not resized
        tkey = next(n for n in names if meta[n]["modality"] == "text")
        assert list(z[f"{tkey}__tokens"]) == t.tokens
        assert meta[names[0]]["params"]["n_steps"] == 32
    with pytest.raises(ConfigError, match="'.npz'"):
        save_arrays([a, b], tmp_path / "x.npy")
    blocker = tmp_path / "f"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="Cannot write"):
        save_arrays(a, blocker / "a.npy")
    assert sorted(q.name for q in tmp_path.iterdir()) == ["all.npz", "f", "single.npy"]


@pytest.mark.parametrize("name", ["allow_pickle", "file", "meta_json"])
def test_save_arrays_refuses_reserved_names(tmp_path, name):
    # np.savez_compressed would take "allow_pickle" as its flag (silently dropping that map)
    # and "file" as its own path argument (a TypeError)
    with pytest.raises(ConfigError, match="reserved"):
        save_arrays({name: synth(0, "without"), "other": synth(0)}, tmp_path / "a.npz")
    assert list(tmp_path.iterdir()) == []


def test_html_report_is_self_contained(small_fig):
    pair = token_pair_html(synth(0, "without", "text"), synth(0, "with", "text"))
    page = html_report([
        Section("Heatmaps", text="First <para>.\n\nSecond.", figures=[small_fig,
                                                                        np.zeros((4, 4, 3))]),
        {"title": "Scores", "table": [{"variant": "with", "drift": 0.123456}]},
        {"title": "Text", "html": pair},
    ], title="Item i0")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "First &lt;para&gt;." in page and page.count("<p>") == 2
    imgs = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(imgs) == 2
    with Image.open(io.BytesIO(base64.b64decode(imgs[0]))) as im:
        assert im.format == "PNG"
    assert "0.123" in page and page.count('class="befa-token"') == 16
    assert not re.search(r'(src|href)="(https?:)?//', page)


def test_html_report_rejects_unknown_keys():
    with pytest.raises(ConfigError, match="Did you mean 'figures'"):
        html_report([{"title": "x", "figure": None}])


def test_item_report_reads_a_sanity_report_summary():
    summary = {"method": "ig", "target": "t", "median_rho": {"model": 0.8, "input": 0.1},
               "max_rho": {"model": 0.5, "input": 0.5},
               "control_passes": {"model": False, "input": True}, "passes": False}
    fig = item_report_figure({"id": "i0"}, synth(0), sanity=summary)
    text = [t.get_text() for t in fig.texts]
    assert "model control" in text and "input control" in text and "0.800" in text
    assert "no" in text and "yes" in text


def _wide_table(n_rows: int = 3) -> list[dict]:
    """Like the benchmark headline: text keys, then many numeric columns with long names."""
    cols = ["mass_in_mask", "chance", "ratio", "pointing", "margin_random_target",
            "margin_input", "margin_random_map", "p_random_target", "p_input", "precision",
            "drift_without_adapter", "omission_without_adapter", "passes"]
    return [{"modality": "image", "variant": v, "method": "gradcam",
             "target": "behaviour_alignment", **{c: 0.123456 * (k + 1) for c in cols[:-1]},
             "passes": k % 2 == 0} for k, v in enumerate(("without", "with", "model-free")[
                 :n_rows])]


def test_html_tables_stack_when_their_columns_cannot_fit():
    page = html_report([{"title": "Wide", "table": _wide_table()},
                        {"title": "Narrow", "table": {"with": {"drift": 0.2, "omission": 0.1}}}])
    assert page.count('<div class="stack">') == 1 and page.count("<table>") == 1
    wide = page[page.index('<div class="stack">'):]
    # every column is labelled in every block; the text keys name the block
    assert wide.count("<dt>p_<wbr>input</dt>") == 3 and wide.count("<dt>passes</dt>") == 3
    assert "<h3>image · with · gradcam · behaviour_<wbr>alignment</h3>" in wide
    # headers of ordinary tables may break after underscores
    one = html_report([{"title": "t", "table": [{"margin_input": 0.1}]}])
    assert "<th>margin_<wbr>input</th>" in one


def test_html_report_links_paths(tmp_path):
    report_dir = tmp_path / "reports" / "demo"
    other = tmp_path / "reports" / "bench" / "report.html"
    page = html_report([{"title": "Paths", "text": f"Full report: {other}. With / without.",
                         "table": [{"run": "r1", "folder": "/srv/x/runs/r1"}]}],
                       link_base=report_dir)
    assert f'<a href="../bench/report.html">{other}</a>.' in page  # relative, dot kept outside
    # in table cells, paths may break after each "/" instead of widening the column
    assert '<a href="file:///srv/x/runs/r1">/<wbr>srv/<wbr>x/<wbr>runs/<wbr>r1</a>' in page
    assert "With / without." in page  # a lone slash is not a path


@pytest.mark.browser
def test_report_tables_show_every_column_in_a_1280px_chromium(tmp_path):
    """The benchmark-like wide table and a medium one in a real Chromium window 1280 px wide:
    nothing overflows sideways and every column header is on screen."""
    from tests.app.test_explorer_browser import CHROMIUM, CHROMIUM_ARGS, need_chromium

    need_chromium()
    from playwright.sync_api import sync_playwright

    medium = [{"backbone": "freedom", **{f"Recall@{k} {v}": 0.1 for k in (10, 20)
                                         for v in ("without", "with", "Δ")}, "p (sign test)": 0.03}]
    path = tmp_path / "report.html"
    path.write_text(html_report([{"title": "Wide", "table": _wide_table()},
                                 {"title": "Medium", "table": medium}]), encoding="utf-8")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(path.as_uri())
            assert page.evaluate("document.documentElement.scrollWidth") <= 1280
            labels = page.evaluate("""[...document.querySelectorAll('th, dt, dd, td')].map(
                e => { const r = e.getBoundingClientRect();
                       return [e.textContent, r.left, r.right, r.width]; })""")
            assert labels and all(0 <= left and right <= 1280 and w > 0
                                  for _, left, right, w in labels), labels
            shown = {t for t, *_ in labels}
            assert {"p_input", "passes", "p (sign test)", "Recall@20 Δ"} <= shown
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()


def test_item_report_leaves_blank_metadata_out_and_titles_carry_the_verdict():
    from befa_viz.viz import report

    assert report._blank(None) and report._blank("  ") and report._blank(float("nan"))
    assert not report._blank(0) and not report._blank("red") and not report._blank(0.5)
    fig = item_report_figure({"id": "i0", "colour": "", "kind": "coat", "price": float("nan")},
                             (synth(0, "without"), synth(0, "with")))
    texts = [t.get_text() for t in fig.texts] + [a.get_title() for a in fig.axes]
    meta = next(t for t in texts if "kind: coat" in t)  # the metadata line
    assert "colour" not in meta and "price" not in meta
    # no benchmark and no sanity run for these maps: each title says its controls are unchecked
    assert sum("unchecked" in t for t in texts) == 2
