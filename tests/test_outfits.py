"""Polyvore-U generator and reader: layout, determinism, planted truth, quarantine (no Ray)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from stylehub_ray.data.polyvore import (
    EMPTY_IMAGE_NAME,
    ITEM_OUT_OF_RANGE,
    ITEM_WITHOUT_IMAGE,
    MISSING_REQUIRED_ITEM,
    NEGATIVE_ITEM_ID,
    NEGATIVE_USER,
    NOT_AN_INTEGER,
    WRONG_COLUMN_COUNT,
    is_polyvore_layout,
    read_polyvore,
    reconcile,
)
from stylehub_ray.synth.outfits import GENERATOR_VERSION, generate_outfits

SETS = ("630", "519", "53", "32")
VARIABLE = {"630": False, "519": True, "53": False, "32": True}
SPLITS = ("train", "val", "test")
KINDS = ("posi", "nega", "nega_hard")
NEGA_RATIO = {"train": 1, "val": 10, "test": 10}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[str, dict]:
    out = str(tmp_path_factory.mktemp("polyvore") / "pv")
    return out, generate_outfits(out, scale="tiny", seed=0)


def load(root: str, set_name: str, split: str, kind: str) -> np.ndarray:
    """A tuple file as (rows, 5): user, top, top2 (-1 when none), bottom, shoe."""
    fn = os.path.join(root, f"tuples_{set_name}", f"tuples_{split}_{kind}")
    a = np.loadtxt(fn, delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)
    if a.shape[1] == 4:
        a = np.insert(a, 2, -1, axis=1)
    return a


def oracle(root: str, name: str):
    return pq.read_table(os.path.join(root, "_oracle", f"{name}.parquet")).to_pandas()


def item_styles(root: str, set_name: str) -> dict[str, np.ndarray]:
    items = oracle(root, "items")
    items = items[items.set_name == set_name]
    return {
        cat: items[items.category == cat].sort_values("item_id")["style"].to_numpy()
        for cat in ("top", "bottom", "shoe")
    }


def anchors_of(root: str, set_name: str) -> dict[int, set[int]]:
    users = oracle(root, "users")
    users = users[users.set_name == set_name]
    return {int(u): set(a.tolist()) for u, a in zip(users.user, users.anchors)}


def single_anchor_style(rows: np.ndarray, styles: dict[str, np.ndarray],
                        anchors: dict) -> np.ndarray:
    """All items one style, and that style one of the user's anchors."""
    out = []
    for user, top, top2, bottom, shoe in rows.tolist():
        s = {styles["top"][top], styles["bottom"][bottom], styles["shoe"][shoe]}
        if top2 >= 0:
            s.add(styles["top"][top2])
        out.append(len(s) == 1 and s.pop() in anchors[user])
    return np.array(out, dtype=bool)


def likelihood_ratio(root: str, set_name: str, split: str, rows: np.ndarray) -> np.ndarray:
    """Independent of the generator's code, one row at a time: p_u(o) / p_rand(o) with
    p_u = sum_a w_a prod_i [(1 - eps) [z_i = a] / n(c, a) + eps / K / n(c, z_i)] and
    p_rand = prod_i 1 / n(c), n counting the split pool's items."""
    with open(os.path.join(root, "_oracle", "meta.json")) as f:
        meta = json.load(f)
    eps, k = meta["params"]["realism"]["taste_noise"], meta["params"]["styles"]
    items = oracle(root, "items")
    items = items[(items.set_name == set_name)]
    style = {c: g.sort_values("item_id")["style"].to_numpy() for c, g in items.groupby("category")}
    pool = items[items.pool == split]
    n = {c: g["style"].value_counts().to_dict() for c, g in pool.groupby("category")}
    users = oracle(root, "users")
    users = users[users.set_name == set_name].set_index("user")
    out = []
    for user, top, top2, bottom, shoe in rows.tolist():
        slots = [("top", top), ("bottom", bottom), ("shoe", shoe)] + (
            [("top", top2)] if top2 >= 0 else [])
        p_rand = np.prod([1 / sum(n[c].values()) for c, _ in slots])
        p_u = 0.0
        for a, w in zip(users.loc[user, "anchors"], users.loc[user, "weights"]):
            p_u += w * np.prod([(1 - eps) * (style[c][i] == a) / n[c].get(a, 1)
                                + eps / k / n[c][style[c][i]] for c, i in slots])
        out.append(p_u / p_rand)
    return np.array(out)


