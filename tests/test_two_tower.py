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

    # log-q: subtract log of each column's article's share of ALL training positives
    # (Yi et al. 2019), not its in-batch count. Three distinct articles with different global
    # shares: an in-batch count would be 1/3 for each, a constant shift that leaves the
    # softmax unchanged; the global correction changes it.
    distinct = torch.tensor([0, 1, 2])
    positives = torch.tensor([60, 30, 10])  # training positives per article
    log_q = M.sampling_log_q(positives)
    assert np.allclose(log_q.numpy(), np.log([0.6, 0.3, 0.1]), atol=1e-6)
    lq = s - np.log([0.6, 0.3, 0.1])[None, :]
    exp_q = np.mean([-(lq[i, i] - math.log(np.exp(lq[i]).sum())) for i in range(3)])
    got = M.retrieval_loss(u, v, t, article_ids=distinct, log_q=log_q[distinct]).item()
    assert got == pytest.approx(exp_q, rel=1e-6)
    assert got != pytest.approx(expected, rel=1e-3)  # the correction changes the loss
    # The in-batch estimate (before issue 15): a constant for distinct articles, so the loss
    # is the uncorrected one; it only corrects articles repeated in the batch.
    in_batch = M.batch_log_q(distinct)
    assert M.retrieval_loss(u, v, t, distinct, log_q=in_batch).item() == pytest.approx(
        expected, rel=1e-6)
    assert np.allclose(M.batch_log_q(torch.tensor([5, 7, 5])).numpy(),
                       np.log([2 / 3, 1 / 3, 2 / 3]), atol=1e-6)
    # An article without positives keeps a finite log q (it never enters the softmax).
    assert torch.isfinite(M.sampling_log_q(torch.tensor([0, 5]))).all()


def test_id_dropout_trains_the_unknown_row():
    """Id dropout sends a share of ids to row 0, so the unknown row gets gradients (before it
    did not: rows without a training positive and id 0 kept their random init)."""
    g = torch.Generator().manual_seed(0)
    ids = torch.arange(1, 10_001)
    dropped = M.drop_ids(ids, 0.1, g)
    share = float((dropped == 0).float().mean())
    assert 0.09 < share < 0.11
    assert torch.equal(dropped[dropped != 0], ids[dropped != 0])
    assert torch.equal(M.drop_ids(ids, 0.0, g), ids)
    torch.manual_seed(0)
    model = M.TwoStageRecommender(tiny_spec())
    c, a = side(64, 3, (4, 3), 0, 1), side(64, 2, (5,), 6, 2)
    c["ids"], a["ids"] = M.drop_ids(c["ids"], 0.5, g), M.drop_ids(a["ids"], 0.5, g)
    u, v, _ = model(c, a)
    M.retrieval_loss(u, v, 0.2).backward()
    assert model.customer_encoder.ids.weight.grad[0].abs().sum() > 0
    assert model.article_encoder.ids.weight.grad[0].abs().sum() > 0


