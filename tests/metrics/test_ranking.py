from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from befa_viz.metrics import MostPopular, metric_keys, metrics_from_hits, rank_metrics


def test_ndcg_at_3_with_two_relevant_items_hand_worked():
    # ranking: relevant, miss, relevant; 2 relevant items in total
    out = metrics_from_hits(np.array([[True, False, True]]), np.array([2]), ks=(3,))
    dcg = 1.0 + 1.0 / math.log2(4)
    idcg = 1.0 + 1.0 / math.log2(3)
    assert out["NDCG@3"][0] == pytest.approx(dcg / idcg)  # 0.9197
    assert out["Recall@3"][0] == pytest.approx(1.0)
    assert out["Precision@3"][0] == pytest.approx(2 / 3)
    assert out["MAP@3"][0] == pytest.approx((1 / 1 + 2 / 3) / 2)


def test_metrics_at_small_cutoffs_follow_mmrec_definitions():
    hits = np.array([[False, True, False, False, True],
                     [True, True, True, True, True]])
    n_rel = np.array([4, 2])  # second user: 5 hits > n_rel is impossible, but MMRec allows it
    out = metrics_from_hits(hits[:1], n_rel[:1], ks=(1, 2, 5))
    assert out["Recall@2"][0] == pytest.approx(1 / 4)
    assert out["Precision@2"][0] == pytest.approx(1 / 2)
    # IDCG@2 uses min(n_rel, k) = 2 ideal positions
    assert out["NDCG@2"][0] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    # MAP@5 = (P@2 + P@5) / min(4, 5)
    assert out["MAP@5"][0] == pytest.approx((1 / 2 + 2 / 5) / 4)
    assert out["Recall@1"][0] == 0.0 and out["NDCG@1"][0] == 0.0


def test_rank_metrics_masks_excluded_items_and_matches_hand_ranking():
    scores = np.array([[5.0, 4.0, 3.0, 2.0, 1.0]])
    relevant = np.array([[False, False, True, False, True]])
    exclude = np.array([[True, False, False, False, False]])  # item 0 is a training item
    # ranking without item 0: 1, 2, 3, 4 → hits at ranks 2 and 4
    m = rank_metrics(scores, relevant, exclude, ks=(2, 4))
    assert m["Recall@2"] == pytest.approx(0.5)
    assert m["Recall@4"] == pytest.approx(1.0)
    assert m["NDCG@4"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5))
                                        / (1 + 1 / math.log2(3)))


def test_cutoff_beyond_item_count_counts_as_misses():
    m = rank_metrics(np.array([[0.2, 0.1]]), np.array([[False, True]]), ks=(5,))
    assert m["Recall@5"] == 1.0 and m["Precision@5"] == pytest.approx(1 / 5)


def test_keys_and_bad_input():
    assert metric_keys((5, 10))[:2] == ["Recall@5", "Recall@10"]
    with pytest.raises(ValueError, match="at least one relevant"):
        metrics_from_hits(np.zeros((1, 3), bool), np.array([0]))
    with pytest.raises(ValueError, match="positive"):
        metrics_from_hits(np.zeros((1, 3), bool), np.array([1]), ks=(0,))


def test_most_popular_ranks_by_training_count():
    train = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 1, 0, 1], [0, 1, 0, 0]]))
    mp = MostPopular(train)
    s = mp.score_users(torch.tensor([2, 0]))
    assert s.shape == (2, 4) and s[0].argmax().item() == 1
    assert mp.counts.tolist() == [1.0, 3.0, 0.0, 1.0]
    assert s[1].argsort(descending=True).tolist() == [1, 0, 3, 2]  # ties: lower index first