def file_digests(root: str) -> dict[str, str]:
    digests = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            path = os.path.join(dirpath, f)
            with open(path, "rb") as fh:
                digests[os.path.relpath(path, root)] = hashlib.sha256(fh.read()).hexdigest()
    return digests


# --------------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------------
def test_layout_files_and_row_formats(tiny):
    root, summary = tiny
    assert is_polyvore_layout(root)
    assert summary["version"] == GENERATOR_VERSION
    for s in SETS:
        folder = os.path.join(root, f"tuples_{s}")
        names = {}
        for cat in ("top", "bottom", "shoe"):
            with open(os.path.join(folder, f"image_list_{cat}")) as f:
                names[cat] = f.read().splitlines()
            assert len(names[cat]) == summary["sets"][s]["items"][cat]
            assert all(re.fullmatch(rf"{cat}/[0-9a-f]{{40}}\.jpg", n) for n in names[cat])
            assert len(set(names[cat])) == len(names[cat])
            # Every listed image exists and is a JPEG.
            for n in names[cat][:5]:
                with open(os.path.join(root, "images", n), "rb") as fh:
                    assert fh.read(2) == b"\xff\xd8"
        width = 5 if VARIABLE[s] else 4
        header = "user,top,top,bottom,shoe" if VARIABLE[s] else "user,top,bottom,shoe"
        row_re = re.compile(r"^\d+" + r",-?\d+" * (width - 1) + "$")
        for split in SPLITS:
            for kind in KINDS:
                with open(os.path.join(folder, f"tuples_{split}_{kind}")) as f:
                    lines = f.read().splitlines()
                assert lines[0] == header
                assert all(row_re.match(ln) for ln in lines[1:]), (s, split, kind)
                assert len(lines) - 1 == summary["sets"][s]["rows"][f"{split}_{kind}"]
                rows = load(root, s, split, kind)
                for j, cat in ((1, "top"), (2, "top"), (3, "bottom"), (4, "shoe")):
                    assert rows[:, j].max() < len(names[cat])
    with open(os.path.join(root, "_oracle", "meta.json")) as f:
        meta = json.load(f)
    assert meta["params_hash"] == summary["params_hash"]
    assert meta["params"]["false_negative_fraction"] == 0.0
    assert len(os.listdir(os.path.join(root, "images", "top"))) == sum(
        summary["sets"][s]["items"]["top"] for s in SETS
    )


def test_same_seed_same_bytes_other_seed_differs(tiny, tmp_path):
    root, _ = tiny
    again = str(tmp_path / "again")
    generate_outfits(again, scale="tiny", seed=0)
    first, second = file_digests(root), file_digests(again)
    assert len(first) > 2000
    assert first == second
    other = str(tmp_path / "other")
    generate_outfits(other, scale="tiny", seed=1, images=False)
    third = file_digests(other)
    for s in SETS:
        for f in ("tuples_train_posi", "tuples_test_nega", "image_list_top"):
            key = os.path.join(f"tuples_{s}", f)
            assert third[key] != first[key], key


def test_splits_are_9_2_2_and_negatives_follow_their_positives(tiny):
    root, _ = tiny
    for s in ("630", "519"):
        posi = {sp: load(root, s, sp, "posi") for sp in SPLITS}
        n = {sp: len(a) for sp, a in posi.items()}
        total = sum(n.values())
        assert abs(n["train"] / total - 9 / 13) < 0.03
        assert abs(n["val"] / total - 2 / 13) < 0.02
        assert abs(n["test"] / total - 2 / 13) < 0.02
        users = np.unique(posi["train"][:, 0])
        for sp in SPLITS:
            # Every user in every split, rows grouped by user.
            assert np.array_equal(np.unique(posi[sp][:, 0]), users)
            assert np.all(np.diff(posi[sp][:, 0]) >= 0)
            for kind in ("nega", "nega_hard"):
                nega = load(root, s, sp, kind)
                ratio = NEGA_RATIO[sp]
                assert len(nega) == ratio * len(posi[sp])
                # The release's convention: negative row r belongs to positive row r // ratio.
                assert np.array_equal(nega[:, 0], np.repeat(posi[sp][:, 0], ratio))
        # No item is shared between training and test outfits.
        for cols in ((1, 2), (3,), (4,)):
            train_items = set(posi["train"][:, cols].ravel().tolist()) - {-1}
            test_items = set(posi["test"][:, cols].ravel().tolist()) - {-1}
            assert not train_items & test_items