def test_sparse_id_gradients_move_only_the_batch_rows():
    """With sparse id gradients (the default) SparseAdam moves only the id rows a batch used,
    however many steps: dense Adam's momentum kept moving every row it had seen (a step cost
    in proportion to every customer). Every other parameter trains as before, and the pair of
    optimizers saves and resumes as one."""
    from stylehub_ray.train.loop import Optimizers
    from stylehub_ray.train.two_tower import make_optimizer

    def batch(ids: torch.Tensor) -> tuple[dict, dict]:
        c, a = side(len(ids), 3, (4, 3), 0, 1), side(len(ids), 2, (5,), 6, 2)
        c["ids"], a["ids"] = ids, ids
        return c, a

    def train(sparse: bool) -> tuple[M.TwoStageRecommender, object]:
        torch.manual_seed(0)
        model = M.TwoStageRecommender(tiny_spec())
        opt = make_optimizer(M.split_id_parameters(model, sparse), sparse, 1e-2)
        for ids in (torch.tensor([1, 2, 3, 4]), torch.tensor([5, 6, 7, 8])):
            u, v, logits = model(*batch(ids))
            loss = M.retrieval_loss(u, v, 0.2) + M.ranking_loss(logits, torch.ones(4))
            opt.zero_grad()
            loss.backward()
            if sparse:
                assert model.customer_encoder.ids.weight.grad.is_sparse
            opt.step()
        return model, opt

    torch.manual_seed(0)
    init = M.TwoStageRecommender(tiny_spec()).customer_encoder.ids.weight.detach().clone()
    sparse, opt = train(True)
    dense, _ = train(False)
    assert isinstance(opt, Optimizers) and len(opt.optimizers) == 2
    w_sparse = sparse.customer_encoder.ids.weight.detach()
    w_dense = dense.customer_encoder.ids.weight.detach()
    untouched = [0, 9, 10]
    assert torch.equal(w_sparse[untouched], init[untouched])
    first = [1, 2, 3, 4]  # only in the first batch
    # Sparse: the second step left the first batch's rows where the first step put them.
    # Dense: Adam's momentum moved them again on the second step.
    assert not torch.equal(w_sparse[first], init[first])
    assert not torch.allclose(w_dense[first], w_sparse[first])
    for emb in sparse.id_embeddings():
        assert emb.sparse
    # The pair of optimizers resumes from its state dict; a single optimizer's state is refused.
    state = opt.state_dict()
    again = make_optimizer(M.split_id_parameters(sparse, True), True, 1e-2)
    again.load_state_dict(state)
    assert again.optimizers[1].state_dict()["state"].keys() == state["1"]["state"].keys()
    with pytest.raises(ValueError, match="cannot resume"):
        again.load_state_dict(state["0"])


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
# The recipe's epochs (no Ray): shuffling across buckets, hard negatives
# ------------------------------------------------------------------------------------------
class _Shard:
    """A worker's shard as Ray Data hands it over: blocks in the files' order, one customer
    bucket after another (customer_idx % 16)."""

    def __init__(self, customers: np.ndarray, articles: np.ndarray, labels: np.ndarray):
        order = np.argsort(customers % 16, kind="stable")
        self.cols = {"customer_idx": customers[order], "article_idx": articles[order],
                     "label": labels[order]}

    def iter_batches(self, batch_size: int, batch_format: str):
        n = len(self.cols["label"])
        for lo in range(0, n, 1000):  # blocks of 1000 rows, as the files hold them
            yield {k: v[lo:lo + 1000] for k, v in self.cols.items()}


def _recipe_batches(cfg, shard, epochs=(0, 1)):
    """The batches the two-tower recipe trains on in each epoch (run_epoch recorded)."""
    import stylehub_ray.train.two_tower as T
    from stylehub_ray.train.loop import Worker

    recipe = T.TwoTowerRecipe("unused://", cfg)
    recipe.worker = Worker(0, 1, "cpu", shard)
    recipe.data, recipe.c_tab, recipe.a_tab, recipe.log_q = None, {}, {}, None
    seen = {}

    def record(model, batches, *args, **kw):
        seen[epoch] = [dict(b) for b in batches]
        return np.zeros(3), len(seen[epoch]), sum(len(b["label"]) for b in seen[epoch])

    original = T.run_epoch
    T.run_epoch = record
    try:
        for epoch in epochs:
            recipe.train_epoch(None, None, epoch)
    finally:
        T.run_epoch = original
    return seen


