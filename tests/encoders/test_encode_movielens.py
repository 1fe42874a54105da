"""Real weights on real data: MobileNetV2 posters and MiniLM overviews of 16 MovieLens items."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from befa_viz.cache import Cache
from befa_viz.data.types import Catalog
from befa_viz.encoders import create_encoder
from befa_viz.encoders.store import encode_catalog, load_features


def _movielens_catalog(root, n: int = 16) -> Catalog:
    items = pd.read_csv(root / "items.csv").drop_duplicates("movie_id").head(n)
    paths = [str(root / "posters" / f"{m}.jpg") for m in items["movie_id"]]
    return Catalog([str(m) for m in items["movie_id"]], items["title"].tolist(),
                   items["overview"].fillna("").astype(str).tolist(), paths)


@pytest.mark.weights
@pytest.mark.realdata
def test_encode_real_posters_and_overviews(tmp_path, movielens_dir):
    cat = _movielens_catalog(movielens_dir, 16)
    cache = Cache(tmp_path)
    img = encode_catalog(cat, create_encoder("torchvision:mobilenet_v2"),
                         dataset_fingerprint=cat.fingerprint(), cache=cache, missing="zeros",
                         batch_size=8)
    assert img.values.shape == (16, 1280) and img.dim == 1280
    present = [i for i in range(16) if cat.image_path(i).is_file()]
    assert len(present) >= 14  # README: 1,663 of 1,682 items have a poster
    assert [m["row"] for m in img.manifest["missing_items"]] == sorted(set(range(16)) -
                                                                      set(present))
    v = img.values[present]
    assert (v >= 0).all() and np.linalg.matrix_rank(v) == len(present)  # distinct posters
    txt = encode_catalog(cat, create_encoder("hf:minilm"), dataset_fingerprint=cat.fingerprint(),
                         cache=cache, missing="zeros")
    assert txt.values.shape == (16, 384)
    has_text = [i for i, t in enumerate(cat.texts) if t.strip()]
    np.testing.assert_allclose(np.linalg.norm(txt.values[has_text], axis=1), 1.0, atol=1e-5)
    again = load_features(txt.path, dataset_fingerprint=cat.fingerprint())
    np.testing.assert_array_equal(again.values, txt.values)
    # Toy Story's overview is closer to itself than to GoldenEye's, and similar-ish to others
    sims = txt.values[has_text] @ txt.values[has_text].T
    assert np.all(np.diag(sims) > sims.max(axis=1) - 1e-6)
