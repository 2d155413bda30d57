"""Exact tests for stylehub_ray.metrics: hand-computed cases and Kaggle's apk/mapk."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stylehub_ray.metrics import (
    auc,
    average_precision_at_k,
    coverage,
    evaluate_ranking,
    hit_rate_at_k,
    map_at_k,
    mrr,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)

# Any warning (for example numpy's "mean of empty slice" or sklearn's single-class warning)
# is a defect here, so all warnings become errors.
pytestmark = pytest.mark.filterwarnings("error")

LOG2_3 = math.log2(3)  # 1.58496..., so rank 2's discount is 1/log2(3) = 0.63093
LOG2_5 = math.log2(5)  # 2.32193..., so rank 4's discount is 1/log2(5) = 0.43068


def all_metrics(recs, truth, k):
    """The six truth-based metrics at k, in order: map, recall, precision, ndcg, mrr, hit."""
    return [
        map_at_k(recs, truth, k),
        recall_at_k(recs, truth, k),
        precision_at_k(recs, truth, k),
        ndcg_at_k(recs, truth, k),
        mrr(recs, truth, k),
        hit_rate_at_k(recs, truth, k),
    ]


# --- Kaggle reference, transcribed verbatim (benhamner/Metrics, used by the H&M competition) -----


def kaggle_apk(actual, predicted, k=10):
    if len(predicted) > k:
        predicted = predicted[:k]
    score = 0.0
    num_hits = 0.0
    for i, p in enumerate(predicted):
        if p in actual and p not in predicted[:i]:
            num_hits += 1.0
            score += num_hits / (i + 1.0)
    if not actual:
        return 0.0
    return score / min(len(actual), k)


def kaggle_mapk(actual, predicted, k=10):
    return np.mean([kaggle_apk(a, p, k) for a, p in zip(actual, predicted)])


# --- one user, hand-computed ---------------------------------------------------------------------


def test_basic_case_all_metrics():
    # recs [1, 2, 3], truth {1, 3}, k=3: hits at ranks 1 and 3.
    #   AP        = (P(1)*1 + P(3)*1) / min(2, 3) = (1/1 + 2/3) / 2 = 0.83333
    #   recall    = 2 hits / |truth| 2 = 1
    #   precision = 2 hits / k 3 = 0.66667
    #   DCG       = 1/log2(2) + 1/log2(4) = 1 + 0.5 = 1.5
    #   IDCG      = 1/log2(2) + 1/log2(3) = 1 + 0.63093 = 1.63093, so NDCG = 0.91972
    #   MRR       = 1/1, hit = 1
    got = all_metrics([[1, 2, 3]], [{1, 3}], 3)
    want = [(1 + 2 / 3) / 2, 1.0, 2 / 3, 1.5 / (1 + 1 / LOG2_3), 1.0, 1.0]
    assert got == pytest.approx(want)
    assert average_precision_at_k([1, 2, 3], {1, 3}, 3) == pytest.approx(0.8333333333)


def test_duplicate_recommendations_count_once_at_first_rank():
    # recs [4, 5, 5, 7], truth {5, 7}, k=4. The 5 at rank 3 repeats rank 2, so it takes up the
    # rank but is not a hit. Hits are at ranks 2 and 4.
    #   AP        = (P(2) + P(4)) / min(2, 4) = (1/2 + 2/4) / 2 = 0.5
    #               (counting the copy would give (1/2 + 2/3 + 3/4) / 2 = 0.95833)
    #   recall    = 2/2 = 1 (counting the copy would give 3/2)
    #   precision = 2/4 = 0.5 (counting the copy would give 3/4)
    #   DCG       = 1/log2(3) + 1/log2(5) = 0.63093 + 0.43068 = 1.06161
    #   IDCG      = 1 + 1/log2(3) = 1.63093, so NDCG = 0.65092
    #   MRR       = 1/2, hit = 1
    got = all_metrics([[4, 5, 5, 7]], [{5, 7}], 4)
    want = [0.5, 1.0, 0.5, (1 / LOG2_3 + 1 / LOG2_5) / (1 + 1 / LOG2_3), 0.5, 1.0]
    assert got == pytest.approx(want)
    assert got[3] == pytest.approx(0.650921, abs=1e-6)


def test_padding_and_fewer_recs_than_k():
    # recs [9, 3] (as a list, or as a -1-padded array row), truth {3, 8}, k=12. Ranks 3..12 are
    # empty and count as misses.
    #   AP        = P(2) / min(2, 12) = (1/2) / 2 = 0.25
    #   recall    = 1/2
    #   precision = 1/12 (the denominator is k, not the list length 2)
    #   NDCG      = (1/log2(3)) / (1 + 1/log2(3)) = 0.63093 / 1.63093 = 0.38685
    #   MRR       = 1/2, hit = 1
    want = [0.25, 0.5, 1 / 12, (1 / LOG2_3) / (1 + 1 / LOG2_3), 0.5, 1.0]
    assert all_metrics([[9, 3]], [{3, 8}], 12) == pytest.approx(want)
    assert all_metrics(np.array([[9, 3, -1, -1]]), [{3, 8}], 12) == pytest.approx(want)
    assert want[3] == pytest.approx(0.386853, abs=1e-6)


def test_padding_in_truth_never_matches_padding_in_recs():
    # With both sides padded with -1, a naive match would count -1 == -1 as a hit. Only item 2
    # is real: |truth| = 1, one hit at rank 1, so AP = 1 and precision = 1/3.
    recs = np.array([[2, -1, -1]])
    truth = np.array([[2, -1]])
    assert map_at_k(recs, truth, 3) == pytest.approx(1.0)
    assert precision_at_k(recs, truth, 3) == pytest.approx(1 / 3)
    assert recall_at_k(recs, truth, 3) == pytest.approx(1.0)


def test_truth_larger_than_k():
    # truth {1, 2, 3, 4, 5}, k=3, so |truth| > k.
    # recs [1, 2, 3]: every rank is a hit.
    #   AP = (1 + 1 + 1) / min(5, 3) = 1, recall = 3/5 (denominator |truth|, not min),
    #   precision = 1, NDCG = 1 (the ideal also has only 3 ranks)
    assert all_metrics([[1, 2, 3]], [{1, 2, 3, 4, 5}], 3) == pytest.approx(
        [1.0, 0.6, 1.0, 1.0, 1.0, 1.0]
    )
    # recs [10, 1, 2]: hits at ranks 2 and 3.
    #   AP        = (1/2 + 2/3) / 3 = 0.38889
    #   recall    = 2/5, precision = 2/3
    #   DCG       = 1/log2(3) + 1/log2(4) = 1.13093
    #   IDCG      = 1 + 1/log2(3) + 1/2 = 2.13093, so NDCG = 0.53072
    #   MRR       = 1/2
    want = [(1 / 2 + 2 / 3) / 3, 0.4, 2 / 3, (1 / LOG2_3 + 0.5) / (1.5 + 1 / LOG2_3), 0.5, 1.0]
    assert all_metrics([[10, 1, 2]], [{1, 2, 3, 4, 5}], 3) == pytest.approx(want)


def test_paper_ndcg_example():
    # hybrid-two-tower.txt, "Evaluation Metrics": relevance [1, 0, 1, 0, 1] in the top 5 gives
    # DCG = 1/log2(2) + 1/log2(4) + 1/log2(6) = 1 + 0.5 + 0.38685 = 1.88685.
    # The paper's ideal is five relevant items in the top 5: IDCG = 1 + 0.63093 + 0.5 + 0.43068
    # + 0.38685 = 2.94846, NDCG = 0.63994. With only the 3 recommended items relevant, the
    # ideal puts 3 hits first: IDCG = 2.13093, NDCG = 0.88546.
    recs = [[11, 12, 13, 14, 15]]
    idcg5 = sum(1 / math.log2(i + 1) for i in range(1, 6))
    assert idcg5 == pytest.approx(2.94846, abs=1e-5)
    got = ndcg_at_k(recs, [{11, 13, 15, 98, 99}], 5)
    assert got * idcg5 == pytest.approx(1.88685, abs=1e-5)
    assert got == pytest.approx(0.63994, abs=1e-5)
    assert ndcg_at_k(recs, [{11, 13, 15}], 5) == pytest.approx(0.88546, abs=1e-5)


def test_only_first_k_ranks_are_read():
    # recs [7, 8, 1], truth {1}. At k=2 the hit at rank 3 is cut off, so everything is 0.
    # At k=3: AP = (1/3) / 1, MRR = 1/3, precision = 1/3.
    assert all_metrics([[7, 8, 1]], [{1}], 2) == pytest.approx([0, 0, 0, 0, 0, 0])
    assert map_at_k([[7, 8, 1]], [{1}], 3) == pytest.approx(1 / 3)
    assert mrr([[7, 8, 1]], [{1}], 3) == pytest.approx(1 / 3)
    # A wide array cut to k gives the same result as a list.
    assert map_at_k(np.array([[7, 8, 1, 1]]), [{1}], 2) == 0.0


def test_repeated_truth_ids_count_once():
    # truth [3, 3] is the set {3}: |truth| = 1, so recall = 1/1 (not 1/2) and AP = 1/1.
    assert recall_at_k([[3, 4]], [[3, 3]], 2) == pytest.approx(1.0)
    assert map_at_k([[3, 4]], [[3, 3]], 2) == pytest.approx(1.0)


# --- means over users ----------------------------------------------------------------------------

THREE_USERS_RECS = [[1, 2, 3], [1, 2, 3], [4, 5, 6]]
THREE_USERS_TRUTH = [{1, 3}, set(), {9}]


def test_empty_truth_is_excluded_from_the_mean():
    # user 0: AP 0.83333 (see test_basic_case_all_metrics); user 1: no truth, not scored;
    # user 2: no hits, AP 0. MAP = (0.83333 + 0) / 2 = 0.41667. Dividing by all 3 users
    # would give 0.27778.
    assert map_at_k(THREE_USERS_RECS, THREE_USERS_TRUTH, 3) == pytest.approx((1 + 2 / 3) / 4)
    per_user = map_at_k(THREE_USERS_RECS, THREE_USERS_TRUTH, 3, per_user=True)
    np.testing.assert_allclose(per_user, [(1 + 2 / 3) / 2, np.nan, 0.0])
    # Precision's denominator is k, not |truth|, so it is the metric most likely to pick up the
    # empty-truth user by mistake. The mean is (2/3 + 0) / 2 = 1/3.
    assert precision_at_k(THREE_USERS_RECS, THREE_USERS_TRUTH, 3) == pytest.approx(1 / 3)
    np.testing.assert_allclose(
        hit_rate_at_k(THREE_USERS_RECS, THREE_USERS_TRUTH, 3, per_user=True), [1.0, np.nan, 0.0]
    )


def test_no_user_with_truth_gives_nan():
    for value in all_metrics([[1, 2], [3]], [set(), []], 2):
        assert math.isnan(value)
    for value in all_metrics([], [], 5):  # no users at all
        assert math.isnan(value)
    assert math.isnan(average_precision_at_k([1, 2], set(), 2))


def test_hit_rate_and_mrr_means():
    # hits: user 0 at rank 2, user 1 none, user 2 at rank 1.
    # hit rate = (1 + 0 + 1) / 3 = 2/3, MRR = (1/2 + 0 + 1/1) / 3 = 0.5
    recs = [[1, 2], [3, 4], [5, 6]]
    truth = [{2}, {9}, {5, 6}]
    assert hit_rate_at_k(recs, truth, 2) == pytest.approx(2 / 3)
    assert mrr(recs, truth, 2) == pytest.approx(0.5)


def test_mrr_without_k_searches_whole_list():
    # truth {1} is at rank 5: MRR = 1/5 with no cutoff, and 0 at k=3.
    assert mrr([[4, 5, 6, 7, 1]], [{1}]) == pytest.approx(0.2)
    assert mrr([[4, 5, 6, 7, 1]], [{1}], 3) == 0.0
    # When every list is empty, every scored user has reciprocal rank 0.
    assert mrr([[], []], [{1}, {2}]) == 0.0


def test_ragged_lists_match_padded_array():
    # The same recommendations as ragged lists and as a -1-padded array, including a repeat.
    ragged = [[5, 1, 5], [2], [], [7, 8, 9]]
    padded = np.array([[5, 1, 5], [2, -1, -1], [-1, -1, -1], [7, 8, 9]])
    truth = [{1, 5}, {3}, {4}, {9, 7}]
    for k in (1, 2, 3, 5):
        assert all_metrics(ragged, truth, k) == pytest.approx(all_metrics(padded, truth, k))


def test_huge_item_ids_use_dense_codes():
    # Ids near 2**62 cannot be combined with the user index in int64, so they are replaced with
    # dense codes first. Results must equal the same case with small ids (test_basic_case).
    base = 2**62
    recs = [[base + 1, base + 2, base + 3], [base + 2]]
    truth = [{base + 1, base + 3}, {base + 3}]
    # user 0: AP (1 + 2/3) / 2; user 1: no hit, AP 0. MAP = 0.41667
    assert map_at_k(recs, truth, 3) == pytest.approx((1 + 2 / 3) / 4)


# --- coverage and AUC ----------------------------------------------------------------------------


def test_coverage():
    recs = [[1, 2, 3], [3, 2, -1], [1, 1, 4]]
    # Distinct ids in all lists: {1, 2, 3, 4}. -1 is padding and does not count. 4 / 10 = 0.4.
    assert coverage(recs, n_items=10) == pytest.approx(0.4)
    # Top 1 only: {1, 3, 1}, so 2 distinct ids / 10 = 0.2.
    assert coverage(recs, n_items=10, k=1) == pytest.approx(0.2)
    assert coverage(np.array(recs), n_items=4) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="n_items"):
        coverage(recs, n_items=0)


def test_auc_counts_concordant_pairs():
    # positives score 0.9, 0.4, 0.8; negatives score 0.8, 0.3. There are 3 * 2 = 6 pairs:
    #   (0.9, 0.8) 1   (0.9, 0.3) 1   (0.4, 0.8) 0   (0.4, 0.3) 1   (0.8, 0.8) tie 1/2
    #   (0.8, 0.3) 1   so AUC = 4.5 / 6 = 0.75
    labels = [1, 0, 1, 0, 1]
    scores = [0.9, 0.8, 0.4, 0.3, 0.8]
    assert auc(labels, scores) == pytest.approx(0.75)
    # Reversing the scores swaps concordant and discordant pairs: 1.5 / 6 = 0.25.
    assert auc(labels, [-s for s in scores]) == pytest.approx(0.25)


def test_auc_single_class_is_nan_without_error():
    assert math.isnan(auc([1, 1, 1], [0.2, 0.5, 0.9]))
    assert math.isnan(auc([0, 0], [0.2, 0.5]))
    assert math.isnan(auc([], []))


# --- the evaluate_ranking contract ---------------------------------------------------------------


def test_evaluate_ranking_keys_and_values():
    got = evaluate_ranking(THREE_USERS_RECS, THREE_USERS_TRUTH, ks=(3,), n_items=10)
    # Scored users are 0 and 2 (user 1 has no truth). User 0 is test_basic_case; user 2 misses.
    #   map       = (0.83333 + 0) / 2
    #   recall    = (1 + 0) / 2
    #   precision = (2/3 + 0) / 2
    #   ndcg      = (0.91972 + 0) / 2
    #   mrr       = (1 + 0) / 2
    #   hit_rate  = (1 + 0) / 2
    #   coverage  = ids {1..6} from all three users (coverage ignores truth) / 10 = 0.6
    want = {
        "map@3": (1 + 2 / 3) / 4,
        "recall@3": 0.5,
        "precision@3": 1 / 3,
        "ndcg@3": 1.5 / (1 + 1 / LOG2_3) / 2,
        "mrr@3": 0.5,
        "hit_rate@3": 0.5,
        "coverage@3": 0.6,
        "n_users": 2,
    }
    assert got.keys() == want.keys()
    assert got == pytest.approx(want)


def test_evaluate_ranking_matches_single_metrics_at_each_k():
    rng = np.random.default_rng(7)
    recs = rng.integers(0, 40, size=(50, 15))
    recs[rng.random(recs.shape) < 0.1] = -1  # scatter some padding
    truth = [set(rng.integers(0, 40, size=rng.integers(0, 6)).tolist()) for _ in range(50)]
    got = evaluate_ranking(recs, truth, ks=(1, 5, 12), n_items=40)
    assert list(got) == [
        f"{name}@{k}"
        for k in (1, 5, 12)
        for name in ("map", "recall", "precision", "ndcg", "mrr", "hit_rate", "coverage")
    ] + ["n_users"]
    for k in (1, 5, 12):
        assert got[f"map@{k}"] == pytest.approx(map_at_k(recs, truth, k))
        assert got[f"recall@{k}"] == pytest.approx(recall_at_k(recs, truth, k))
        assert got[f"precision@{k}"] == pytest.approx(precision_at_k(recs, truth, k))
        assert got[f"ndcg@{k}"] == pytest.approx(ndcg_at_k(recs, truth, k))
        assert got[f"mrr@{k}"] == pytest.approx(mrr(recs, truth, k))
        assert got[f"hit_rate@{k}"] == pytest.approx(hit_rate_at_k(recs, truth, k))
        assert got[f"coverage@{k}"] == pytest.approx(coverage(recs, 40, k))
    assert got["n_users"] == sum(1 for t in truth if t)


def test_evaluate_ranking_without_catalogue_size_keeps_coverage_key_as_nan():
    got = evaluate_ranking([[1, 2]], [{1}], ks=(12,))
    assert math.isnan(got["coverage@12"])
    assert got["map@12"] == 1.0 and got["n_users"] == 1


def test_invalid_inputs_raise_with_a_message():
    with pytest.raises(ValueError, match="2 recs and 1 truth"):
        map_at_k([[1], [2]], [{1}], 3)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        map_at_k([[1]], [{1}], 0)
    with pytest.raises(ValueError, match="2-D integer"):
        map_at_k(np.array([[1.0, 2.0]]), [{1}], 2)


# --- against the Kaggle reference on random data -------------------------------------------------


def random_case(rng, n_users, n_items, allow_empty_truth):
    """Ragged recs with repeats, and truth lists of distinct ids."""
    recs = [rng.integers(0, n_items, size=rng.integers(0, 20)).tolist() for _ in range(n_users)]
    low = 0 if allow_empty_truth else 1
    truth = [
        rng.choice(n_items, size=rng.integers(low, 16), replace=False).tolist()
        for _ in range(n_users)
    ]
    return recs, truth


@pytest.mark.parametrize("k", [1, 5, 12, 25])
def test_map_matches_kaggle_mapk_on_random_data(k):
    rng = np.random.default_rng(2022 + k)
    recs, truth = random_case(rng, n_users=300, n_items=30, allow_empty_truth=False)
    assert map_at_k(recs, truth, k) == pytest.approx(kaggle_mapk(truth, recs, k), rel=1e-12)
    np.testing.assert_allclose(
        map_at_k(recs, truth, k, per_user=True),
        [kaggle_apk(t, r, k) for t, r in zip(truth, recs, strict=True)],
        rtol=1e-12,
    )


def test_map_with_empty_truth_equals_kaggle_mapk_over_buyers_only():
    rng = np.random.default_rng(12)
    recs, truth = random_case(rng, n_users=300, n_items=30, allow_empty_truth=True)
    buyers = [i for i, t in enumerate(truth) if t]
    assert 0 < len(buyers) < len(truth)  # the case must include both kinds of user
    reference = kaggle_mapk([truth[i] for i in buyers], [recs[i] for i in buyers], 12)
    assert map_at_k(recs, truth, 12) == pytest.approx(reference, rel=1e-12)
