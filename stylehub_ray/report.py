"""`stylehub report --run RUN`: one self-contained HTML page of a run (``RUN/report.html``).

What the run holds, read back from its files: the manifest as a timeline, data quality (kept
and quarantined rows per table, the commonest reasons), the ranking metrics with their
intervals and as fractions of the oracle, the contrastive and FND-CL tables (FND-CL beside the
paper's), every plot the stages drew (training curves, embedding maps, bars), and for a few
customers their recent purchases and their recommendations as photo cards, with the path that
answered and the articles they bought in the test week marked. Images are embedded as data
URIs and the page has no script and no external asset, so it opens offline and can be mailed.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import posixpath
from dataclasses import dataclass
from datetime import datetime

import pyarrow.fs as pafs

from stylehub_ray.run import Run

logger = logging.getLogger(__name__)

OUT = "report.html"
THUMB_PX = 128  # the longer side of an embedded photo

# The paper's FND-CL numbers on Polyvore-630 (AUC / NDCG, percent; random negatives from
# Table 2, hard negatives from Table 4), as quoted in BENCHMARKS.md.
PAPER_FNDCL = {"fnd": {"auc": 89.91, "ndcg": 82.18, "auc_hard": 83.55, "ndcg_hard": 68.74},
               "fndcl": {"auc": 90.28, "ndcg": 82.47, "auc_hard": 84.24, "ndcg_hard": 69.99}}


@dataclass
class ReportConfig:
    customers: int = 4  # customers shown as photo cards
    recent: int = 6  # their most recent purchases shown
    k: int = 12  # recommendations shown per model


def write_report(run: Run, cfg: ReportConfig | None = None, force: bool = False) -> str:
    """Write ``RUN/report.html`` (always redone: it only reads the run) and return its path
    or URI."""
    cfg = cfg or ReportConfig()
    page = build_html(run, cfg)
    run.write_bytes(OUT, page.encode())
    where = run.uri_of(OUT)
    logger.info(f"report: {where} ({len(page) / 1e3:,.0f} kB)")
    return where


def build_html(run: Run, cfg: ReportConfig) -> str:
    manifest = run.manifest()
    sections = [("Stages", _timeline(manifest)), ("Data quality", _quality(run, manifest)),
                ("Ranking on the test week", _ranking(run)),
                ("Customers: recent purchases and recommendations", _customers(run, cfg)),
                ("Contrastive item model", _contrastive(run)),
                ("FND-CL outfits", _fndcl(run)),
                ("Plots", _plots(run))]
    body = "\n".join(f"<section><h2>{html.escape(title)}</h2>\n{content}</section>"
                     for title, content in sections if content)
    return (f"<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width, initial-scale=1'>"
            f"<title>StyleHub run report</title><link rel=icon href='data:,'>"
            f"<style>{CSS}</style></head><body>"
            f"<h1>StyleHub run report</h1><p class=sub>{html.escape(run.uri)} &middot; "
            f"{len(manifest.get('steps', {}))} steps &middot; updated "
            f"{html.escape(str(manifest.get('updated', '')))}</p>\n{body}</body></html>\n")


CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{margin:0}.sub{color:#666;margin-top:4px}h2{border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0}td,th{padding:3px 8px;border-bottom:1px solid #eee;
text-align:right;white-space:nowrap}th{background:#f6f6f6}td.l,th.l{text-align:left}
td.w{white-space:normal;text-align:left;min-width:300px;max-width:520px}
summary{cursor:pointer}
.bar{background:#4a7bd0;height:10px;display:inline-block;vertical-align:middle}
.gantt{position:relative;width:360px;height:12px;background:#f3f3f3}
.gantt span{position:absolute;height:12px;background:#4a7bd0}
pre{background:#f8f8f8;padding:8px;overflow-x:auto;font-size:12px}
.cards{display:flex;flex-wrap:wrap;gap:6px;margin:4px 0 12px}
.card{width:104px;font-size:11px;border:1px solid #ddd;border-radius:4px;padding:3px;
background:#fff}.card img{width:96px;height:128px;object-fit:contain;display:block;
margin:auto;background:#fafafa}.card.hit{border:2px solid #1a9e3a;background:#eefbea}
.card .noimg{width:96px;height:128px;display:flex;align-items:center;justify-content:center;
color:#999;background:#f3f3f3;margin:auto}.tag{color:#666}
figure{display:inline-block;margin:6px;vertical-align:top}figure img{max-width:640px}
figcaption{color:#666;font-size:12px}
"""


