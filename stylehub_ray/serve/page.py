"""The browser demo at ``/``: a plain HTML page and a little JavaScript (``static/``), served by
the ingress and kept out of the OpenAPI schema. The page calls the API itself (``/recommend``,
``/similar``, ``/similar-image``, ``/outfit-score``) and a few helper routes here under
``/ui/``: customers to try, a customer's recent purchases, articles and outfit items to pick,
and the product photos, read from the paths ingest recorded (a local path or a URI).
"""

from __future__ import annotations

import functools
import html
import random
from pathlib import Path

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from stylehub_ray.run import Run, resolve_fs

STATIC = Path(__file__).with_name("static")
RECENT = 6


class PageData:
    """What the page shows besides the API's answers, loaded from the runs on first use."""

    def __init__(self, run: str, outfits_run: str):
        self.run_uri, self.outfits_uri = run, outfits_run

    @functools.cached_property
    def run(self) -> Run:
        if not self.run_uri:
            raise HTTPException(404, "no H&M run is served here")
        return Run(self.run_uri)

    @functools.cached_property
    def photos(self) -> dict[int, str]:
        """article_id -> photo path (the ones ingest found)."""
        from stylehub_ray.data.ingest import read_table

        t = read_table(self.run, "raw/images", ["article_id", "path", "status"])
        return {int(a): p for a, p, s in zip(*(t.column(x).to_pylist()
                                               for x in ("article_id", "path", "status")))
                if s == "present" and p}

    @functools.cached_property
    def customers(self) -> list[str]:
        """Customers worth showing: most test-week purchases first (see serve.demo)."""
        from stylehub_ray.serve.demo import demo_customers

        return [c for c, _ in demo_customers(self.run, limit=40)]

    @functools.cached_property
    def _history(self):
        """(customer_idx sorted, article_id in the same order, newest first per customer) and
        the customer map."""
        import pyarrow.compute as pc

        from stylehub_ray.data.ingest import read_table
        from stylehub_ray.serve.core import CustomerMap

        tx = read_table(self.run, "raw/transactions", ["t_dat", "customer_idx", "article_id"])
        tx = tx.take(pc.sort_indices(tx, [("customer_idx", "ascending"),
                                          ("t_dat", "descending")]))
        return (tx.column("customer_idx").to_numpy(), tx.column("article_id").to_numpy(),
                CustomerMap.load(self.run))

    @functools.cached_property
    def names(self) -> dict[int, dict]:
        """article_id -> the attributes a card shows."""
        from stylehub_ray.data.ingest import read_table

        cols = ["prod_name", "product_type_name", "colour_group_name"]
        t = read_table(self.run, "raw/articles", ["article_id", *cols])
        values = [t.column(c).to_pylist() for c in cols]
        return {int(a): dict(zip(cols, v)) for a, *v in zip(t.column("article_id").to_pylist(),
                                                             *values)}

    def describe(self, ids: list[str]) -> list[dict]:
        return [{"article_id": a, **self.names.get(int(a), {})} for a in ids]

    def recent(self, customer_id: str, n: int = RECENT) -> list[str]:
        cust, art, cmap = self._history
        idx = cmap.lookup(customer_id)
        if idx is None:
            return []
        lo, hi = np.searchsorted(cust, idx, "left"), np.searchsorted(cust, idx, "right")
        return [f"{a:010d}" for a in dict.fromkeys(art[lo:hi].tolist())][:n]

    def sample_articles(self, n: int, seed: int | None) -> list[str]:
        ids = sorted(self.photos)
        rng = random.Random(seed)
        return [f"{a:010d}" for a in rng.sample(ids, min(n, len(ids)))]

    @functools.cached_property
    def items(self):
        """The outfits run's items with photos: {(set, category, item_id): path}, and the
        model's set."""
        from stylehub_ray.data.ingest import read_table

        if not self.outfits_uri:
            raise HTTPException(404, "no outfits run is served here")
        run = Run(self.outfits_uri)
        t = read_table(run, "raw/outfit_items", ["set_name", "category", "item_id", "path",
                                                 "status"])
        out = {}
        for s, c, i, p, st in zip(*(t.column(x).to_pylist() for x in
                                    ("set_name", "category", "item_id", "path", "status"))):
            if st == "present" and p:
                out[(s, c, int(i))] = p
        return out

    def outfit_choices(self, set_name: str, n: int, seed: int | None) -> dict:
        rng = random.Random(seed)
        per = {}
        for cat in ("top", "bottom", "shoe"):
            ids = sorted(i for (s, c, i) in self.items if s == set_name and c == cat)
            per[cat] = rng.sample(ids, min(n, len(ids)))
        return per