def test_epochs_shuffle_across_buckets_and_change_every_epoch():
    """Each batch mixes customers of every bucket, each epoch in a new order, every row once
    per epoch, and the same seed gives the same batches (before: the files' order, one
    bucket's customers per batch, the same in-batch negatives every epoch)."""
    from stylehub_ray.train.two_tower import TrainTwoTowerConfig

    rng = np.random.default_rng(0)
    n = 16_000
    shard = _Shard(rng.integers(0, 4000, n), rng.integers(0, 500, n),
                   (rng.random(n) < 0.2).astype(np.int8))
    cfg = TrainTwoTowerConfig(batch_size=512, hard_negatives=0, seed=3)
    seen = _recipe_batches(cfg, shard)
    for epoch in (0, 1):
        batches = seen[epoch]
        assert len(batches) == n // 512
        assert sum(len(b["label"]) for b in batches) == n  # every row, once
        assert len(np.unique(batches[0]["customer_idx"] % 16)) == 16
    assert not np.array_equal(seen[0][0]["customer_idx"], seen[1][0]["customer_idx"])
    rows = lambda bs: sorted(zip(*(np.concatenate([b[k] for b in bs]).tolist()  # noqa: E731
                                   for k in ("customer_idx", "article_idx", "label"))))
    assert rows(seen[0]) == rows(seen[1])
    again = _recipe_batches(cfg, shard)
    for epoch in (0, 1):
        for a, b in zip(seen[epoch], again[epoch]):
            assert np.array_equal(a["customer_idx"], b["customer_idx"])
    # shuffle=false keeps the files' order (what training did before).
    plain = _recipe_batches(TrainTwoTowerConfig(batch_size=512, hard_negatives=0,
                                                shuffle=False), shard, (0,))
    assert len(np.unique(plain[0][0]["customer_idx"] % 16)) == 1


def test_hard_negatives_come_from_the_models_own_retrieval():
    """The ranking model's extra negatives are drawn from each customer's current top N
    (what it will reorder at inference), never one of the customer's own positives."""
    from stylehub_ray.train.two_tower import mine_hard_negatives

    torch.manual_seed(0)
    spec = tiny_spec(customer_ids=0, article_ids=0)
    model = M.TwoStageRecommender(spec).eval()
    c_tab, a_tab = side(30, 3, (4, 3), 0, 1), side(200, 2, (5,), 6, 2)
    rng = np.random.default_rng(0)
    data = {"customer_idx": rng.integers(0, 30, 400), "article_idx": rng.integers(0, 200, 400),
            "label": (rng.random(400) < 0.5).astype(np.int64)}
    mined = mine_hard_negatives(model, c_tab, a_tab, data, n_candidates=10, per_positive=2,
                                cap=100, rng=np.random.default_rng(1))
    with torch.no_grad():
        scores = model.customer_vectors(c_tab) @ model.article_vectors(a_tab).T
    top = scores.topk(10, dim=1).indices.numpy()
    owned = set(zip(data["customer_idx"][data["label"] == 1],
                    data["article_idx"][data["label"] == 1]))
    assert 0 < len(mined["label"]) <= 200 and (mined["label"] == 0).all()
    for c, a in zip(mined["customer_idx"], mined["article_idx"]):
        assert a in top[c] and (c, a) not in owned
    # In an epoch they join the examples (ranking loss only: label 0).
    from stylehub_ray.train.two_tower import TrainTwoTowerConfig

    n = 4000
    shard = _Shard(rng.integers(0, 30, n), rng.integers(0, 200, n),
                   (rng.random(n) < 0.2).astype(np.int8))
    import stylehub_ray.train.two_tower as T
    from stylehub_ray.train.loop import Worker

    recipe = T.TwoTowerRecipe("unused://", TrainTwoTowerConfig(batch_size=256,
                                                               n_candidates=10))
    recipe.worker = Worker(0, 1, "cpu", shard)
    recipe.data, recipe.c_tab, recipe.a_tab, recipe.log_q = None, c_tab, a_tab, None
    got = {}
    original = T.run_epoch
    T.run_epoch = lambda model, batches, *a, **k: (got.setdefault("b", list(batches)),
                                                     (np.zeros(3), 1, 1))[1]
    try:
        out = recipe.train_epoch(model, None, 0)
    finally:
        T.run_epoch = original
    total = sum(len(b["label"]) for b in got["b"])
    assert out["hard_negatives"] > 0 and total == n + out["hard_negatives"]


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
                                         "resumed_at": 1, "restarts": 1}
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
    trained_articles = meta["trained_articles"]
    assert trained_articles.dtype == bool and 0 < trained_articles.sum() < 600
    assert entry["counts"]["articles"]["trained"] == int(trained_articles.sum())
    # Choices made on val after training, with the numbers behind them.
    choices = meta["choices"]
    assert set(choices) == {"retrieval_weight", "drop_bought", "cold"}
    assert choices["cold"] in ("model", "popularity")
    assert entry["choices"] == choices and len(entry["choices_val"]["warm"]) == 10
    assert entry["choices_val"]["cold_customers"] > 0

    # index/two-tower: the article-tower vectors of the test feature set, ids.parquet layout.
    assert run.is_complete("index/two-tower")
    info = run.read_json("index/two-tower/index.json")
    assert info["feature_set"] == "test" and info["items"] == 600 and info["dim"] == 32
    index, rows = read_index(run, "index/two-tower")
    assert index.ntotal == 600 and np.array_equal(rows, np.arange(600))
    rec = TwoTowerRecommender.load(run, "default", "test")
    assert rec.index is not None and rec.article_vectors.shape == (600, 32)
    np.testing.assert_allclose(index.reconstruct_n(0, 600), rec.article_vectors, atol=1e-5)
    # Articles without a training positive are encoded with the unknown id.
    assert (rec.articles.ids[~trained_articles] == 0).all()
    assert (rec.articles.ids[trained_articles] > 0).all()

    # Customers without a training positive: the model's vector from their features (id 0)
    # when it won on val, else popularity; both paths answer.
    cold = np.flatnonzero(~trained)[:20]
    for path in ("model", "popularity"):
        rec.choices["cold"] = path
        arts, _scores, paths = rec.recommend(cold, 12)
        assert set(paths) == {"model-cold" if path == "model" else "popularity"}
        assert (arts >= 0).all()
    with torch.no_grad():
        inputs = rec.customers.take(cold)
        assert (inputs["ids"] == 0).all()
        expected = model.customer_vectors(inputs).numpy()
    np.testing.assert_allclose(rec.encode_customers(cold, cold=True), expected, atol=1e-6)
    with pytest.raises(KeyError, match="not seen in training"):
        rec.encode_customers(cold)

    again = train_two_tower(run, cfg)
    assert again.get("skipped")