# -- sections ------------------------------------------------------------------------------
def _timeline(manifest: dict) -> str:
    steps = sorted(manifest.get("steps", {}).items(), key=lambda kv: kv[1].get("started", ""))
    if not steps:
        return "<p>No step has run yet.</p>"
    times = [(_when(e.get("started")), _when(e.get("ended"))) for _, e in steps]
    known = [t for pair in times for t in pair if t]
    t0, t1 = min(known), max(known)
    span = max((t1 - t0).total_seconds(), 1e-9)
    rows = []
    for (key, entry), (start, end) in zip(steps, times):
        bar = ""
        if start and end:
            left = 100 * (start - t0).total_seconds() / span
            width = max(100 * (end - start).total_seconds() / span, 0.4)
            bar = (f"<div class=gantt><span style='left:{left:.2f}%;width:{width:.2f}%'>"
                   "</span></div>")
        total = entry.get("timings", {}).get("total_s")
        counts = html.escape(_counts_text(entry.get("counts", {})))
        if len(counts) > 90:  # the whole text one click away
            counts = f"<details><summary>{counts[:90]}&hellip;</summary>{counts}</details>"
        rows.append([key, entry.get("status", ""), str(entry.get("started", ""))[:19],
                     f"{total:,.1f}" if isinstance(total, (int, float)) else "", bar, counts])
    return (f"<p>{len(steps)} steps from {t0:%Y-%m-%d %H:%M:%S} to {t1:%H:%M:%S} UTC; a step "
            "that was up to date keeps the times of the run that made it.</p>"
            + _table(["step", "status", "started", "time s", "when", "counts"], rows,
                     left={0, 1, 2, 5}, raw={4, 5}, wrap={5}))


def _when(text) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text))
    except (TypeError, ValueError):
        return None


def _counts_text(counts: dict) -> str:
    parts = []
    for table, c in counts.items():
        if isinstance(c, dict):
            parts.append(f"{table}: " + ", ".join(
                f"{k} {v:,}" if isinstance(v, (int, float)) else f"{k} {v}"
                for k, v in c.items()))
    return "; ".join(parts)


def _quality(run: Run, manifest: dict) -> str:
    ingest = manifest.get("steps", {}).get("ingest")
    if not ingest:
        return ""
    rows, other = [], []
    for table, c in ingest.get("counts", {}).items():
        if isinstance(c, dict) and "read" in c:
            share = c["quarantined"] / c["read"] if c["read"] else 0.0
            rows.append([table, f"{c['read']:,}", f"{c['kept']:,}", f"{c['quarantined']:,}",
                         f"{share:.2%}", ", ".join(_reasons(run, table))])
        elif isinstance(c, dict):
            other.append(f"{table}: " + ", ".join(f"{k} {v:,}" for k, v in c.items()
                                                  if isinstance(v, int)))
    out = _table(["table", "read", "kept", "quarantined", "share", "commonest reasons"],
                 rows, left={0, 5})
    features = manifest.get("steps", {}).get("features", {}).get("counts", {})
    if features.get("fit_features"):
        f = features["fit_features"]
        other.append("features: " + ", ".join(f"{k.replace('_', ' ')} {v:,}"
                                               for k, v in f.items() if isinstance(v, int)))
    return out + "".join(f"<p>{html.escape(line)}</p>" for line in other)


def _reasons(run: Run, table: str, top: int = 3) -> list[str]:
    """The commonest quarantine reasons of ``table`` with their counts."""
    import pyarrow.parquet as pq

    rel = f"raw/quarantine/{table}"
    if not run.exists(rel):
        return []
    try:
        t = pq.read_table(run.path(rel), filesystem=run.fs, columns=["reason"]).to_pandas()
    except (OSError, ValueError, KeyError):
        return []
    counts = t["reason"].value_counts().head(top)
    return [f"{reason} ({n:,})" for reason, n in counts.items()]