def read_photo(path: str) -> tuple[bytes, str]:
    fs, p = resolve_fs(path)
    try:
        with fs.open_input_file(p) as f:
            data = f.read()
    except (OSError, FileNotFoundError) as exc:
        raise HTTPException(404, f"photo not readable: {path} ({type(exc).__name__})") from None
    mime = "image/png" if path.lower().endswith(".png") else "image/jpeg"
    return data, mime


def _photo_response(path: str) -> Response:
    data, mime = read_photo(path)
    return Response(data, media_type=mime, headers={"Cache-Control": "max-age=3600"})


def add_page(app: FastAPI, run: str, outfits_run: str) -> None:
    """The page and its helper routes on ``app``, none of them in the schema."""
    data = PageData(run, outfits_run)

    def route(path: str, fn, **kw) -> None:
        app.add_api_route(path, fn, methods=["GET"], include_in_schema=False, **kw)

    def page(request: Request) -> HTMLResponse:
        # Links carry the app's route prefix, so the page works under any prefix.
        base = html.escape(request.scope.get("root_path", "").rstrip("/"), quote=True)
        return HTMLResponse((STATIC / "demo.html").read_text().replace("{{BASE}}", base))

    def static(name: str) -> FileResponse:
        if name not in ("demo.js", "demo.css"):
            raise HTTPException(404, f"no such file: {name}")
        kind = "text/javascript" if name.endswith(".js") else "text/css"
        return FileResponse(STATIC / name, media_type=kind)

    def article_photo(article_id: str) -> Response:
        if not article_id.isdigit():
            raise HTTPException(404, "article ids are digits")
        path = data.photos.get(int(article_id))
        if not path:
            raise HTTPException(404, f"article {article_id} has no photo")
        return _photo_response(path)

    def item_photo(set_name: str, category: str, item_id: int) -> Response:
        path = data.items.get((set_name, category, item_id))
        if not path:
            raise HTTPException(404, f"item {set_name}/{category}/{item_id} has no photo")
        return _photo_response(path)

    def customers() -> dict:
        return {"customers": data.customers}

    def history(customer_id: str) -> dict:
        return {"customer_id": customer_id, "recent": data.describe(data.recent(customer_id))}

    def articles(n: int = 12, seed: int | None = None) -> dict:
        return {"articles": data.describe(data.sample_articles(min(max(n, 1), 48), seed))}

    def outfit_items(set_name: str = "", n: int = 8, seed: int | None = None) -> dict:
        sets = sorted({s for s, _, _ in data.items})
        if not sets:
            raise HTTPException(404, "the outfits run has no item photos")
        name = set_name if set_name in sets else sets[0]
        return {"set_name": name, "sets": sets,
                "items": data.outfit_choices(name, min(max(n, 1), 24), seed)}

    route("/", page)
    route("/ui/static/{name}", static)
    route("/ui/photo/article/{article_id}", article_photo)
    route("/ui/photo/item/{set_name}/{category}/{item_id}", item_photo)
    route("/ui/customers", customers)
    route("/ui/history/{customer_id}", history)
    route("/ui/articles", articles)
    route("/ui/outfit-items", outfit_items)


__all__ = ["add_page", "PageData", "STATIC"]
