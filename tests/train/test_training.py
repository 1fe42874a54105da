from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from befa_viz.data.types import Interactions, RecDataset
from befa_viz.errors import ConfigError, DataError, StaleArtifactError, UnknownNameError
from befa_viz.metrics import MostPopular, rank_metrics
from befa_viz.testing import toy_dataset
from befa_viz.train import (
    NegativeSampler,
    Run,
    TrainConfig,
    evaluate,
    evaluate_per_user,
    load_feature_file,
    load_train_config,
    train,
)
from tests.train.conftest import TOY_MM, planted, write_features

FAST = {"epochs": 6, "lr": 0.05, "batch_size": 64, "dim": 16, "patience": 50}


def cfg(**kw) -> TrainConfig:
    return TrainConfig(**{**FAST, **kw})


# ---- sampling -------------------------------------------------------------------------------
def test_negative_sampling_never_returns_a_training_item():
    rng = np.random.default_rng(1)
    n_users, n_items = 50, 30
    dense = rng.random((n_users, n_items)) < 0.6  # dense users: many collisions to redraw
    dense[:, 0] = False  # every user keeps at least one negative
    u, i = np.nonzero(dense)
    s = NegativeSampler(u, i, n_users, n_items)
    users = rng.integers(0, n_users, size=20000)
    neg = s.sample(users, rng)
    assert not dense[users, neg].any()
    assert (neg >= 0).all() and (neg < n_items).all()
    # uniform over the allowed items: user 0 sees each of its negatives about equally often
    free = np.flatnonzero(~dense[0])
    counts = np.bincount(s.sample(np.zeros(6000, np.int64), rng), minlength=n_items)[free]
    assert counts.min() > 0.6 * counts.mean()


def test_sampler_rejects_user_with_every_item():
    with pytest.raises(DataError, match="all 3 items"):
        NegativeSampler(np.array([0, 0, 0]), np.array([0, 1, 2]), 1, 3)


# ---- evaluation -----------------------------------------------------------------------------
class _Fixed:
    def __init__(self, scores):
        self.scores = torch.as_tensor(scores, dtype=torch.float32)

    def score_users(self, idx):
        return self.scores[idx]


def test_evaluation_masks_training_items():
    ds = toy_dataset()
    inter = ds.interactions
    train_m = inter.train().csr().toarray() > 0
    test_m = inter.test().csr().toarray() > 0
    # training items get the highest scores, the test item the next highest
    scores = train_m * 10.0 + test_m * 5.0 + np.random.default_rng(0).random(train_m.shape)
    m = evaluate(_Fixed(scores), ds, "test", ks=(1,))
    assert m["Recall@1"] == 1.0 and m["NDCG@1"] == 1.0


def test_batched_evaluation_equals_dense_reference():
    ds, _ = planted()
    inter = ds.interactions
    scores = np.random.default_rng(3).normal(size=(ds.n_users, ds.n_items))
    ref = rank_metrics(scores, inter.test().csr().toarray() > 0,
                       inter.train().csr().toarray() > 0, ks=(5, 10, 20, 50))
    for bs in (1, 7, 1000):
        got = evaluate(_Fixed(scores), inter, "test", batch_size=bs)
        assert got == pytest.approx(ref)
    users, per_user = evaluate_per_user(_Fixed(scores), inter, "valid", ks=(5,))
    assert len(users) == ds.n_users and per_user["Recall@5"].shape == (ds.n_users,)


def test_only_users_with_items_in_split_are_evaluated():
    inter = Interactions([0, 0, 1, 1, 2], [0, 1, 0, 2, 1], [0, 2, 0, 0, 0], n_users=3, n_items=3)
    users, _ = evaluate_per_user(_Fixed(np.zeros((3, 3))), inter, "test")
    assert users.tolist() == [0]
    with pytest.raises(DataError, match="valid split is empty"):
        evaluate(_Fixed(np.zeros((3, 3))), inter, "valid")


# ---- training -------------------------------------------------------------------------------
def test_planted_preference_beats_most_popular(tmp_path):
    ds, _ = planted()
    run = train(ds, cfg(model="bprmf", epochs=40, lr=0.02, dim=16, batch_size=64,
                        model_params={"reg_weight": 1e-4}), runs_dir=tmp_path)
    pop = evaluate(MostPopular(ds.interactions.train().csr()), ds, "test")
    assert run.test_metrics["Recall@10"] > pop["Recall@10"] + 0.2, (run.test_metrics, pop)
    assert run.status == "complete" and (run.path / "model.safetensors").is_file()


