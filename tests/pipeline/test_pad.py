"""Portrait photos through the pipeline: padded encoding, boxed scores and figures, old stores."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from befa_viz import pipeline
from befa_viz.pipeline import scores
from befa_viz.testing import toy_dataset
from befa_viz.workspace import Workspace

pytestmark = pytest.mark.filterwarnings("ignore:ig. completeness error:UserWarning",
                                        "ignore:The item representations:UserWarning")


def _portrait_workspace(path, resize: str) -> Workspace:
    """The toy dataset with every image stretched to a 32x48 portrait, encoded and trained."""
    ws = Workspace(path)
    ds = toy_dataset(folder=path / "images")
    for p in ds.catalog.image_paths:
        with Image.open(p) as im:
            im.convert("RGB").resize((32, 48), Image.Resampling.NEAREST).save(p)
    ds.save(ws.dataset_dir("toy"))
    pipeline.encode_dataset(ws, "toy", image_encoder="tiny:cnn", text_encoder=None,
                            resize=resize)
    for adapter in ("none", "befa"):
        pipeline.train_model(ws, model="vbpr", adapter=adapter, dataset="toy", epochs=1,
                             seed=999)
    return ws


def test_padded_item_is_scored_and_drawn_on_the_photo(tmp_path):
    ws = _portrait_workspace(tmp_path / "ws", "pad")
    e = pipeline.explain_item("i3", workspace=ws, method="gradcam", cache=tmp_path / "c")
    for v in e.variants:
        a = e.attributions[v]
        assert a.values.shape == (32, 32)
        assert a.params["content_box"] == [0, 5, 32, 21] and a.params["source_size"] == [48, 32]
        s = e.scores[v]
        assert 0 <= s["drift"] <= 1 and 0 <= s["omission"] <= 1
    again = pipeline.explain_item("i3", workspace=ws, method="gradcam", cache=tmp_path / "c")
    assert again.cached == {"without": True, "with": True} and again.scores == e.scores
    paths = pipeline.write_item_report(e, tmp_path / "out", formats=("png",))
    assert paths["heatmap.png"].is_file()
    from befa_viz.viz import overlay

    assert overlay(e.attributions["with"]).shape == (32, 21, 3)  # 2:3, the photo's aspect
    # the pad's attribution does not move the scores: zero it and score again
    a = e.attributions["with"]
    zeroed = a.values.copy()
    zeroed[:, :5] = 0
    zeroed[:, 26:] = 0
    rel = np.asarray(e.relevance["map"])
    same = scores._scores(type(a)(**{**a.__dict__, "values": zeroed}), rel, False, 0.5)
    assert same["drift"] == pytest.approx(e.scores["with"]["drift"])
    assert same["omission"] == pytest.approx(e.scores["with"]["omission"])


def test_runs_on_squash_features_are_attributed_with_squash(tmp_path):
    ws = _portrait_workspace(tmp_path / "ws", "squash")
    run = pipeline.load_run(ws, ws.run_dirs()[0])
    pipeline.clear_memos()
    enc = pipeline.encoder_for_run(run, "image")
    assert enc.resize_mode == "squash"  # rebuilt as recorded, not with today's default
    assert enc.fingerprint() == run.features["image"].encoder_fingerprint
    e = pipeline.explain_item("i3", workspace=ws, method="gradcam", cache=tmp_path / "c")
    assert e.attributions["with"].params["content_box"] == [0, 0, 32, 32]
