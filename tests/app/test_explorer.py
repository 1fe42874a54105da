"""The explorer driven through streamlit.testing.v1.AppTest (no browser)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from befa_viz.workspace import WORKSPACE_ENV

APP = Path(__file__).resolve().parents[2] / "apps" / "explorer.py"


def start(ws: Path, monkeypatch: pytest.MonkeyPatch, **query: str) -> AppTest:
    monkeypatch.setenv(WORKSPACE_ENV, str(ws))
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params.update(query)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


def heatmap_captions(at: AppTest) -> list[str]:
    return [c for im in at.image for c in im.captions if "colour scale" in c]


def wait_for(at: AppTest, ready, timeout: float = 90) -> None:
    """Rerun the app (as the fragment's timer would) until ``ready(at)`` holds."""
    end = time.monotonic() + timeout
    while not ready(at):
        assert time.monotonic() < end, "the background job did not finish"
        time.sleep(0.3)
        at.run()
        assert not at.exception, [e.value for e in at.exception]


def worst_buttons(at: AppTest) -> list:
    return [b for b in at.button if b.key and b.key.startswith("worst-")]


def test_item_page_shows_pair_scores_neighbours_and_exports(explorer_ws, monkeypatch):
    at = start(explorer_ws, monkeypatch)
    assert texts(at.header) == ["i0 — red box"]
    assert any("item image" in c for im in at.image for c in im.captions)
    assert heatmap_captions(at) and "shared colour scale" in heatmap_captions(at)[0]
    scores = at.dataframe[0].value
    assert list(scores.index) == ["without adapter", "with adapter"]
    assert {"drift", "omission", "deletion_auc", "insertion_auc"} <= set(scores.columns)
    assert ((scores["drift"] >= 0) & (scores["drift"] <= 1)).all()
    assert [b.label for b in at.download_button] == ["Figure (PNG)", "Arrays (NPZ)",
                                                     "Scores (JSON)"]
    assert any("Adapter gate of this item" in c for c in texts(at.caption))
    # neighbours by raw content, without and with the adapter; clicking one opens it
    nn = [b for b in at.button if b.key and b.key.startswith("nn-with adapter-")]
    assert len(nn) == 5
    target = nn[0].key.removeprefix("nn-with adapter-")
    nn[0].click().run()
    assert texts(at.header)[0].startswith(f"{target} — ")
    assert heatmap_captions(at)


def test_search_by_title_id_and_unknown(explorer_ws, monkeypatch):
    at = start(explorer_ws, monkeypatch)
    at.text_input(key="search").input("green hat").run()
    assert texts(at.header) == ["i11 — green hat"]
    at.text_input(key="search").input("i7").run()
    assert texts(at.header) == ["i7 — blue hat"]
    assert heatmap_captions(at)
    at.text_input(key="search").input("no-such-item").run()
    assert not at.exception
    assert any("'no-such-item'" in w for w in texts(at.warning))


def test_unknown_item_id_in_link_is_a_message(explorer_ws, monkeypatch):
    at = start(explorer_ws, monkeypatch, item="i99")
    assert not at.exception
    assert any("Unknown item id 'i99'" in e for e in texts(at.error))


def test_switch_method_target_and_modality(explorer_ws, monkeypatch):
    at = start(explorer_ws, monkeypatch)
    at.selectbox(key="method").select("gradcam").run()
    assert any("gradcam" in s for s in texts(at.subheader))
    assert heatmap_captions(at)
    at.selectbox(key="target").select("behaviour_alignment").run()
    assert any("behaviour_alignment" in s for s in texts(at.subheader))
    at.radio(key="modality").set_value("text").run()
    assert not at.exception
    # gradcam has no text version: the method falls back to one that supports text
    assert at.selectbox(key="method").value in at.selectbox(key="method").options
    assert "gradcam" not in at.selectbox(key="method").options
    html = " ".join(str(h.proto.body) for h in at.get("html"))
    assert "befa-token" in html and "red" in html


def test_user_view_top_k_and_one_click_explain(explorer_ws, monkeypatch):
    at = start(explorer_ws, monkeypatch)
    at.radio(key="view").set_value("User").run()
    assert texts(at.subheader)[0] == "User u0: 5 interactions"
    assert "**without adapter**" in texts(at.markdown)
    assert "**with adapter**" in texts(at.markdown)
    explain = [b for b in at.button if b.key and b.key.startswith("rec-with-")]
    history = at.dataframe[0].value
    n_train = int((history["split"] == "train").sum())
    assert len(explain) == min(10, 12 - n_train)  # training items are masked
    assert not {b.key.removeprefix("rec-with-") for b in explain} & set(
        history.loc[history["split"] == "train", "item_id"])
    item = explain[0].key.removeprefix("rec-with-")
    explain[0].click().run()
    assert not at.exception
    assert at.radio(key="view").value == "Item"
    assert texts(at.header)[0].startswith(f"{item} — ")
    assert any("user_score for user u0" in s for s in texts(at.subheader))
    assert heatmap_captions(at)


def test_dataset_view_metrics_histograms_and_worst_items(explorer_ws, monkeypatch):
    at = start(explorer_ws, monkeypatch)
    at.selectbox(key="method").select("gradcam").run()
    at.radio(key="view").set_value("Dataset").run()
    metrics = at.dataframe[0].value
    assert metrics["backbone"].tolist() == ["vbpr"]
    assert {"Recall@20 without", "Recall@20 with", "NDCG@20 Δ"} <= set(metrics.columns)
    at.number_input(key="n_items").set_value(4).run()
    at.button(key="compute_scores").click().run()
    assert not at.exception
    wait_for(at, lambda a: bool(worst_buttons(a)))
    assert len(at.image) == 2  # the histograms and the paired scatter
    paired = at.dataframe[1].value
    assert list(paired.index) == ["drift", "omission"] and (paired["n"] == 4).all()
    assert any("Wilcoxon signed-rank" in c for c in texts(at.caption))
    worst = worst_buttons(at)
    assert len(worst) == 4 and "drift with" in worst[0].label
    item = worst[0].key.removeprefix("worst-")
    worst[0].click().run()
    assert at.radio(key="view").value == "Item"
    assert texts(at.header)[0].startswith(f"{item} — ")


def test_empty_workspace_says_make_demo(tmp_path, monkeypatch):
    at = start(tmp_path / "nothing-here", monkeypatch)
    assert any("make demo" in i for i in texts(at.info))
    assert not at.header


def test_run_without_adapter_pair_is_explained_alone(unpaired_ws, monkeypatch):
    at = start(unpaired_ws, monkeypatch)
    assert any("no paired run with adapter 'befa'" in w for w in texts(at.warning))
    assert at.checkbox(key="compare").disabled
    assert list(at.dataframe[0].value.index) == ["without adapter"]
    assert heatmap_captions(at)


def test_dataset_without_images_explains_text(textonly_ws, monkeypatch):
    at = start(textonly_ws, monkeypatch)
    assert any("has no images" in i for i in texts(at.info))
    assert at.radio(key="modality").options == ["text"]
    assert "befa-token" in " ".join(str(h.proto.body) for h in at.get("html"))


def test_switching_dataset_resets_item_and_says_when_there_is_no_run(textonly_ws, monkeypatch):
    at = start(textonly_ws, monkeypatch)
    assert at.selectbox(key="dataset").value == "noimages"
    at.text_input(key="search").input("i5").run()
    assert texts(at.header) == ["i5 — green ball"]
    at.selectbox(key="dataset").select("toy").run()
    assert not at.exception and not at.error
    # the search still says i5: the new dataset's i5, which has an image
    assert texts(at.header) == ["i5 — green ball"]
    assert any("item image" in c for im in at.image for c in im.captions)
    assert any("no complete training run" in i for i in texts(at.info))
    at.text_input(key="search").input("").run()
    at.selectbox(key="dataset").select("noimages").run()
    assert not at.exception and not at.error
    assert texts(at.header) == ["i0 — red box"]  # the remembered item was reset


def test_user_history_and_recommendations_show_thumbnails(explorer_ws, monkeypatch):
    at = start(explorer_ws, monkeypatch)
    at.radio(key="view").set_value("User").run()
    history = at.dataframe[0].value
    assert list(history.columns)[:2] == ["image", "item_id"]
    assert history["image"].str.startswith("data:image/png;base64,").all()
    explain = [b for b in at.button if b.key and b.key.startswith("rec-")]
    # one thumbnail per recommendation (two lists), beside nothing else but the buttons
    assert len(at.image) == len(explain)


def test_user_score_does_not_stick_to_other_items(explorer_ws, monkeypatch):
    at = start(explorer_ws, monkeypatch)
    at.radio(key="view").set_value("User").run()
    explain = [b for b in at.button if b.key and b.key.startswith("rec-with-")]
    item = explain[0].key.removeprefix("rec-with-")
    explain[0].click().run()
    assert at.selectbox(key="target").value == "user_score"
    other = "i2" if item != "i2" else "i7"
    at.text_input(key="search").input(other).run()
    assert not at.exception
    assert texts(at.header)[0].startswith(f"{other} — ")
    assert at.selectbox(key="target").value == "content_score"
    assert not any("for user" in s for s in texts(at.subheader))
    # picked by hand, user_score applies to the item shown
    at.selectbox(key="target").select("user_score").run()
    assert any("user_score for user u0" in s for s in texts(at.subheader))


def test_steps_are_disabled_for_methods_without_steps_and_labels_read(explorer_ws, monkeypatch):
    at = start(explorer_ws, monkeypatch)
    assert not at.number_input(key="n_steps").disabled
    at.selectbox(key="method").select("gradcam").run()
    assert at.number_input(key="n_steps").disabled
    assert any(s.endswith("gradcam") for s in texts(at.subheader))  # no "(16 steps)"
    pair = at.selectbox(key="pair")
    assert pair.format_func(pair.value) == "VBPR ± adapter, seed 999"
    assert any("VBPR, seed 999, content: image + text" in c and "Without adapter: `" in c
               and "With adapter: `" in c for c in texts(at.caption))


def test_difference_panel_toggle(explorer_ws, monkeypatch):
    at = start(explorer_ws, monkeypatch)
    assert at.toggle(key="difference").value
    assert "third panel is with − without" in heatmap_captions(at)[0]
    at.toggle(key="difference").set_value(False).run()
    assert "third panel" not in heatmap_captions(at)[0]


def test_ground_truth_masks_and_attributes_of_the_shop(shop_ws, monkeypatch):
    at = start(shop_ws, monkeypatch)
    attrs = at.table[0].value
    assert {"kind", "colour", "pattern", "training users"} <= set(attrs.index)
    assert not at.toggle(key="show_masks").value
    assert any(c == "item image" for im in at.image for c in im.captions)
    at.toggle(key="show_masks").set_value(True).run()
    assert any("ground-truth masks" in c for im in at.image for c in im.captions)
    legend = " ".join(str(h.proto.body) for h in at.get("html"))
    assert "product" in legend


def test_toy_dataset_has_no_mask_toggle(explorer_ws, monkeypatch):
    at = start(explorer_ws, monkeypatch)
    assert not [t for t in at.toggle if t.key == "show_masks"]


def test_compute_scores_runs_in_the_background_and_cancels(explorer_ws, monkeypatch):
    import befa_viz.explore as explore

    real = explore.score_table

    def slow(**kw):  # the real verb, slowed down per batch so that cancel can land
        def progress(done, total):
            time.sleep(0.4)
            kw_progress(done, total)

        kw_progress = kw.pop("on_progress")
        return real(**kw, on_progress=progress)

    monkeypatch.setattr(explore, "score_table", slow)
    at = start(explorer_ws, monkeypatch)
    at.selectbox(key="method").select("gradcam").run()
    at.radio(key="view").set_value("Dataset").run()
    at.number_input(key="n_items").set_value(12).run()
    at.button(key="compute_scores").click().run()
    assert not at.exception
    assert [b for b in at.button if b.key == "cancel_scores"]
    # the page is not blocked: switching views while the job runs works
    at.radio(key="view").set_value("Item").run()
    assert heatmap_captions(at)
    at.radio(key="view").set_value("Dataset").run()
    at.button(key="cancel_scores").click().run()
    wait_for(at, lambda a: any("Cancelled after" in i for i in texts(a.info)))
    assert not worst_buttons(at)
    assert [b for b in at.button if b.key == "compute_scores"]


def test_item_space_view_draws_both_maps_with_colour_choices(shop_ws, monkeypatch):
    at = start(shop_ws, monkeypatch)
    at.radio(key="view").set_value("Item space").run()
    assert not at.exception and not at.error
    assert texts(at.header) == ["Item space of shop"]
    charts = at.get("vega_lite_chart")
    assert len(charts) == 2
    specs = " ".join(str(c.proto.spec) for c in charts)
    assert "without adapter" in specs and "with adapter" in specs and '"pick"' in specs
    options = at.selectbox(key="colour_by").options
    assert options[0] == "popularity" and {"kind", "colour", "pattern"} <= set(options)
    at.selectbox(key="colour_by").select("kind").run()
    assert "kind" in " ".join(str(c.proto.spec) for c in at.get("vega_lite_chart"))
    # once items are scored in the Dataset view, the map can be coloured by their drift
    at.selectbox(key="method").select("gradcam").run()
    at.radio(key="view").set_value("Dataset").run()
    at.number_input(key="n_items").set_value(4).run()
    at.button(key="compute_scores").click().run()
    wait_for(at, lambda a: bool(worst_buttons(a)))
    at.radio(key="view").set_value("Item space").run()
    assert "drift" in at.selectbox(key="colour_by").options
    at.selectbox(key="colour_by").select("drift").run()
    assert not at.exception
    assert "drift with" in " ".join(str(c.proto.spec) for c in at.get("vega_lite_chart"))


def test_clicking_a_point_in_the_item_space_opens_the_item(shop_ws, monkeypatch):
    """The chart's selection callback (what a click in the browser triggers)."""
    import importlib.util
    import sys
    import types

    from befa_viz.workspace import WORKSPACE_ENV

    monkeypatch.setenv(WORKSPACE_ENV, str(shop_ws))
    spec = importlib.util.spec_from_file_location("explorer_under_test", APP)
    assert spec is not None and spec.loader is not None
    fake_state: dict = {"space-with": {"selection": {"pick": [{"item_id": "i0003"}]}},
                        "view": "Item space"}
    fake_st = types.SimpleNamespace(session_state=fake_state)
    module = types.ModuleType("explorer_under_test")
    source = APP.read_text().replace("\nmain()\n", "\n")  # import without drawing the page
    exec(compile(source, str(APP), "exec"), module.__dict__)
    monkeypatch.setitem(sys.modules, "explorer_under_test", module)
    module.st = fake_st
    module.pick_from_space("space-with")
    assert fake_state["item_id"] == "i0003" and fake_state["view"] == "Item"
    module.pick_from_space("space-without")  # no selection there: nothing happens
    assert fake_state["item_id"] == "i0003"


def test_method_defaults_to_the_evidence_chosen_one(explorer_ws, monkeypatch):
    from befa_viz import pipeline
    from befa_viz.attribution.defaults import MethodDefault, workspace_defaults_path, write_defaults

    at = start(explorer_ws, monkeypatch)
    assert at.selectbox(key="method").value == "ig"  # the package's '*' entry for a toy encoder
    rec = pipeline.default_recipe(explorer_ws, None, "image")
    run = pipeline.resolve_attribution_run(explorer_ws, None, "image")
    key = run.features["image"].encoder_key
    write_defaults(workspace_defaults_path(explorer_ws),
                   {key: MethodDefault(method="gradcam", target=rec.target, baseline=None,
                                       n_steps=None, passes=True)})
    try:
        at = start(explorer_ws, monkeypatch)
        assert at.selectbox(key="method").value == "gradcam"
        assert any("Default for this encoder: **gradcam** — passes its controls" in c
                   for c in texts(at.caption))
    finally:
        workspace_defaults_path(explorer_ws).unlink()