def test_representation_spread_is_exact_and_flags_collapse(tmp_path):
    from befa_viz.train import build_model, fit, representation_summary
    from befa_viz.train.trainer import _spread

    x = torch.randn(60, 8, generator=torch.Generator().manual_seed(0))
    xn = torch.nn.functional.normalize(x, dim=1)
    cos = xn @ xn.T
    brute = (cos.sum() - cos.diagonal().sum()) / (60 * 59)
    out = _spread(x)
    assert out["mean_cosine"] == pytest.approx(float(brute), abs=1e-5)
    assert 5 < out["effective_rank"] <= 8 and out["dim"] == 8
    direction = torch.randn(8)
    collapsed = direction * (1 + torch.rand(60, 1)) + 1e-4 * torch.randn(60, 8)
    out = _spread(collapsed)
    assert out["mean_cosine"] > 0.999 and out["effective_rank"] < 1.5

    ds, _ = planted()
    run = train(ds, cfg(model="bprmf", epochs=10), runs_dir=tmp_path)
    reps = run.representations
    assert set(reps) == {"users", "items"} and reps["items"]["mean_cosine"] < 0.9
    assert reps == json.loads((run.path / "metrics.json").read_text())["representations"]
    assert all(0 < h["item_effective_rank"] <= 16 and -1 <= h["item_mean_cosine"] <= 1
               for h in run.history)  # tracked at every evaluation

    model = build_model(cfg(model="bprmf"), ds, {})
    calls = []
    forward = model.compute_embeddings
    model.compute_embeddings = lambda: calls.append(1) or forward()  # type: ignore[method-assign]
    model.eval()
    evaluate(model, ds.interactions, "valid")
    representation_summary(model)
    assert len(calls) == 1  # the spread reuses the evaluation's cached embeddings
    del model.compute_embeddings
    with torch.no_grad():  # every item on one ray: a collapsed model
        model.item_emb.weight.copy_(direction[:1].repeat(16) * (1 + torch.rand(ds.n_items, 1)))
    with pytest.warns(UserWarning, match="have collapsed"):
        result = fit(model, ds, cfg(model="bprmf", epochs=0))
    assert result.representations == representation_summary(model)


def test_multimodal_with_adapter_learns_and_reports_gate(tmp_path, planted_data, toy_models):
    ds, feat_dir = planted_data
    run = train(ds, cfg(model=TOY_MM, adapter="befa", epochs=30, lr=0.02,
                        features={"image": str(feat_dir)}), runs_dir=tmp_path / "runs")
    pop = evaluate(MostPopular(ds.interactions.train().csr()), ds, "test")
    assert run.test_metrics["Recall@10"] > pop["Recall@10"]
    gate = json.loads((run.path / "metrics.json").read_text())["gate"]["image"]
    assert 0 < gate["q00"] <= gate["q50"] <= gate["q100"] < 1 and gate["std"] > 0
    info = json.loads((run.path / "run.json").read_text())
    assert info["features"]["image"]["encoder"] == "tiny:cnn"
    assert info["dataset_fingerprint"] == ds.fingerprint() and info["status"] == "complete"
    assert run.name.startswith("planted-toymm-befa-s999-")
    # the adapter is absent when switched off
    plain = train(ds, cfg(model=TOY_MM, epochs=2, features={"image": str(feat_dir)}),
                  runs_dir=tmp_path / "runs")
    assert plain.gate == {} and not plain.model.adapters


@pytest.mark.filterwarnings("ignore:The BeFA gate")
def test_same_seed_same_metrics_other_seed_differs(tmp_path, planted_data, toy_models):
    ds, feat_dir = planted_data
    c = cfg(model=TOY_MM, adapter="befa", adapter_dropout=0.3, features={"image": str(feat_dir)})
    a = train(ds, c, runs_dir=tmp_path / "a")
    b = train(ds, c, runs_dir=tmp_path / "b")
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    assert [h["valid"] for h in a.history] == [h["valid"] for h in b.history]
    assert a.test_metrics == b.test_metrics and a.name == b.name
    other = train(ds, c.replace(seed=1), runs_dir=tmp_path / "a")
    assert [h["loss"] for h in other.history] != [h["loss"] for h in a.history]