def _ranking(run: Run) -> str:
    from stylehub_ray.eval.ranking import SUMMARY

    if not run.is_complete(SUMMARY):
        return ""
    s = run.read_json(f"{SUMMARY}/table.json")
    mk, ks = s["map_k"], s["ks"]
    metrics = [f"map@{mk}", f"recall@{mk}"] + [f"{m}@{k}" for k in ks
                                               for m in ("precision", "recall", "ndcg")]
    rows = []
    entries = []
    if s.get("oracle"):
        entries.append(("oracle (realized)", "", s["oracle"]["realized"]))
    for label, res in sorted(s["models"].items(),
                             key=lambda kv: (not kv[0].startswith("two-tower"),
                                             not kv[0].startswith("ranker"), kv[0])):
        for setting in ("drop_bought", "keep_bought"):
            if setting in res:
                entries.append((label, setting.split("_")[0], res[setting]))
    for label, setting, scored in entries:
        m, ci = scored.get("metrics", {}), scored.get("ci", {})
        interval = ci.get(f"map@{mk}")
        frac = scored.get("fraction_of_oracle", {}).get(f"map@{mk}",
                                                        1.0 if label.startswith("oracle") else None)
        bar = (f"<span class=bar style='width:{100 * min(frac, 1.2):.0f}px'></span> "
               f"{frac:.2f}" if frac is not None else "")
        rows.append([label, setting, _num(m.get(f"map@{mk}")),
                     f"[{interval[0]:.4f}, {interval[1]:.4f}]" if interval else "", bar,
                     *(_num(m.get(x)) for x in metrics[1:])])
    heads = ["model", "bought", f"MAP@{mk}", "95% interval", "of the oracle (MAP)",
             *(x.replace("precision", "P").replace("recall", "R").replace("ndcg", "N")
               for x in metrics[1:])]
    period = (s.get("oracle") or next(iter(s["models"].values()), {})).get("period", ["", ""])
    text = (f"<p>Test period {period[0]} .. {period[1]}; relevant = the distinct articles each "
            f"customer bought in it. Intervals: bootstrap over customers. &lsquo;bought&rsquo;: "
            f"articles the customer bought before dropped from or kept in the list.</p>")
    diffs = []
    for d in (s.get("differences"), s.get("differences_ranker")):
        if not d:
            continue
        for key, setting in (("intervals", "bought dropped"), ("intervals_keep", "bought kept")):
            for label, (lo, hi) in (d.get(key) or {}).items():
                verdict = "better" if lo > 0 else "worse" if hi < 0 else "not separable"
                diffs.append([d["reference"], label, setting, f"[{lo:+.4f}, {hi:+.4f}]",
                              verdict])
    out = text + _table(heads, rows, left={0, 1}, raw={4})
    if diffs:
        out += ("<h3>Paired differences in MAP (95% bootstrap interval)</h3>"
                + _table(["model", "minus", "setting", "interval", "verdict"], diffs,
                         left={0, 1, 2, 4}))
    return out


def _num(x) -> str:
    return "" if x is None or x != x else f"{x:.4f}"


def _contrastive(run: Run) -> str:
    from stylehub_ray.eval.contrastive import EVAL, format_table

    variants = _subdirs(run, EVAL)
    if not variants:
        return ""
    results = {"contrastive": {v: run.read_json(f"{EVAL}/{v}/metrics.json") for v in variants},
               "simclr": {}}
    try:
        lines = format_table(results)
    except (KeyError, TypeError, ValueError):
        return ""
    return f"<pre>{html.escape(chr(10).join(lines).strip())}</pre>"


