"""Contrastive item model: NT-Xent against a slow loop, the model, its inputs, the measures
against brute force, and the Ray Train stage end to end on the tiny run (resume after an
injected failure, 2-worker DDP, evaluation, plots, similar items, CLI)."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pyarrow as pa
import pytest
import torch

from stylehub_ray.eval import contrastive as E
from stylehub_ray.models.contrastive import ContrastiveSpec, SimCLR, pair_loss
from stylehub_ray.models.losses import nt_xent_loss
from stylehub_ray.run import Run


# --------------------------------------------------------------------------------------------
# Loss and model (no Ray)
# --------------------------------------------------------------------------------------------
def _slow_nt_xent(z1, z2, tau, ids=None):
    """Paper 2.2 / 4.5 literally: views 2n and 2n+1 are pair n; l(i, j) with the sum over
    k != i (and, with ids, over k whose item differs from i's unless k is i's partner)."""
    views = []
    for a, b in zip(z1.tolist(), z2.tolist()):
        views += [a, b]
    item = None
    if ids is not None:
        item = []
        for a, b in zip(*ids):
            item += [int(a), int(b)]

    def sim(u, v):
        return sum(x * y for x, y in zip(u, v)) / math.sqrt(
            sum(x * x for x in u) * sum(y * y for y in v))

    total = 0.0
    for i in range(len(views)):
        j = i ^ 1
        denom = 0.0
        for k in range(len(views)):
            if k == i or (item is not None and k != j and item[k] == item[i]):
                continue
            denom += math.exp(sim(views[i], views[k]) / tau)
        total += -math.log(math.exp(sim(views[i], views[j]) / tau) / denom)
    return total / len(views)


@pytest.mark.parametrize("tau", [0.1, 0.5, 1.0])
def test_nt_xent_matches_slow_loop(tau):
    g = torch.Generator().manual_seed(3)
    z1, z2 = torch.randn(7, 5, generator=g), torch.randn(7, 5, generator=g)
    assert nt_xent_loss(z1, z2, tau).item() == pytest.approx(_slow_nt_xent(z1, z2, tau),
                                                             rel=1e-5)
    # Item ids with repeats (kNN pairs share anchors): the masked loss drops them as negatives.
    ids = (torch.tensor([0, 0, 1, 2, 2, 3, 4]), torch.tensor([5, 6, 5, 0, 7, 8, 9]))
    masked = nt_xent_loss(z1, z2, tau, *ids).item()
    assert masked == pytest.approx(_slow_nt_xent(z1, z2, tau, ids), rel=1e-5)
    assert masked != pytest.approx(nt_xent_loss(z1, z2, tau).item(), rel=1e-4)


def test_nt_xent_rewards_aligned_pairs():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(16, 8, generator=g)
    aligned = nt_xent_loss(z, z + 0.01 * torch.randn(16, 8, generator=g), 0.1)
    shuffled = nt_xent_loss(z, z[torch.randperm(16, generator=g)], 0.1)
    assert aligned < shuffled
    assert aligned.item() < math.log(2 * 16 - 1)  # below the uniform-similarity loss


def test_model_shapes_embed_and_input_stats():
    spec = ContrastiveSpec(input_dim=12, hidden=(32, 24), embed_dim=20, projection_hidden=16,
                           projection_dim=6, dropout=0.2)
    model = SimCLR(spec)
    x = torch.randn(9, 12) * 5 + 3
    model.set_input_stats(x)
    assert torch.allclose(model.input_mean, x.mean(0))
    model.eval()
    h = model.embed(x)
    assert h.shape == (9, 20) and (h >= 0).all()  # h2 = ReLU(W2 h1 + b2)
    assert model(x).shape == (9, 6)
    assert torch.allclose(model.head(h), model(x))  # p = f_proj(f_feat(x))
    assert torch.allclose(model.embed_all(x, batch=4), h)
    linears = [m for m in model.extractor.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [32, 24, 20]
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in model.extractor.modules())
    assert any(isinstance(m, torch.nn.Dropout) for m in model.extractor.modules())
    assert SimCLR(ContrastiveSpec(input_dim=4)).embed(torch.randn(3, 4)).shape == (3, 512)
    with pytest.raises(ValueError, match="expected 12 columns"):
        model.set_input_stats(torch.randn(3, 5))
    model.train()
    loss = pair_loss(model, x[:4], x[4:8], 0.5)
    loss.backward()
    assert all(p.grad is not None for p in model.extractor.parameters())


# --------------------------------------------------------------------------------------------
# Measures against brute force (no Ray)
# --------------------------------------------------------------------------------------------
def test_knn_and_pair_measures_match_brute_force():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(40, 6)).astype(np.float32)
    has = np.ones(40, bool)
    has[[3, 7]] = False
    unit = E.unit_rows(emb)
    ids, sims = E.knn(unit, np.array([0, 5, 9]), 4, has)
    for r, q in enumerate([0, 5, 9]):
        s = unit @ unit[q]
        s[q] = -np.inf
        s[~has] = -np.inf
        assert ids[r].tolist() == np.argsort(-s)[:4].tolist()
        np.testing.assert_allclose(sims[r], np.sort(s)[::-1][:4], rtol=1e-5)
    # Pairs: anchor 0's positives are its 1st and 6th nearest; anchor 5's is item 3 (no
    # vector, left out); negatives (0, 9), (5, 11).
    s0 = unit @ unit[0]
    s0[0] = -np.inf
    s0[~has] = -np.inf
    order0 = np.argsort(-s0)
    pairs = pa.table({"anchor_idx": [0, 0, 5, 0, 5], "other_idx": [order0[0], order0[5], 3, 9, 11],
                      "label": [1, 1, 1, 0, 0]})
    m = E.pair_measures(emb, pairs, has, ks=(5,), mrr_depth=10)
    d = lambda a, b: 1 - float(unit[a] @ unit[b])  # noqa: E731
    assert m["pos_pairs"] == 2 and m["neg_pairs"] == 2 and m["anchors"] == 1
    assert m["pos_dist"] == pytest.approx((d(0, order0[0]) + d(0, order0[5])) / 2, abs=1e-6)
    assert m["neg_dist"] == pytest.approx((d(0, 9) + d(5, 11)) / 2, abs=1e-6)
    assert m["separation"] == pytest.approx(m["neg_dist"] - m["pos_dist"])
    assert m["recall@5"] == pytest.approx(0.5)  # one of two positives in the top 5
    assert m["mrr"] == pytest.approx(1.0)  # the first positive is ranked first


def test_neighbour_agreement_and_copurchase_by_hand():
    # Two tight clusters; labels follow the clusters for type, alternate for colour.
    emb = np.array([[1, 0], [0.99, 0.1], [0.98, 0.15], [0, 1], [0.1, 0.99], [0.15, 0.98]],
                   np.float32)
    types = np.array(["a", "a", "a", "b", "b", "b"], dtype=object)
    colours = np.array(["x", "y", "x", "y", "x", "y"], dtype=object)
    has = np.ones(6, bool)
    ag = E.neighbour_agreement(emb, {"t": types, "c": colours}, has, k=2)
    assert ag["t"]["share"] == pytest.approx(1.0)
    # Item 0's 2 nearest: 1 (y), 2 (x) -> 1/2; item 1: 2 (x), 0 (x) -> 0; item 2: 1, 0 -> 1/2;
    # symmetric in the other cluster: (1/2 + 0 + 1/2) * 2 / 6 ... per neighbour = 4/12.
    assert ag["c"]["share"] == pytest.approx(4 / 12)
    assert ag["t"]["chance"] == pytest.approx(2 * 3 * 2 / (6 * 5))
    # Co-purchase: customer 1 bought 0 and 1 (neighbours), customer 2 bought 0 and 3 (far).
    a, b = E.copurchase_pairs(np.array([1, 1, 2, 2, 2]), np.array([0, 1, 0, 3, 3]), 50)
    assert sorted(zip(a.tolist(), b.tolist())) == [(0, 1), (0, 3), (1, 0), (3, 0)]
    # k=2: the cluster mates are each other's neighbours, the other cluster never is.
    cb = E.copurchase_recall(emb, has, a, b, k=2)
    assert cb["pairs"] == 4 and cb["recall"] == pytest.approx(0.5)
    # k=1: item 1's single nearest is item 2, so only (0, 1) is found.
    assert E.copurchase_recall(emb, has, a, b, k=1)["recall"] == pytest.approx(0.25)


# --------------------------------------------------------------------------------------------
# The stage on the tiny run (Ray)
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def con_run(tiny_run, tmp_path_factory):
    """The tiny run with TF-IDF text vectors, text and transaction pairs, and image vectors
    where every 5th article has no photo (a null vector)."""
    from stylehub_ray.embed import vectors as V
    from stylehub_ray.embed.pairs import PairsConfig, mine_pairs
    from stylehub_ray.embed.text import EmbedTextConfig, embed_text

    dst = tmp_path_factory.mktemp("con") / "run"
    shutil.copytree(tiny_run.root, dst)
    run = Run(str(dst))
    embed_text(run, EmbedTextConfig(encoder="tfidf"))
    mine_pairs(run, PairsConfig(), "text")
    mine_pairs(run, PairsConfig(), "transactions")
    text = V.read_embeddings(run, "embeddings/text")
    n = text.num_rows
    rng = np.random.default_rng(1)
    present = np.arange(n) % 5 != 0
    step = run.step("embed", "images", config={"synthetic": True}, inputs={},
                    outputs=["embeddings/images"])
    with step:
        V.write_table(run, step.tmp("embeddings/images"), pa.table({
            "article_id": text.column("article_id"), "article_idx": text.column("article_idx"),
            "has_image": pa.array(present),
            "embedding": V.to_fixed_list(rng.normal(size=(n, 8)).astype(np.float32), present)}))
    return run


def test_item_inputs_null_images_are_zeros_plus_flag(con_run):
    from stylehub_ray.train.contrastive import load_item_inputs

    text = load_item_inputs(con_run, "text")
    img = load_item_inputs(con_run, "image")
    both = load_item_inputs(con_run, "text+image")
    n, dt = text.x.shape
    assert img.x.shape == (n, 9) and both.x.shape == (n, dt + 9)
    missing = np.arange(n) % 5 == 0
    assert (img.x[missing] == 0).all()  # no photo: zero vector, has_image 0
    assert (img.x[~missing, -1] == 1).all()
    np.testing.assert_array_equal(img.has_vector, ~missing)  # image-only ranks photos only
    assert both.has_vector.all() and text.has_vector.all()
    np.testing.assert_array_equal(both.x[:, :dt], text.x)
    with pytest.raises(ValueError, match="inputs must be one of"):
        load_item_inputs(con_run, "audio")


def test_train_resume_evaluate_and_similar_items(con_run, capsys):
    from stylehub_ray.eval.contrastive import EvaluateContrastiveConfig, evaluate_contrastive
    from stylehub_ray.eval.similar import SimilarItems, similar_items
    from stylehub_ray.models.artifacts import load_model
    from stylehub_ray.train.contrastive import (
        REPORTED_METRICS,
        TrainContrastiveConfig,
        build_trainer,
        train_contrastive,
    )

    run = con_run
    cfg = TrainContrastiveConfig(pairs="text", epochs=2, batch_size=64, hidden=(64,),
                                 embed_dim=32, projection_hidden=32, projection_dim=16,
                                 cpus_per_worker=1.0)
    trainer, _ = build_trainer(run, cfg, fail_after_epoch=0)
    with pytest.raises(Exception, match="injected failure"):
        trainer.fit()
    entry = train_contrastive(run, cfg)
    assert entry["counts"]["epochs"] == {"trained": 2, "best": entry["counts"]["epochs"]["best"],
                                         "resumed_at": 1, "restarts": 1}
    model, _spec, meta = load_model(run, "contrastive", "text")
    assert not model.training and meta["inputs"] == "text"
    assert [h["epoch"] for h in meta["history"]] == [0, 1]
    assert all(set(REPORTED_METRICS) <= set(h) for h in meta["history"])
    best = meta["best"]
    assert best["val_pos_dist"] < best["val_neg_dist"]
    assert best["val_recall5"] > 0.2  # chance: 5 of ~600 items
    assert train_contrastive(run, cfg).get("skipped")

    # Two workers (DDP, half a CPU each), transaction pairs, text and image vectors.
    cfg2 = TrainContrastiveConfig(pairs="transactions", inputs="text+image", epochs=1,
                                  batch_size=32, hidden=(32,), embed_dim=16,
                                  projection_hidden=16, projection_dim=8, workers=2,
                                  cpus_per_worker=0.5)
    e2 = train_contrastive(run, cfg2)
    assert e2["counts"]["epochs"]["trained"] == 1
    assert e2["counts"]["items"]["embedded"] == 600

    res = evaluate_contrastive(run, EvaluateContrastiveConfig(map_points=200))
    text = res["contrastive"]["text"]
    assert set(res["contrastive"]) == {"text", "transactions"}
    assert text["paper"]["pos_dist"] == pytest.approx(0.2286)
    for name in ("trained", "input"):
        m = text[name]
        assert 0 <= m["pos_dist"] < m["neg_dist"] <= 2
        assert 0 < m["recall@5"] <= m["recall@20"] <= 1 and 0 < m["mrr"] <= 1
        assert 0 <= m["agreement"]["product_type_name"]["share"] <= 1
        assert m["copurchase"]["pairs"] > 0
    saved = run.read_json("eval/contrastive/text/metrics.json")
    assert saved["trained"]["pos_dist"] == pytest.approx(text["trained"]["pos_dist"])
    for png in ("loss.png", "distances.png", "map.png"):
        with run.fs.open_input_stream(run.path(f"eval/contrastive/text/{png}")) as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    lines = E.format_table(res)
    assert any(line.startswith("text") and "paper" in line for line in lines)

    # Similar items: the index agrees with brute force over the published embeddings.
    sim = SimilarItems.load(run, "text")
    emb = sim.embeddings
    aid = int(sim.article_id[17])
    got = similar_items(run, article_id=f"{aid:010d}", k=5)
    s = emb @ emb[17]
    s[17] = -np.inf
    # The same top-5 scores as brute force (items with identical text tie: any order of a tie)
    want = np.sort(s)[::-1][:5]
    np.testing.assert_allclose([g["score"] for g in got], want, atol=1e-5)
    assert all(s[g["article_idx"]] >= want[-1] - 1e-5 for g in got)
    assert all(g["article_idx"] != 17 for g in got)
    assert [g["score"] for g in got] == sorted((g["score"] for g in got), reverse=True)
    with pytest.raises(KeyError, match="9999999999"):
        sim.by_article(9_999_999_999)
    with pytest.raises(ValueError, match="exactly one"):
        similar_items(run, k=3)


def test_cli_parses_and_rejects_bad_settings(con_run, capsys):
    from stylehub_ray.cli import build_parser, main

    args = build_parser().parse_args(["train", "contrastive", "--run", "R", "--workers", "2",
                                      "--gpus-per-worker", "1", "--set", "pairs=image"])
    assert (args.what, args.workers, args.gpus_per_worker) == ("contrastive", 2, 1.0)
    assert build_parser().parse_args(["evaluate", "contrastive", "--run", "R"]).what == \
        "contrastive"
    assert build_parser().parse_args(["train", "simclr-images", "--run", "R"]).what == \
        "simclr-images"
    assert main(["train", "contrastive", "--run", con_run.root, "--set", "pairs=audio"]) == 2
    assert "train_contrastive.pairs must be one of" in capsys.readouterr().err
    assert main(["train", "contrastive", "--run", con_run.root, "--set", "pairs=image"]) == 2
    assert "pairs/image is missing" in capsys.readouterr().err


def test_a_killed_worker_restarts_from_the_last_checkpoint(con_run):
    """A Ray Train worker process SIGKILLed mid-run: FailureConfig restarts the worker group
    from the last checkpoint, the fit finishes and the manifest counts the restart."""
    import os
    import signal
    import threading
    import time
    from pathlib import Path

    from conftest import wait_for
    from ray.util.state import list_actors

    from stylehub_ray.train.contrastive import TrainContrastiveConfig, train_contrastive

    cfg = TrainContrastiveConfig(pairs="text", tag="killed", epochs=8, batch_size=64,
                                 hidden=(64,), embed_dim=32, projection_hidden=32,
                                 projection_dim=16)
    root = Path(con_run.root) / "_ray_train" / "contrastive"
    seen: dict = {}

    def checkpoints() -> set:
        return set(root.glob("*/checkpoint_*"))

    def train_workers() -> set:
        return {a.pid for a in list_actors(filters=[("state", "=", "ALIVE")])
                if "TrainWorker" in a.class_name}

    stale = train_workers()  # another fit's, not yet gone

    def kill_after_first_checkpoint() -> None:
        wait_for(checkpoints, timeout=300, every=0.05)
        time.sleep(0.5)  # the checkpoint's report reaches the controller
        before = checkpoints()
        seen["pid"] = next(iter(wait_for(lambda: train_workers() - stale, timeout=60)))
        os.kill(seen["pid"], signal.SIGKILL)
        t0 = time.monotonic()
        # Recovered: the restarted group reports its first checkpoint.
        wait_for(lambda: checkpoints() - before, timeout=300, every=0.05)
        seen["recover_s"] = round(time.monotonic() - t0, 2)

    thread = threading.Thread(target=kill_after_first_checkpoint, daemon=True)
    thread.start()
    entry = train_contrastive(con_run, cfg)
    thread.join(timeout=60)
    assert "pid" in seen and "recover_s" in seen
    epochs = entry["counts"]["epochs"]
    assert epochs["restarts"] == 1 and epochs["trained"] == cfg.epochs
    assert 1 <= epochs["resumed_at"] < cfg.epochs
    print(f"killed worker {seen['pid']}: resumed at epoch {epochs['resumed_at']}, "
          f"recovered (next checkpoint) {seen['recover_s']} s after the kill")