def test_resume_gives_the_same_result_as_uninterrupted(tmp_path, planted_data, toy_models):
    ds, feat_dir = planted_data
    c = cfg(model=TOY_MM, adapter="befa", adapter_dropout=0.3, epochs=6, eval_every=2,
            features={"image": str(feat_dir)})
    full = train(ds, c, runs_dir=tmp_path / "full")

    def stop_at_3(state, model, improved):
        if state.epoch == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(ds, c, runs_dir=tmp_path / "cut", on_epoch_end=stop_at_3)
    cut_dir = tmp_path / "cut" / full.name
    info = json.loads((cut_dir / "run.json").read_text())
    assert info["status"] == "interrupted"
    from safetensors import safe_open

    with safe_open(str(cut_dir / "last.safetensors"), "pt") as f:  # last good checkpoint intact
        assert json.loads(f.metadata()["befa_viz"])["epoch"] == 3
    with pytest.raises(ConfigError, match="already exists"):
        train(ds, c, runs_dir=tmp_path / "cut")
    resumed = train(ds, c, runs_dir=tmp_path / "cut", resume=True)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    assert resumed.test_metrics == full.test_metrics
    assert resumed.valid_metrics == full.valid_metrics
    # a complete run is returned as is
    again = train(ds, c, runs_dir=tmp_path / "cut", resume=True)
    assert again.test_metrics == full.test_metrics


def test_resume_with_other_config_or_data_is_refused(tmp_path, planted_data, toy_models):
    ds, feat_dir = planted_data
    c = cfg(model=TOY_MM, epochs=2, features={"image": str(feat_dir)})
    train(ds, c, runs_dir=tmp_path, name="r")
    with pytest.raises(ConfigError, match="lr: 0.05 → 0.01"):
        train(ds, c.replace(lr=0.01), runs_dir=tmp_path, name="r", resume=True)
    other, _ = planted(seed=5)
    other = RecDataset(ds.name, other.catalog, other.interactions)
    with pytest.raises(StaleArtifactError, match="fingerprint"):
        train(other, c, runs_dir=tmp_path, name="r", resume=True)
    # more epochs is a legitimate resume
    longer = train(ds, c.replace(epochs=3), runs_dir=tmp_path, name="r", resume=True)
    assert longer.metrics["epochs_run"] == 3


def test_run_load_round_trip_and_stale_features(tmp_path, planted_data, toy_models):
    ds, feat_dir = planted_data
    run = train(ds, cfg(model=TOY_MM, adapter="befa", epochs=2,
                        features={"image": str(feat_dir)}), runs_dir=tmp_path / "runs")
    loaded = Run.load(run.path, load_model=True)
    users = torch.arange(5)
    with torch.no_grad():
        assert torch.allclose(loaded.model.score_users(users), run.model.score_users(users))
    assert loaded.config == run.config and loaded.dataset.fingerprint() == ds.fingerprint()
    assert loaded.features["image"].values.shape == (ds.n_items, 16)
    np.save(feat_dir / "image_feat.npy", np.zeros((ds.n_items, 16), np.float32))
    with pytest.raises(StaleArtifactError, match="changed since training"):
        Run.load(run.path, load_model=True)


# ---- errors before training -----------------------------------------------------------------
def test_clear_errors_before_training(tmp_path, planted_data, toy_models):
    ds, feat_dir = planted_data
    feats = {"image": str(feat_dir)}
    bad = write_features(tmp_path / "bad", np.ones((ds.n_items - 1, 4)))
    with pytest.raises(DataError, match=f"{ds.n_items - 1} rows but the dataset has {ds.n_items}"):
        train(ds, cfg(model=TOY_MM, features={"image": str(bad)}), runs_dir=tmp_path)
    with pytest.raises(ConfigError, match="needs the 'image' modality"):
        train(ds, cfg(model="toyimage", features={"text": str(feat_dir)}), runs_dir=tmp_path)
    with pytest.raises(ConfigError, match="needs content features"):
        train(ds, cfg(model=TOY_MM), runs_dir=tmp_path)
    with pytest.raises(ConfigError, match="modalities.*text"):
        train(ds, cfg(model=TOY_MM, features=feats, modalities=("text",)), runs_dir=tmp_path)
    with pytest.raises(ConfigError, match="behaviour-only"):
        train(ds, cfg(model="bprmf", adapter="befa"), runs_dir=tmp_path)
    with pytest.raises(ConfigError, match="Unknown model_params key 'reg_wieght'.*reg_weight"):
        train(ds, cfg(model="bprmf", model_params={"reg_wieght": 1.0}), runs_dir=tmp_path)
    with pytest.raises(UnknownNameError, match="bprmf"):
        train(ds, cfg(model="bprm"), runs_dir=tmp_path)
    no_valid = ds.interactions.subset(ds.interactions.split != 1)
    with pytest.raises(DataError, match="empty validation split"):
        train(RecDataset("nv", ds.catalog, no_valid), cfg(model="bprmf"), runs_dir=tmp_path)
    nan = np.ones((ds.n_items, 4))
    nan[3, 1] = np.nan
    with pytest.raises(DataError, match="row 3"):
        load_feature_file(write_features(tmp_path / "nan", nan), "image")
    assert not list(tmp_path.glob("planted-*"))  # nothing was written for the failed runs