def test_variable_length_sets_mix_three_and_four_items(tiny):
    root, _ = tiny
    for s in SETS:
        for split in SPLITS:
            for kind in KINDS:
                rows = load(root, s, split, kind)
                assert (rows[:, [0, 1, 3, 4]] >= 0).all()  # -1 only in the second-top slot
                if VARIABLE[s]:
                    two = rows[:, 2] >= 0
                    if kind == "posi" or len(rows) >= 20:
                        assert two.any() and (~two).any(), (s, split, kind)
                    assert np.all(rows[two, 2] != rows[two, 1])
                else:
                    assert (rows[:, 2] == -1).all()


def test_hard_negatives_are_other_users_positives(tiny):
    root, _ = tiny
    negas = oracle(root, "negatives")
    for s in SETS:
        for split in SPLITS:
            posi = load(root, s, split, "posi")
            hard = load(root, s, split, "nega_hard")
            owners: dict[tuple, set[int]] = {}
            for row in posi.tolist():
                owners.setdefault(tuple(row[1:]), set()).add(row[0])
            for row in hard.tolist():
                assert owners.get(tuple(row[1:]), set()) - {row[0]}, (s, split, row)
            o = negas[(negas.set_name == s) & (negas.split == split) & (negas.kind == "nega_hard")]
            src = o.sort_values("row")["source_row"].to_numpy()
            assert np.array_equal(posi[src, 1:], hard[:, 1:])
            assert (posi[src, 0] != hard[:, 0]).all()


def test_random_negatives_are_not_redrawn_and_flag_their_false_negatives(tiny):
    """Polyvore-U's random negatives are plain random mixtures: some are outfits the user
    would like (under the old generator, which redrew them, none was), and the oracle flags
    exactly those whose likelihood ratio (user's model over random mixing) exceeds 1."""
    root, _ = tiny
    negas = oracle(root, "negatives")
    posis = oracle(root, "positives")
    flagged = single = 0
    for s in SETS:
        styles, anchors = item_styles(root, s), anchors_of(root, s)
        for split in SPLITS:
            for kind in ("nega", "nega_hard"):
                rows = load(root, s, split, kind)
                o = negas[(negas.set_name == s) & (negas.split == split) & (negas.kind == kind)]
                o = o.sort_values("row")
                lr = likelihood_ratio(root, s, split, rows)
                assert np.allclose(np.exp(o["oracle_score"].to_numpy()), lr, rtol=1e-6)
                assert np.array_equal(o["is_false_negative"].to_numpy(), lr > 1)
                assert not o["planted"].any()  # the default plants none
                if kind == "nega":
                    flagged += int((lr > 1).sum())
                    single += int(single_anchor_style(rows, styles, anchors).sum())
            p = posis[(posis.set_name == s) & (posis.split == split)].sort_values("row")
            lr = likelihood_ratio(root, s, split, load(root, s, split, "posi"))
            assert np.allclose(np.exp(p["oracle_score"].to_numpy()), lr, rtol=1e-6)
    assert flagged > 0 and single > 0


def test_positives_are_not_all_single_style(tiny):
    """Taste noise: a share of each positive's items comes from outside its anchor style."""
    root, _ = tiny
    for s in SETS:
        styles, anchors = item_styles(root, s), anchors_of(root, s)
        rows = np.concatenate([load(root, s, split, "posi") for split in SPLITS])
        share = single_anchor_style(rows, styles, anchors).mean()
        # (1 - 0.35)^3 = 0.27 of three-item positives keep every item on the anchor style
        # (a noisy draw can land on it too: 1/K of the time).
        assert 0.15 < share < 0.6, (s, share)