def _fndcl(run: Run) -> str:
    from stylehub_ray.eval.fndcl import EFFICIENCY, EVAL, format_tables

    variants = [v for v in _subdirs(run, EVAL) if v != posixpath.basename(EFFICIENCY)]
    if not variants:
        return ""
    results = {v: run.read_json(f"{EVAL}/{v}/metrics.json") for v in variants}
    rows = []
    for v, r in results.items():
        t, h = r.get("test", {}), r.get("test_hard", {})
        paper = PAPER_FNDCL.get(v.split("-")[-1]) if v.startswith("student") else None
        rows.append([v, *(_pct(x) for x in (t.get("auc"), t.get("ndcg"), h.get("auc"),
                                            h.get("ndcg"))),
                     *(f"{paper[k]:.2f}" if paper else "" for k in
                       ("auc", "ndcg", "auc_hard", "ndcg_hard"))])
    table = _table(["variant", "AUC", "NDCG", "AUC hard", "NDCG hard", "paper AUC",
                    "paper NDCG", "paper AUC hard", "paper NDCG hard"], rows, left={0})
    if run.is_complete(EFFICIENCY):
        results["efficiency"] = run.read_json(f"{EFFICIENCY}/table.json")
    lines = format_tables(results)
    return ("<p>Per-user AUC / NDCG at 1:10 on the test outfits, percent; the paper's "
            "Polyvore-630 numbers (Table 2, hard negatives Table 4) beside them.</p>" + table
            + f"<pre>{html.escape(chr(10).join(lines).strip())}</pre>")


def _pct(x) -> str:
    return "" if x is None or x != x else f"{100 * x:.2f}"


def _plots(run: Run) -> str:
    figures = []
    for folder in ("eval", "models"):
        for rel in _files(run, folder, ".png"):
            uri = _data_uri(run, rel, "image/png")
            figures.append(f"<figure><img src='{uri}' alt='{html.escape(rel)}'>"
                           f"<figcaption>{html.escape(rel)}</figcaption></figure>")
    return "".join(figures)


# -- customers as photo cards --------------------------------------------------------------
def _customers(run: Run, cfg: ReportConfig) -> str:
    import numpy as np
    import pyarrow.compute as pc

    from stylehub_ray.data.ingest import read_table
    from stylehub_ray.serve.demo import demo_customers

    recs = _recommendations(run)
    if not recs or not run.is_complete("raw/transactions"):
        return ""
    articles = read_table(run, "raw/articles", ["article_id", "article_idx", "prod_name",
                                                "product_type_name", "colour_group_name"])
    info = {int(a): (n, t, c) for a, n, t, c in zip(
        *(articles.column(x).to_pylist() for x in ("article_id", "prod_name",
                                                    "product_type_name",
                                                    "colour_group_name")))}
    photos = _photo_paths(run)
    cmap = read_table(run, "raw/customer_map")
    idx_of = dict(zip(cmap.column("customer_id").to_pylist(),
                      cmap.column("customer_idx").to_pylist()))
    tx = read_table(run, "raw/transactions", ["t_dat", "customer_idx", "article_id"])
    test_start = None
    if run.is_complete("features/interactions"):
        test = read_table(run, "features/interactions", ["t_dat", "split"])
        test = test.filter(pc.equal(test.column("split"), "test"))
        if test.num_rows:
            test_start = pc.min(test.column("t_dat")).as_py()
    out = []
    shown = 0
    for customer_id, bought in demo_customers(run, limit=200):
        c = idx_of.get(customer_id)
        lists = {name: table[c] for name, table in recs.items() if c in table}
        if c is None or not lists:
            continue
        mine = tx.filter(pc.equal(tx.column("customer_idx"), c))
        if test_start is not None:
            mine = mine.filter(pc.less(mine.column("t_dat"), test_start))
        mine = mine.sort_by([("t_dat", "descending")])
        recent = list(dict.fromkeys(mine.column("article_id").to_pylist()))[:cfg.recent]
        bought_ids = {int(b) for b in bought}
        block = [f"<h3>customer {html.escape(customer_id[:16])}&hellip; "
                 f"<span class=tag>({len(mine):,} purchases before the test week, "
                 f"{len(bought_ids)} articles bought in it)</span></h3>",
                 "<div class=tag>recent purchases</div>",
                 _cards(recent, info, photos, set())]
        for name, (ids, path) in lists.items():
            ids = [int(a) for a in np.asarray(ids)[:cfg.k] if int(a) >= 0]
            hits = sum(a in bought_ids for a in ids)
            block.append(f"<div class=tag>{html.escape(name)}: answered by the "
                         f"<b>{html.escape(path)}</b> path; {hits} of {len(ids)} bought in "
                         f"the test week (green)</div>")
            block.append(_cards(ids, info, photos, bought_ids))
        out.append("<div class=customer>" + "".join(block) + "</div>")
        shown += 1
        if shown == cfg.customers:
            break
    return "".join(out)


