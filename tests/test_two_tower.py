"""Two-tower model (torch, hand-computed losses) and its Ray Train stage on the tiny run:
sharded Ray Data input, DDP, checkpoints and resume, best-epoch publishing, the FAISS index."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import copy_run

from stylehub_ray.models import two_tower as M


def tiny_spec(**kw) -> M.TwoTowerSpec:
    base = dict(customer_numeric=3, customer_categories=(4, 3), article_numeric=2,
                article_categories=(5,), article_extra=6, customer_ids=11, article_ids=9)
    base.update(kw)
    return M.TwoTowerSpec(**base)


def side(n: int, num: int, cards: tuple[int, ...], extra: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"num": torch.randn(n, num, generator=g),
            "cat": torch.stack([torch.randint(0, c, (n,), generator=g) for c in cards], 1)
            if cards else torch.zeros(n, 0, dtype=torch.int64),
            "ids": torch.randint(0, 9, (n,), generator=g),
            "extra": torch.randn(n, extra, generator=g)}


# ------------------------------------------------------------------------------------------
# The model, torch only
# ------------------------------------------------------------------------------------------
def test_towers_shapes_unit_vectors_and_paper_layers():
    torch.manual_seed(0)
    spec = tiny_spec()
    model = M.TwoStageRecommender(spec)
    c, a = side(7, 3, (4, 3), 0, 1), side(7, 2, (5,), 6, 2)
    u, v, logits = model(c, a)
    assert u.shape == (7, 32) and v.shape == (7, 32) and logits.shape == (7,)
    assert torch.allclose(u.norm(dim=1), torch.ones(7), atol=1e-5)
    assert torch.allclose(v.norm(dim=1), torch.ones(7), atol=1e-5)
    # The paper's layers: towers (128, 64) -> 32; ranking branches (64, 32); head (32, 16) -> 1.
    linear = [m.out_features for m in model.customer_tower.modules()
              if isinstance(m, torch.nn.Linear)]
    assert linear == [128, 64, 32]
    assert [m.out_features for m in model.ranking.customer_branch
            if isinstance(m, torch.nn.Linear)] == [64, 32]
    assert [m.out_features for m in model.ranking.rating.modules()
            if isinstance(m, torch.nn.Linear)] == [32, 16, 1]
    # The input encoder: 3 numbers + 2 x 8 category dims + 32 id dims (+ 6 extra for articles).
    assert model.customer_encoder.out_dim == 3 + 16 + 32
    assert model.article_encoder.out_dim == 2 + 8 + 32 + 6
    # Serving pieces give the training forward's numbers.
    model.eval()
    assert torch.allclose(model.customer_vectors(c), u, atol=1e-6)
    cb, ab = model.customer_branch(c), model.article_branch(a)
    p = model.head_probability(cb, ab[:, None, :])[:, 0]
    assert torch.allclose(p, torch.sigmoid(logits), atol=1e-6)
    # Spec round trip.
    assert M.TwoTowerSpec.from_dict(spec.to_dict()) == spec


def test_retrieval_loss_matches_hand_computation():
    u = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    v = torch.tensor([[0.8, 0.6], [0.0, 1.0], [1.0, 0.0]])
    t = 0.5
    s = (u @ v.T).numpy() / t  # logits
    expected = np.mean([-(s[i, i] - math.log(np.exp(s[i]).sum())) for i in range(3)])
    assert M.retrieval_loss(u, v, t).item() == pytest.approx(expected, rel=1e-6)

    # The same article twice (rows 0 and 2): each is no negative for the other.
    arts = torch.tensor([5, 7, 5])
    masked = s.copy()
    masked[0, 2] = masked[2, 0] = -np.inf
    exp_masked = np.mean([-(masked[i, i] - math.log(np.exp(masked[i]).sum())) for i in range(3)])
    assert M.retrieval_loss(u, v, t, article_ids=arts).item() == pytest.approx(exp_masked,
                                                                               rel=1e-6)
    # The same customer bought rows 0 and 1: masked likewise.
    cust = torch.tensor([1, 1, 2])
    mc = s.copy()
    mc[0, 1] = mc[1, 0] = -np.inf
    exp_c = np.mean([-(mc[i, i] - math.log(np.exp(mc[i]).sum())) for i in range(3)])
    assert M.retrieval_loss(u, v, t, customer_ids=cust).item() == pytest.approx(exp_c, rel=1e-6)

    # log-q: subtract log of each column's in-batch share (article 5: 2/3, article 7: 1/3),
    # before masking the duplicate.
    arts_q = torch.tensor([5, 7, 5])
    q = np.array([2 / 3, 1 / 3, 2 / 3])
    lq = s - np.log(q)[None, :]
    lq[0, 2] = lq[2, 0] = -np.inf
    exp_q = np.mean([-(lq[i, i] - math.log(np.exp(lq[i]).sum())) for i in range(3)])
    got = M.retrieval_loss(u, v, t, article_ids=arts_q, logq=True).item()
    assert got == pytest.approx(exp_q, rel=1e-6)
    assert got != pytest.approx(exp_masked, rel=1e-3)  # the correction changes the loss
    with pytest.raises(ValueError, match="article_ids"):
        M.retrieval_loss(u, v, t, logq=True)


def test_ranking_and_total_loss():
    logits = torch.tensor([2.0, -1.0, 0.0])
    labels = torch.tensor([1, 0, 1])
    p = 1 / (1 + np.exp(-logits.numpy()))
    bce = -np.mean([math.log(p[0]), math.log(1 - p[1]), math.log(p[2])])
    assert M.ranking_loss(logits, labels).item() == pytest.approx(bce, rel=1e-6)
    r, k = torch.tensor(1.5), torch.tensor(0.25)
    assert M.total_loss(r, k, 2.0).item() == pytest.approx(2.0)


def test_joint_training_separates_planted_pairs():
    """A few hundred Adam steps on planted (customer -> article group) pairs: the retrieval
    loss falls and the towers rank each customer's group first."""
    torch.manual_seed(0)
    n_c, n_a = 40, 20
    spec = tiny_spec(customer_numeric=1, customer_categories=(), article_numeric=1,
                     article_categories=(), article_extra=0, customer_ids=n_c + 1,
                     article_ids=n_a + 1)
    model = M.TwoStageRecommender(spec)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    group = torch.arange(n_c) % 4  # customer c buys articles a with a % 4 == group(c)

    def inputs(ids, n):
        return {"num": torch.zeros(len(ids), 1), "cat": torch.zeros(len(ids), 0,
                                                                     dtype=torch.int64),
                "ids": ids + 1, "extra": torch.zeros(len(ids), 0)}
    first = last = None
    for step in range(300):
        c = torch.randint(0, n_c, (32,))
        a = group[c] + 4 * torch.randint(0, n_a // 4, (32,))
        u, v, logits = model(inputs(c, n_c), inputs(a, n_a))
        loss = M.retrieval_loss(u, v, 0.2, a, c)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = loss.item() if step == 0 else first
        last = loss.item()
    assert last < 0.7 * first
    model.eval()
    scores = model.customer_vectors(inputs(torch.arange(n_c), n_c)) @ model.article_vectors(
        inputs(torch.arange(n_a), n_a)).T
    top = scores.topk(5, dim=1).indices
    assert ((top % 4) == group[:, None]).float().mean() > 0.9


# ------------------------------------------------------------------------------------------
# The Ray Train stage on the tiny run
# ------------------------------------------------------------------------------------------
FAST = dict(epochs=2, batch_size=512, val_customers=300, n_candidates=50)


@pytest.fixture(scope="module")
def tt_run(hm_embedded, tmp_path_factory):
    """The shared run with features and image embeddings (conftest), copied: trained here."""
    return copy_run(hm_embedded, tmp_path_factory.mktemp("tt") / "run")


def test_config_validation_and_missing_inputs(tt_run, tmp_path):
    from stylehub_ray.config import load_config, stage_config
    from stylehub_ray.run import Run
    from stylehub_ray.train.two_tower import TrainTwoTowerConfig, train_two_tower

    cls = stage_config("train_two_tower")
    assert cls is TrainTwoTowerConfig
    cfg = load_config(cls, sets=["temperature=0.1", "ranking_weight=0.5", "workers=2"])
    assert (cfg.temperature, cfg.ranking_weight, cfg.workers) == (0.1, 0.5, 2)
    with pytest.raises(ValueError, match="temperature"):
        load_config(cls, sets=["temperature=0"])
    with pytest.raises(ValueError, match="index"):
        load_config(cls, sets=["index=annoy"])
    bare = Run(str(tmp_path / "bare"))
    with pytest.raises(FileNotFoundError, match="features/training_examples"):
        train_two_tower(bare, TrainTwoTowerConfig())
    with pytest.raises(FileNotFoundError, match="embeddings/text"):
        train_two_tower(tt_run, TrainTwoTowerConfig(text=True))


def test_train_resume_publish_and_index(tt_run):
    from stylehub_ray.embed.index import read_index
    from stylehub_ray.models.artifacts import load_model
    from stylehub_ray.models.recommender import TwoTowerRecommender
    from stylehub_ray.train.two_tower import (
        REPORTED_METRICS,
        TrainTwoTowerConfig,
        build_trainer,
        train_two_tower,
    )

    run = tt_run
    cfg = TrainTwoTowerConfig(**FAST)
    # Crash after epoch 0; the stage then resumes from that checkpoint.
    trainer, name = build_trainer(run, cfg, fail_after_epoch=0)
    assert trainer is not None and name.startswith("default-")
    with pytest.raises(Exception, match="injected failure"):
        trainer.fit()
    entry = train_two_tower(run, cfg)
    assert entry["counts"]["epochs"] == {"trained": 2, "best": entry["counts"]["epochs"]["best"],
                                         "resumed_at": 1}
    assert not run.exists(f"_ray_train/two-tower/{name}")  # complete: nothing left to resume
    model, _spec, meta = load_model(run, "two-tower", "default")
    assert not model.training
    assert [h["epoch"] for h in meta["history"]] == [0, 1]
    for h in meta["history"]:
        assert set(REPORTED_METRICS) <= set(h)
        assert h["samples"] > 0 and h["loss"] > 0
    best = meta["best"]
    # Learns: the ranking model separates val purchases from uniform negatives, and the
    # chain finds some of the val week's purchases.
    assert best["auc"] > 0.6
    assert 0.0 <= best["val_map12"] <= 1.0  # a number (not nan): val customers were found
    assert entry["counts"]["customers"]["val_sampled"] > 0
    assert meta["best_epoch"] == max(range(2), key=lambda e: meta["history"][e]["val_map12"])
    trained = meta["trained_customers"]
    assert trained.dtype == bool and 0 < trained.sum() <= len(trained) == 1000
    assert entry["counts"]["customers"]["trained"] == int(trained.sum())

    # index/two-tower: the article-tower vectors of the test feature set, ids.parquet layout.
    assert run.is_complete("index/two-tower")
    info = run.read_json("index/two-tower/index.json")
    assert info["feature_set"] == "test" and info["items"] == 600 and info["dim"] == 32
    index, rows = read_index(run, "index/two-tower")
    assert index.ntotal == 600 and np.array_equal(rows, np.arange(600))
    rec = TwoTowerRecommender.load(run, "default", "test")
    assert rec.index is not None and rec.article_vectors.shape == (600, 32)
    np.testing.assert_allclose(index.reconstruct_n(0, 600), rec.article_vectors, atol=1e-5)

    again = train_two_tower(run, cfg)
    assert again.get("skipped")


def test_two_workers_ddp(tt_run):
    """Two workers (0.5 CPU each) on Ray Data shards: same reported metrics on both, a
    published model, and each worker saw half of the examples."""
    from stylehub_ray.models.artifacts import load_model
    from stylehub_ray.train.two_tower import TrainTwoTowerConfig, train_two_tower

    cfg = TrainTwoTowerConfig(variant="ddp", workers=2, cpus_per_worker=0.5, epochs=1,
                              batch_size=256, val_customers=200, n_candidates=30)
    entry = train_two_tower(tt_run, cfg)
    model, _spec, meta = load_model(tt_run, "two-tower", "ddp")
    h = meta["history"][0]
    ex = tt_run.entry("features")["counts"]["training_examples"]
    total = ex["positives"] + ex["negatives"]
    # drop_last per worker: each of 2 workers drops fewer than one batch.
    assert total - 2 * 256 < h["samples"] <= total
    assert h["auc"] > 0.5 and entry["counts"]["epochs"]["trained"] == 1
    assert tt_run.is_complete("index/two-tower-ddp")
