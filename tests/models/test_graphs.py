"""The sparse graph helpers against dense reimplementations of MMRec's formulas."""

from __future__ import annotations

import pytest
import torch

from befa_viz.models._common import (
    bipartite_values,
    cosine_values,
    csr_pair,
    edge_mm,
    graph_mm,
    info_nce,
    knn_graph,
    knn_indices,
    propagate_mean,
    sparse,
    ui_adjacency,
)


def _dense_knn(x: torch.Tensor, k: int, weighted: bool) -> torch.Tensor:
    """MMRec: build_sim → topk → scatter (weights or ones) → D^-½ A D^-½ with row sums."""
    xn = x / x.norm(dim=-1, keepdim=True)
    sim = xn @ xn.T
    val, ind = sim.topk(k, dim=-1)
    adj = torch.zeros_like(sim).scatter_(-1, ind, val if weighted else torch.ones_like(val))
    d = adj.sum(-1).pow(-0.5)
    return d[:, None] * adj * d[None, :]


def test_knn_graph_matches_mmrec_dense():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 6, generator=g).abs()  # positive features: positive similarities
    for weighted in (True, False):
        ours = knn_graph(x, 5, weighted=weighted, chunk=7).to_dense()  # chunk < n on purpose
        assert torch.allclose(ours, _dense_knn(x, 5, weighted), atol=1e-6)


def test_knn_includes_self_and_k_per_row():
    x = torch.randn(10, 3)
    row, col = knn_indices(x, 4)
    assert row.shape == col.shape == (40,)
    assert torch.equal(torch.bincount(row, minlength=10), torch.full((10,), 4))
    assert all(i in col[row == i].tolist() for i in range(10))


def test_ui_adjacency_sym_and_left_loop():
    r = torch.tensor([[1, 0, 1], [0, 1, 0]], dtype=torch.float32)
    users, items = r.nonzero(as_tuple=True)
    a = torch.zeros(5, 5)
    a[:2, 2:], a[2:, :2] = r, r.T
    d = a.sum(1).pow(-0.5)
    assert torch.allclose(ui_adjacency(users, items, 2, 3).to_dense(), d[:, None] * a * d)
    loop = a + torch.eye(5)
    assert torch.allclose(ui_adjacency(users, items, 2, 3, norm="left_loop").to_dense(),
                          loop / loop.sum(1, keepdim=True))
    v = bipartite_values(users, items, 2, 3)
    assert torch.allclose(v, torch.tensor([2 ** -0.5, 2 ** -0.5, 1.0]))


def test_edge_mm_equals_dense_and_is_differentiable():
    row, col = torch.tensor([0, 0, 2, 1]), torch.tensor([1, 2, 0, 1])
    val = torch.tensor([0.5, 1.0, 2.0, 3.0], requires_grad=True)
    x = torch.randn(3, 4)
    dense = torch.zeros(3, 3).index_put((row, col), val, accumulate=True)
    assert torch.allclose(edge_mm(row, col, val, x), dense @ x)
    edge_mm(row, col, val, x).sum().backward()
    assert val.grad is not None and val.grad.abs().sum() > 0
    assert torch.allclose(cosine_values(x, row, col)[3], torch.tensor(1.0))


def test_info_nce_matches_formula():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    an, bn = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    pos = torch.exp((an * bn).sum(-1) / 0.2)
    ttl = torch.exp(an @ bn.T / 0.2).sum(1)
    assert torch.allclose(info_nce(a, b, 0.2), (-torch.log(pos / ttl)).mean(), atol=1e-5)


def test_frozen_knn_memo_keys_on_content():
    from befa_viz.models import _common

    x = torch.randn(20, 5)
    a = _common.frozen_knn_topk(x, 3)
    b = _common.frozen_knn_topk(x.clone(), 3)
    assert all(torch.equal(s, t) for s, t in zip(a, b, strict=True))
    a[2].zero_()  # callers get copies: the memo is not corrupted
    assert torch.equal(_common.frozen_knn_topk(x, 3)[2], b[2])
    y = x.clone()
    y[0] += 10.0  # changed features: a fresh search
    assert torch.equal(_common.frozen_knn_topk(y, 3)[2], _common.knn_topk(y, 3)[2])