def test_oracle_auc_lies_between_the_paper_and_perfect_on_tiny_data(tiny):
    """The ceiling: the oracle's per-user AUC on 630's random-negative test rows, from the
    files the generator wrote, matches the in-memory calibration measure and is in a sane band
    (tiny data has 8 styles, not the demo's 16, so it sits lower than the calibrated 95)."""
    from stylehub_ray.metrics import per_user_auc_ndcg
    from stylehub_ray.synth.outfits import oracle_metrics

    root, _ = tiny
    negas, posis = oracle(root, "negatives"), oracle(root, "positives")
    p = posis[(posis.set_name == "630") & (posis.split == "test")]
    n = negas[(negas.set_name == "630") & (negas.split == "test") & (negas.kind == "nega")]
    users = np.r_[p.user.to_numpy(), n.user.to_numpy()]
    labels = np.r_[np.ones(len(p), np.int64), np.zeros(len(n), np.int64)]
    m = per_user_auc_ndcg(users, labels, np.r_[p.oracle_score, n.oracle_score])
    mem = oracle_metrics("tiny", 0)
    assert m["auc"] == pytest.approx(mem["auc"]) and m["ndcg"] == pytest.approx(mem["ndcg"])
    assert 0.8 < m["auc"] < 0.99


def test_planted_false_negatives_at_the_fraction(tmp_path):
    summary = generate_outfits(
        str(tmp_path), scale="tiny", seed=0, images=False, false_negative_fraction=0.25
    )
    o = oracle(str(tmp_path), "negatives")
    for s in SETS:
        train = o[(o.set_name == s) & (o.split == "train") & (o.kind == "nega")]
        assert train["planted"].sum() == int(np.floor(0.25 * len(train) + 0.5))
        assert summary["sets"][s]["planted_false_negatives"] == train["planted"].sum()
        # A planted outfit takes every item from one of the user's anchor styles.
        assert train[train.planted]["is_false_negative"].all()


def test_cold_start_users_have_one_or_five_training_outfits(tiny):
    root, _ = tiny
    cold = oracle(root, "cold_start")
    for s in ("53", "32"):
        train = load(root, s, "train", "posi")
        users, counts = np.unique(train[:, 0], return_counts=True)
        assert len(users) == 6 and (counts == 5).all()
        c = cold[cold.set_name == s]
        for shots in (1, 5):
            rows = c[c.shots == shots]
            assert sorted(rows.user.value_counts().unique()) == [shots]
            assert np.array_equal(train[rows.row.to_numpy(), 0], rows.user.to_numpy())
        one = set(c[c.shots == 1].row)
        assert one <= set(c[c.shots == 5].row)
        # Cold starters still have the usual val / test outfits to be evaluated on.
        assert len(load(root, s, "test", "posi")) >= 6
    assert set(cold.set_name) == {"53", "32"}
    for s in ("630", "519"):
        _, counts = np.unique(load(root, s, "train", "posi")[:, 0], return_counts=True)
        assert counts.min() >= 9


# --------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------
def test_reader_round_trips_the_generator(tiny):
    root, summary = tiny
    t = read_polyvore(root)
    assert t.sets == ["630", "519", "53", "32"]
    assert t.variable_length == VARIABLE
    assert t.quarantine.num_rows == 0
    assert t.absent_files == []
    out = t.outfits.to_pandas()
    for s in SETS:
        for split in SPLITS:
            for kind in KINDS:
                part = out[(out.set_name == s) & (out.split == split) & (out.kind == kind)]
                assert len(part) == summary["sets"][s]["rows"][f"{split}_{kind}"]
                rows = load(root, s, split, kind)
                got = part[["user", "top", "top2", "bottom", "shoe"]].to_numpy()
                assert np.array_equal(got, rows)
                assert np.array_equal(part.row.to_numpy(), np.arange(len(rows)))
                assert np.array_equal(part.n_items.to_numpy(), 3 + (rows[:, 2] >= 0))
    items = t.items.to_pandas()
    assert (items.status == "present").all()
    assert len(items) == sum(sum(v["items"].values()) for v in summary["sets"].values())
    assert all(os.path.isfile(p) for p in items.path.head(20))
    assert str(t.outfits.schema.field("row").type) == "int32"
    assert str(t.outfits.schema.field("n_items").type) == "int8"
    for src, (n, kept, q) in reconcile(t).items():
        assert n == kept and q == 0, src