@pytest.mark.cluster  # two fits, 30-50 s: in the CI's second suite (make test-cluster)
def test_same_seed_same_model(tt_run):
    """Repeatable: two trainings with the same seed (Ray Data's block order, the epoch
    shuffles, id dropout, hard negatives, torch's init) publish the same weights and the same
    validation numbers."""
    from stylehub_ray.models.artifacts import load_artifact
    from stylehub_ray.train.two_tower import TrainTwoTowerConfig, train_two_tower

    arts = []
    for variant in ("rep-a", "rep-b"):
        train_two_tower(tt_run, TrainTwoTowerConfig(variant=variant, **FAST))
        arts.append(load_artifact(tt_run, "two-tower", variant))
    a, b = arts
    assert a.state.keys() == b.state.keys()
    for k in a.state:
        assert torch.equal(a.state[k], b.state[k]), k
    for ha, hb in zip(a.meta["history"], b.meta["history"]):
        for k in ("loss", "val_map12", "auc", "hard_negatives"):
            assert ha[k] == hb[k], k
    assert a.meta["choices"] == b.meta["choices"]
    assert a.meta["choices_val"] == b.meta["choices_val"]


# Two workers (make test keeps the contrastive model's): in the CI's second suite.
@pytest.mark.cluster
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
    # Every example once (split evenly between the workers), plus the hard negatives.
    assert total - 2 < h["samples"] - h["hard_negatives"] <= total
    assert h["auc"] > 0.5 and entry["counts"]["epochs"]["trained"] == 1
    assert tt_run.is_complete("index/two-tower-ddp")


def test_context_features_of_a_day():
    """Day of week and month on the circle and the weekend flag; at inference the feature
    set's cutoff day stands for every customer."""
    from stylehub_ray.features.inputs import context_features, day_context

    wed = day_context("2020-09-16", 3)  # a Wednesday in September
    assert wed.shape == (3, 5) and (wed == wed[0]).all()
    np.testing.assert_allclose(wed[0], context_features([2], [9], [0])[0])
    sunday = day_context("2020-09-20", 1)[0]
    np.testing.assert_allclose(sunday[[0, 1, 4]], [math.sin(2 * math.pi * 6 / 7),
                                                   math.cos(2 * math.pi * 6 / 7), 1.0],
                               atol=1e-6)