def test_graph_mm_gives_torch_sparse_mm_values_and_gradients():
    """The CSR pair with the stored transpose is the same product and the same gradient (bit
    for bit at width 64 on x86 MKL; other widths may round differently in the last place)."""
    g = torch.Generator().manual_seed(0)
    n, m = 60, 45
    row, col = torch.randint(0, n, (300,), generator=g), torch.randint(0, m, (300,), generator=g)
    coo = sparse(torch.stack([row, col]), torch.rand(300, generator=g), (n, m))  # not square
    a, a_t = csr_pair(coo)
    assert a.layout == a_t.layout == torch.sparse_csr
    assert torch.equal(a_t.to_dense(), coo.to_dense().T)
    x = torch.randn(m, 8, generator=g)
    w = torch.randn(n, 8, generator=g)
    x_ref, x_new = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ref, y_new = torch.sparse.mm(coo, x_ref), graph_mm(a, a_t, x_new)
    torch.testing.assert_close(y_new, y_ref, rtol=1e-6, atol=1e-6)
    (y_ref * w).sum().backward()
    (y_new * w).sum().backward()
    assert x_ref.grad is not None and x_new.grad is not None
    torch.testing.assert_close(x_new.grad, x_ref.grad, rtol=1e-6, atol=1e-6)
    with torch.no_grad():  # no autograd node when no gradient is wanted
        assert graph_mm(a, a_t, x_new).grad_fn is None


def test_propagate_mean_over_a_symmetric_csr_pair_matches_coo():
    r = (torch.rand(7, 5, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    r[0, 0] = 1.0
    users, items = r.nonzero(as_tuple=True)
    coo = ui_adjacency(users, items, 7, 5)
    adj, adj_t = csr_pair(coo, symmetric=True)
    assert adj_t is adj and torch.equal(adj.to_dense(), adj.to_dense().T)
    x_ref = torch.randn(12, 4).requires_grad_()
    x_new = x_ref.detach().clone().requires_grad_()
    ref, new = propagate_mean(coo, x_ref, 2), propagate_mean(adj, x_new, 2, adj_t=adj)
    torch.testing.assert_close(new, ref, rtol=1e-6, atol=1e-6)
    ref.pow(2).sum().backward()
    new.pow(2).sum().backward()
    assert x_ref.grad is not None and x_new.grad is not None
    torch.testing.assert_close(x_new.grad, x_ref.grad, rtol=1e-6, atol=1e-6)


def test_graph_mm_refuses_a_graph_with_gradients():
    a = torch.eye(3).to_sparse_csr().requires_grad_()
    with pytest.raises(ValueError, match="edge_mm"):
        graph_mm(a, a, torch.randn(3, 2))


def test_graph_models_deepcopy_and_pickle_with_their_csr_graphs():
    """copy.deepcopy (attribution's randomised-model control) and pickle keep the CSR graphs."""
    import copy
    import pickle

    from befa_viz.models import MODELS
    from befa_viz.testing import toy_dataset

    it = toy_dataset().interactions
    feats = {"image": torch.randn(it.n_items, 6), "text": torch.randn(it.n_items, 4)}
    for name in ("lightgcn", "freedom", "bm3", "mgcn", "lightgcn_knn", "lattice"):
        kw = {"knn_k": 3} if name in ("freedom", "mgcn", "lightgcn_knn", "lattice") else {}
        model = MODELS.create(name, n_users=it.n_users, n_items=it.n_items, features=feats,
                              dim=8, train_graph=it.train().csr(), **kw).eval()
        for dup in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
            assert dup.adj.layout == torch.sparse_csr
            with torch.no_grad():
                torch.testing.assert_close(dup.score_users(torch.tensor([0, 1])),
                                           model.score_users(torch.tensor([0, 1])))
        assert model.adj.layout == torch.sparse_csr  # the original is untouched