def _recommendations(run: Run) -> dict[str, dict[int, tuple]]:
    """model label -> {customer_idx: (article ids, path)} from every complete
    ``recommendations/<model>/<variant>/scores``."""
    import pyarrow.parquet as pq

    out = {}
    for model in _subdirs(run, "recommendations", complete=False):
        for variant in _subdirs(run, f"recommendations/{model}"):
            rel = f"recommendations/{model}/{variant}/scores"
            if not run.exists(rel):
                continue
            t = pq.read_table(run.path(rel), filesystem=run.fs,
                              columns=["customer_idx", "article_id", "path"])
            out[f"{model}/{variant}"] = {
                c: (a, p) for c, a, p in zip(t.column("customer_idx").to_pylist(),
                                             t.column("article_id").to_pylist(),
                                             t.column("path").to_pylist())}
    return out


def _photo_paths(run: Run) -> dict[int, str]:
    from stylehub_ray.data.ingest import read_table

    if not run.is_complete("raw/images"):
        return {}
    t = read_table(run, "raw/images", ["article_id", "path", "status"])
    return {int(a): p for a, p, s in zip(*(t.column(x).to_pylist()
                                           for x in ("article_id", "path", "status")))
            if s == "present" and p}


def _cards(ids: list[int], info: dict, photos: dict, hits: set[int]) -> str:
    cards = []
    for a in ids:
        name, kind, colour = info.get(a, ("", "", ""))
        path = photos.get(a)
        src = thumbnail_data_uri(path) if path else None
        img = (f"<img src='{src}' alt='{a:010d}'>" if src
               else "<div class=noimg>no photo</div>")
        cards.append(f"<div class='card{' hit' if a in hits else ''}'>{img}"
                     f"<div>{a:010d}</div><div>{html.escape(str(name or ''))}</div>"
                     f"<div class=tag>{html.escape(str(kind or ''))} | "
                     f"{html.escape(str(colour or ''))}</div></div>")
    return f"<div class=cards>{''.join(cards)}</div>"


def thumbnail_data_uri(path: str, size: int = THUMB_PX) -> str | None:
    """A photo (local path or URI) as a small JPEG data URI; None when it cannot be read."""
    from PIL import Image

    from stylehub_ray.run import resolve_fs

    try:
        fs, p = resolve_fs(path)
        with fs.open_input_file(p) as f:
            img = Image.open(io.BytesIO(f.read()))
            img.thumbnail((size, size))
            buf = io.BytesIO()
            img.convert("RGB").save(buf, "JPEG", quality=80)
    except (OSError, ValueError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


# -- small helpers -------------------------------------------------------------------------
def _subdirs(run: Run, folder: str, complete: bool = True) -> list[str]:
    infos = run.fs.get_file_info(pafs.FileSelector(run.path(folder), allow_not_found=True))
    names = sorted(posixpath.basename(i.path) for i in infos
                   if i.type == pafs.FileType.Directory and not i.base_name.startswith("_"))
    return [n for n in names if not complete or run.is_complete(f"{folder}/{n}")]


def _files(run: Run, folder: str, suffix: str) -> list[str]:
    infos = run.fs.get_file_info(pafs.FileSelector(run.path(folder), recursive=True,
                                                   allow_not_found=True))
    return sorted(posixpath.relpath(i.path, run.root) for i in infos
                  if i.type == pafs.FileType.File and i.path.endswith(suffix)
                  and "/_" not in posixpath.relpath(i.path, run.root))


def _data_uri(run: Run, rel: str, mime: str) -> str:
    with run.fs.open_input_stream(run.path(rel)) as f:
        return f"data:{mime};base64," + base64.b64encode(f.read()).decode()


def _table(heads: list[str], rows: list[list], left: set[int] = frozenset(),
           raw: set[int] = frozenset(), wrap: set[int] = frozenset()) -> str:
    def cell(tag: str, i: int, v) -> str:
        cls = " class=w" if i in wrap and tag == "td" else " class=l" if i in left else ""
        text = str(v) if i in raw else html.escape(str(v))
        return f"<{tag}{cls}>{text}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(heads))
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(r)) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


__all__ = ["ReportConfig", "write_report", "build_html", "thumbnail_data_uri"]