def corrupt_copy(root: str, dst: str) -> str:
    shutil.copytree(root, dst, ignore=shutil.ignore_patterns("images", "_oracle"))
    return dst


def append_lines(fn: str, lines: list[str]) -> int:
    """Append lines; returns the 1-based file line number of the first one."""
    with open(fn) as f:
        n = len(f.read().splitlines())
    with open(fn, "a") as f:
        f.write("\n".join(lines) + "\n")
    return n + 1


def test_bad_rows_land_in_quarantine_and_counts_reconcile(tiny, tmp_path):
    root, summary = tiny
    bad = corrupt_copy(root, str(tmp_path / "bad"))
    f630 = os.path.join(bad, "tuples_630", "tuples_train_posi")
    f519 = os.path.join(bad, "tuples_519", "tuples_val_nega")
    n_shoes = summary["sets"]["630"]["items"]["shoe"]
    cases_630 = [
        ("0,1,2", "row", "3", WRONG_COLUMN_COUNT),
        ("0,x,2,3", "top", "x", NOT_AN_INTEGER),
        ("0,1,2.5,3", "bottom", "2.5", NOT_AN_INTEGER),
        ("-3,1,2,3", "user", "-3", NEGATIVE_USER),
        ("0,-1,2,3", "top", "-1", MISSING_REQUIRED_ITEM),
        ("0,1,-5,3", "bottom", "-5", NEGATIVE_ITEM_ID),
        ("0,1,2,99999", "shoe", "99999", ITEM_OUT_OF_RANGE),
        (f"0,1,2,{n_shoes}", "shoe", str(n_shoes), ITEM_OUT_OF_RANGE),  # one past the end
        ("", "row", "1", WRONG_COLUMN_COUNT),
    ]
    cases_519 = [
        ("1,1,999,2,3", "top2", "999", ITEM_OUT_OF_RANGE),
        ("1,1,2,3", "row", "4", WRONG_COLUMN_COUNT),
        ("1,1,2,-1,3", "bottom", "-1", MISSING_REQUIRED_ITEM),
    ]
    good_519 = "1,1,-1,2,3"  # a three-item outfit: kept
    first_630 = append_lines(f630, [c[0] for c in cases_630])
    first_519 = append_lines(f519, [c[0] for c in cases_519] + [good_519])
    # An empty image-list line: the item is quarantined, and so is every outfit using it.
    shoe_list = os.path.join(bad, "tuples_53", "image_list_shoe")
    with open(shoe_list) as f:
        names = f.read().splitlines()
    used = {int(r[4]) for sp in SPLITS for k in KINDS for r in load(bad, "53", sp, k)}
    blank_id = min(used)
    names[blank_id] = ""
    with open(shoe_list, "w") as f:
        f.write("\n".join(names) + "\n")

    t = read_polyvore(bad)
    q = t.quarantine.to_pandas()
    for offset, (line, field, value, reason) in enumerate(cases_630):
        hit = q[(q.source == f630) & (q.line_number == first_630 + offset)]
        assert len(hit) == 1, line
        assert (hit.line.iloc[0], hit.field.iloc[0], hit.value.iloc[0], hit.reason.iloc[0]) == (
            line,
            field,
            value,
            reason,
        )
        assert hit.table.iloc[0] == "outfits" and hit.expected.iloc[0]
    for offset, (line, field, value, reason) in enumerate(cases_519):
        hit = q[(q.source == f519) & (q.line_number == first_519 + offset)]
        assert (hit.line.iloc[0], hit.field.iloc[0], hit.value.iloc[0], hit.reason.iloc[0]) == (
            line,
            field,
            value,
            reason,
        )
    out = t.outfits.to_pandas()
    n_val_nega = summary["sets"]["519"]["rows"]["val_nega"]
    kept = out[(out.set_name == "519") & (out.split == "val") & (out.kind == "nega")]
    assert kept.row.max() == n_val_nega + len(cases_519)  # the good appended row is kept
    assert kept.iloc[-1][["top", "top2", "n_items"]].tolist() == [1, -1, 3]

    items_q = q[q.table == "items"]
    assert items_q[["source", "line_number", "reason"]].values.tolist() == [
        [shoe_list, blank_id + 1, EMPTY_IMAGE_NAME]
    ]
    no_image = q[q.reason == ITEM_WITHOUT_IMAGE]
    n_using = sum(
        int((load(bad, "53", sp, k)[:, 4] == blank_id).sum()) for sp in SPLITS for k in KINDS
    )
    assert len(no_image) == n_using > 0
    assert (no_image.field == "shoe").all() and (no_image.value == str(blank_id)).all()
    assert len(q) == len(cases_630) + len(cases_519) + 1 + n_using
    assert len(set(q.reason)) >= 8

    # Every line read is either kept or quarantined, per file and in total.
    rec = reconcile(t)
    for src, (n, k, nq) in rec.items():
        assert n == k + nq, src
    assert rec[f630] == (
        summary["sets"]["630"]["rows"]["train_posi"] + len(cases_630),
        summary["sets"]["630"]["rows"]["train_posi"],
        len(cases_630),
    )
    total_read = sum(t.rows_read.values())
    assert total_read == t.outfits.num_rows + t.items.num_rows + len(q)