# ---- configuration --------------------------------------------------------------------------
def test_config_precedence_and_strictness(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model: bprmf\nlr: 0.005\nmodel_params: {reg_weight: 0.1}\nepochs: 7\n")
    c = load_train_config(f, ["lr=1e-4", "model_params.extra=2", "seed=3"])
    assert (c.lr, c.epochs, c.seed) == (1e-4, 7, 3)
    assert c.model_params == {"reg_weight": 0.1, "extra": 2}  # mappings merge key by key
    assert load_train_config(None, model="bprmf").batch_size == 2048
    f.write_text("modle: bprmf\n")
    with pytest.raises(ConfigError, match=r"c.yaml: unknown key 'modle'. Did you mean 'model'"):
        load_train_config(f)
    f.write_text("sweep: {lr: [1, 2]}\n")
    with pytest.raises(ConfigError, match="befa-viz sweep"):
        load_train_config(f)
    with pytest.raises(ConfigError, match="metric"):
        TrainConfig(metric="Recall@7")
    with pytest.raises(ConfigError, match="adapter"):
        load_train_config(None, ["adapter=yes"])


def test_most_popular_on_sparse_and_toy(toy):
    mp = MostPopular(sp.csr_matrix(toy.interactions.train().csr()))
    m = evaluate(mp, toy, "valid", ks=(5, 10))
    assert set(m) == {f"{n}@{k}" for n in ("Recall", "NDCG", "Precision", "MAP") for k in (5, 10)}


def _registered_models() -> list[str]:
    from befa_viz.models import MODELS

    return MODELS.names()


@pytest.mark.parametrize("name", _registered_models())
def test_every_backbone_resumes_exactly_and_reloads(tmp_path, name):
    """Interrupt after epoch 1, resume: same result as 3 uninterrupted epochs; Run.load works."""
    from befa_viz.models import MODELS

    ds = toy_dataset()
    multimodal = MODELS.get(name).multimodal
    feats = {}
    if multimodal:
        rng = np.random.default_rng(0)
        feats = {m: str(write_features(tmp_path / m, rng.normal(size=(12, 6)), m))
                 for m in ("image", "text")}
    c = cfg(model=name, epochs=3, dim=8, batch_size=16, adapter="befa" if multimodal else "none",
            features=feats)
    full = train(ds, c, runs_dir=tmp_path / "full")

    def stop(state, model, improved):
        if state.epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(ds, c, runs_dir=tmp_path / "cut", on_epoch_end=stop)
    resumed = train(ds, c, runs_dir=tmp_path / "cut", resume=True)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    assert resumed.test_metrics == full.test_metrics
    loaded = Run.load(resumed.path)
    with torch.no_grad():
        a = loaded.model.score_users(torch.arange(8))
        b = full.model.eval().score_users(torch.arange(8))
    assert torch.allclose(a, b, atol=1e-5)


# ---- speed settings: fused Adam, freed memory kept for reuse --------------------------------
def test_fit_uses_fused_adam_on_cpu():
    from befa_viz.train import build_model, fit

    ds, _ = planted()
    c = cfg(model="bprmf", epochs=1)
    result = fit(build_model(c, ds, {}), ds, c)
    assert result.state.optimizer is not None
    assert all(g["fused"] for g in result.state.optimizer["param_groups"])


def _retain_in_subprocess(env_value: str | None) -> str:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "BEFA_VIZ_RETAIN_FREED_MEMORY"}
    if env_value is not None:
        env["BEFA_VIZ_RETAIN_FREED_MEMORY"] = env_value
    code = ("from befa_viz.train.memory import retain_freed_memory as r; "
            "print(r(), r())")  # the second call returns the first's answer
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    return out.stdout.strip()


def test_retain_freed_memory_applies_once_on_glibc_and_can_be_turned_off():
    import platform

    glibc = platform.libc_ver()[0] == "glibc"
    assert _retain_in_subprocess(None) == ("True True" if glibc else "False False")
    assert _retain_in_subprocess("0") == "False False"