def test_reader_accepts_headerless_crlf_files_and_flags_missing_images(tiny, tmp_path):
    root, _ = tiny
    copy = str(tmp_path / "copy")
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("_oracle"))
    fn = os.path.join(copy, "tuples_519", "tuples_test_posi")
    with open(fn) as f:
        lines = f.read().splitlines()
    with open(fn, "w", newline="") as f:
        f.write("\r\n".join(lines[1:]) + "\r\n")  # no header, Windows line ends
    with open(os.path.join(copy, "tuples_53", "image_list_top")) as f:
        gone = f.readline().strip()
    os.remove(os.path.join(copy, "images", gone))
    t = read_polyvore(copy)
    assert t.quarantine.num_rows == 0
    out = t.outfits.to_pandas()
    part = out[(out.set_name == "519") & (out.split == "test") & (out.kind == "posi")]
    assert np.array_equal(
        part[["user", "top", "top2", "bottom", "shoe"]].to_numpy(),
        load(root, "519", "test", "posi"),
    )
    items = t.items.to_pandas()
    missing = items[items.status == "missing"]
    assert missing[["set_name", "category", "item_id", "image"]].values.tolist() == [
        ["53", "top", 0, gone]
    ]


def test_missing_files_raise_errors_naming_them(tiny, tmp_path):
    root, _ = tiny
    broken = corrupt_copy(root, str(tmp_path / "broken"))
    missing = os.path.join(broken, "tuples_53", "image_list_shoe")
    os.remove(missing)
    with pytest.raises(FileNotFoundError, match=re.escape(missing)):
        read_polyvore(broken)
    other = corrupt_copy(root, str(tmp_path / "noposi"))
    posi = os.path.join(other, "tuples_32", "tuples_val_posi")
    os.remove(posi)
    with pytest.raises(FileNotFoundError, match=re.escape(posi)):
        read_polyvore(other)
    # Negatives are optional (Fashion-Hash-Net can make them online): recorded, not fatal.
    os.remove(os.path.join(broken, "tuples_630", "tuples_test_nega_hard"))
    shutil.rmtree(os.path.join(broken, "tuples_53"))
    t = read_polyvore(broken)
    assert t.absent_files == [os.path.join(broken, "tuples_630", "tuples_test_nega_hard")]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not is_polyvore_layout(str(empty))
    with pytest.raises(ValueError, match="not a Polyvore-U layout"):
        read_polyvore(str(empty))
