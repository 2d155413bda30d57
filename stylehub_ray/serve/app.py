"""The Ray Serve graph: a FastAPI ingress composing the retrieve-then-rank deployments.

```
HTTP -> Ingress (FastAPI, /docs)
          /recommend  -> CustomerEncoder -> Retriever + BoughtFilter -> Ranker (@serve.batch)
          /similar    -> SimilarItems        (contrastive model, else item embeddings)
          /similar-image -> ImageSearch      (image encoder + PCA + FAISS)
          /outfit-score  -> OutfitScorer     (FND-CL, cold starters through avg / w-avg)
```

Each deployment wraps one part of ``serve/core.py`` (no model math here) and the ingress calls
them through DeploymentHandles with ``await`` (never a blocking ``.result()``).
:func:`build_app` is the app builder ``serve_config.yaml`` names
(``import_path: stylehub_ray.serve.app:build_app``); its ``args`` are the ``serve`` stage's
settings (:class:`~stylehub_ray.serve.settings.ServeConfig`), so a ``serve deploy`` with a new
``run`` rolls every deployment over to the new run's models while the old replicas finish what
they hold. Bad input is a 4xx with a message; a part the runs do not have is a 503 naming what
to train.
"""

# No `from __future__ import annotations` here: FastAPI builds the OpenAPI schema in the
# Serve proxy, where string annotations (Annotated[..., Query(...)]) cannot be resolved.

import asyncio
import io
import logging
from dataclasses import asdict
from typing import Annotated

import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request
from ray import serve

from stylehub_ray.run import Run
from stylehub_ray.serve import core
from stylehub_ray.serve.schemas import (
    OutfitScoreRequest,
    OutfitScoreResponse,
    RecommendRequest,
    RecommendResponse,
    SimilarResponse,
    parse_article_id,
)
from stylehub_ray.serve.settings import ServeConfig, resolve_run_path

logger = logging.getLogger(__name__)

APP_NAME = "stylehub"
TRIVIAL_APP_NAME = "stylehub-trivial"
# Small CPU shares so the whole graph fits a laptop or a 4-CPU test head; serve_config.yaml
# sets the production values per deployment.
SMALL = {"num_cpus": 0.1}
# A new run (a redeploy with new args) replaces every replica: start each replacement before
# stopping the replica it replaces (Ray's default stops first, so a one-replica deployment
# has no replica for a moment and requests in that moment fail).
SURGE = 100


def _settings(settings: dict) -> ServeConfig:
    return ServeConfig(**settings)


class _PartHolder:
    """A deployment's part, or why it has none (then every call is a 503 with the reason)."""

    part_cls: type | None = None
    trivial_cls: type | None = None
    needs: str = "run"

    def _load(self, settings: dict) -> None:
        import torch

        torch.set_num_threads(1)  # replicas share the node's cores; one thread each
        cfg = _settings(settings)
        self.cfg, self.part, self.unavailable = cfg, None, None
        path = getattr(cfg, self.needs)
        run = Run(path) if path else None
        try:
            if cfg.trivial:
                if self.trivial_cls is None:
                    raise core.Unavailable("not part of the trivial graph")
                self.part = self.trivial_cls(run, cfg)
            elif run is None:
                raise core.Unavailable(f"no --{self.needs.replace('_', '-')} given")
            else:
                self.part = self.part_cls(run, cfg)
        except core.Unavailable as exc:
            self.unavailable = str(exc)

    def _get(self):
        if self.part is None:
            raise core.Unavailable(f"{type(self).__name__}: {self.unavailable}")
        return self.part

    def info(self) -> dict:
        if self.part is None:
            return {"part": type(self).__name__, "unavailable": self.unavailable,
                    **core.run_info(None)}
        return self.part.info()


@serve.deployment(ray_actor_options=SMALL, max_surge_percent=SURGE, max_ongoing_requests=64)
class CustomerEncoder(_PartHolder):
    """Feature lookup and preprocessing from the run, the customer tower; cold-start vectors."""

    part_cls, trivial_cls = core.EncoderPart, core.TrivialEncoderPart

    def __init__(self, settings: dict):
        self._load(settings)

    def encode(self, customer_id: str) -> dict:
        return self._get().encode(customer_id)

    def cold_vector(self, purchased_idx: list[int], strategy: str) -> np.ndarray:
        return self._get().cold_vector(purchased_idx, strategy)


@serve.deployment(ray_actor_options=SMALL, max_surge_percent=SURGE, max_ongoing_requests=64)
class Retriever(_PartHolder):
    """The FAISS index of the article-tower vectors, loaded once per replica."""

    part_cls, trivial_cls = core.RetrieverPart, core.TrivialRetrieverPart

    def __init__(self, settings: dict):
        self._load(settings)

    def retrieve(self, vector: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        return self._get().retrieve(vector, n)


@serve.deployment(ray_actor_options=SMALL, max_surge_percent=SURGE, max_ongoing_requests=64)
class Ranker(_PartHolder):
    """The ranking model; concurrent requests are scored together (@serve.batch)."""

    part_cls, trivial_cls = core.RankerPart, core.TrivialRankerPart

    def __init__(self, settings: dict):
        self._load(settings)
        self.rank.set_max_batch_size(self.cfg.batch_max_size)
        self.rank.set_batch_wait_timeout_s(self.cfg.batch_wait_timeout_s)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def rank(self, requests: list[tuple[int, np.ndarray]]) -> list[np.ndarray]:
        return self._get().rank_many(requests)


@serve.deployment(ray_actor_options=SMALL, max_surge_percent=SURGE, max_ongoing_requests=64)
class BoughtFilter(_PartHolder):
    """Purchase history from the run's Parquet (what to drop) and the popularity fallback."""

    part_cls, trivial_cls = core.HistoryPart, core.TrivialHistoryPart

    def __init__(self, settings: dict):
        self._load(settings)

    def bought(self, customer_idx: int | None) -> np.ndarray:
        return self._get().bought(customer_idx)

    def popular(self, k: int) -> np.ndarray:
        return self._get().popular(k)


@serve.deployment(ray_actor_options=SMALL, max_surge_percent=SURGE, max_ongoing_requests=32)
class SimilarItems(_PartHolder):
    part_cls = core.SimilarPart

    def __init__(self, settings: dict):
        self._load(settings)

    def similar(self, article_idx: int, k: int):
        return self._get().similar(article_idx, k)


@serve.deployment(ray_actor_options=SMALL, max_surge_percent=SURGE, max_ongoing_requests=8)
class ImageSearch(_PartHolder):
    part_cls = core.ImageSearchPart

    def __init__(self, settings: dict):
        self._load(settings)

    def similar(self, data: bytes, k: int):
        return self._get().similar(data, k)


@serve.deployment(ray_actor_options=SMALL, max_surge_percent=SURGE, max_ongoing_requests=16)
class OutfitScorer(_PartHolder):
    part_cls, needs = core.OutfitPart, "outfits_run"

    def __init__(self, settings: dict):
        self._load(settings)

    def score(self, request: dict) -> dict:
        return self._get().score(**request)


class HandleParts:
    """The flow's view of the parts as deployment handles (``await handle.m.remote()``)."""

    def __init__(self, encoder, retriever, ranker, history):
        self.encoder, self.retriever, self.ranker, self.history = (encoder, retriever, ranker,
                                                                   history)

    async def encode(self, customer_id):
        return await self.encoder.encode.remote(customer_id)

    async def cold_vector(self, purchased_idx, strategy):
        return await self.encoder.cold_vector.remote(purchased_idx, strategy)

    async def retrieve(self, vector, n):
        return await self.retriever.retrieve.remote(vector, n)

    async def rank(self, customer_idx, candidates):
        return await self.ranker.rank.remote((customer_idx, candidates))

    async def bought(self, customer_idx):
        return await self.history.bought.remote(customer_idx)

    async def popular(self, k):
        return await self.history.popular.remote(k)


api = FastAPI(
    title="StyleHub-Ray",
    description="Fashion recommendations: two-tower retrieve-then-rank, similar items, "
                "photo search and FND-CL outfit scores.",
    version="0.1.0",
)


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"{'.'.join(str(x) for x in first['loc'])}: {first['msg']}"
    return str(exc)


def _http_error(exc: Exception) -> HTTPException:
    if isinstance(exc, core.BadInput):
        return HTTPException(exc.status, exc.message)
    return HTTPException(503, str(exc))


@serve.deployment(ray_actor_options=SMALL, max_surge_percent=SURGE, max_ongoing_requests=100)
@serve.ingress(api)
class Ingress:
    def __init__(self, encoder, retriever, ranker, history, similar, images, outfits,
                 settings: dict):
        self.cfg = _settings(settings)
        self.parts = HandleParts(encoder, retriever, ranker, history)
        self.similar_h, self.images_h, self.outfits_h = similar, images, outfits
        self.catalog, self.catalog_error = None, "no --run given"
        if self.cfg.run:
            try:
                self.catalog, self.catalog_error = core.Catalog.load(Run(self.cfg.run)), None
            except FileNotFoundError as exc:
                self.catalog_error = str(exc)

    def _catalog(self) -> core.Catalog:
        if self.catalog is None:
            raise HTTPException(503, f"no article catalogue: {self.catalog_error}")
        return self.catalog

    @api.get("/healthz")
    async def healthz(self) -> dict:
        """Every deployment's run, model and memory (a 503 part says what it lacks)."""
        handles = {"encoder": self.parts.encoder, "retriever": self.parts.retriever,
                   "ranker": self.parts.ranker, "history": self.parts.history,
                   "similar": self.similar_h, "image": self.images_h,
                   "outfits": self.outfits_h}
        names = [n for n, h in handles.items() if h is not None]
        infos = await asyncio.gather(*(handles[n].info.remote() for n in names))
        return {"status": "ok", "run": self.cfg.run or None,
                "outfits_run": self.cfg.outfits_run or None, "trivial": self.cfg.trivial,
                "ingress": core.run_info(None), "parts": dict(zip(names, infos))}

    @api.get("/recommend/{customer_id}", response_model=RecommendResponse)
    async def recommend(
        self,
        customer_id: str,
        k: int = Query(12, ge=1, le=100, description="how many articles"),
        purchased: Annotated[list[str] | None, Query(
            description="article ids the customer bought (repeat, or comma-separated): "
                        "the cold-start path")] = None,
        cold_start: str | None = Query(None, description="avg | w-avg"),
        drop_bought: bool = Query(True, description="drop articles bought before"),
    ) -> dict:
        """Top-k articles for a customer: retrieve, drop bought, rank (or a fallback)."""
        items = [p for part in purchased or [] for p in part.split(",") if p.strip()]
        try:
            body = RecommendRequest(customer_id=customer_id, k=k, purchased=items,
                                    cold_start=cold_start, drop_bought=drop_bought)
        except ValueError as exc:
            raise HTTPException(422, _first_error(exc)) from None
        return await self._recommend(body)

    @api.post("/recommend", response_model=RecommendResponse)
    async def recommend_post(self, body: RecommendRequest) -> dict:
        """The same, with the request as JSON."""
        return await self._recommend(body)

    async def _recommend(self, body: RecommendRequest) -> dict:
        catalog = self._catalog()
        strategy = body.cold_start or self.cfg.cold_start
        if strategy not in ("avg", "w-avg"):
            raise HTTPException(422, f"cold_start: {strategy!r}; expected avg or w-avg")
        if len(body.purchased) > self.cfg.max_purchases:
            raise HTTPException(422, f"purchased: {len(body.purchased)} articles; at most "
                                     f"{self.cfg.max_purchases}")
        try:
            purchased = catalog.idx_of([parse_article_id(p) for p in body.purchased],
                                       "purchased")
            rec = await core.recommend_flow(self.parts, body.customer_id, body.k, purchased,
                                            strategy, body.drop_bought, self.cfg.candidates)
        except (core.BadInput, core.Unavailable) as exc:
            raise _http_error(exc) from None
        return {"customer_id": body.customer_id, "k": body.k, "path": rec.path,
                "known_customer": rec.known_customer, "ranked_by": rec.ranked_by,
                "items": catalog.describe(rec.article_idx, rec.scores)}

    @api.get("/similar/{article_id}", response_model=SimilarResponse)
    async def similar(self, article_id: str, k: int = Query(12, ge=1, le=100)) -> dict:
        """The k articles most similar to one article."""
        catalog = self._catalog()
        try:
            idx = catalog.idx_of([parse_article_id(article_id)])[0]
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        except core.BadInput as exc:
            raise _http_error(exc) from None
        if self.similar_h is None:
            raise HTTPException(503, "similar items are not part of this graph")
        try:
            got, scores, source = await self.similar_h.similar.remote(int(idx), k)
        except (core.BadInput, core.Unavailable) as exc:
            raise _http_error(exc) from None
        return {"article_id": f"{int(parse_article_id(article_id)):010d}", "k": k,
                "source": source, "items": catalog.describe(got, scores)}

    @api.post("/similar-image", response_model=SimilarResponse,
              openapi_extra={"requestBody": {"required": True, "content": {
                  "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                  "image/png": {"schema": {"type": "string", "format": "binary"}}}}})
    async def similar_image(self, request: Request, k: int = Query(12, ge=1, le=100)) -> dict:
        """Catalogue articles whose photos look like the uploaded one (the raw image bytes as
        the body, ``Content-Type: image/jpeg`` or ``image/png``)."""
        catalog = self._catalog()
        data = await self._read_upload(request)
        if self.images_h is None:
            raise HTTPException(503, "photo search is not part of this graph")
        try:
            got, scores, source = await self.images_h.similar.remote(data, k)
        except (core.BadInput, core.Unavailable) as exc:
            raise _http_error(exc) from None
        return {"article_id": None, "k": k, "source": source,
                "items": catalog.describe(got, scores)}

    async def _read_upload(self, request: Request) -> bytes:
        limit = self.cfg.max_upload_bytes
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/"):
            raise HTTPException(415, "send the photo's bytes as the request body "
                                     "(Content-Type: image/jpeg or image/png), not a form")
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise HTTPException(413, f"upload of {int(declared):,} bytes is over the "
                                     f"{limit:,}-byte limit")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPException(413, f"upload is over the {limit:,}-byte limit")
            chunks.append(chunk)
        data = b"".join(chunks)
        if not data:
            raise HTTPException(422, "empty body: send the photo's bytes")
        try:  # a cheap header check here; the full decode runs in ImageSearch
            from PIL import Image

            with Image.open(io.BytesIO(data)) as im:
                im.verify()
        except Exception as exc:  # noqa: BLE001 - any Pillow failure: not an image
            raise HTTPException(415, f"upload is not an image Pillow can read "
                                     f"({type(exc).__name__})") from None
        return data

    @api.post("/outfit-score", response_model=OutfitScoreResponse)
    async def outfit_score(self, body: OutfitScoreRequest) -> dict:
        """FND-CL preference of a user (or a new user from liked outfits) for outfits."""
        if len(body.outfits) + len(body.liked) > self.cfg.max_outfits:
            raise HTTPException(422, f"at most {self.cfg.max_outfits} outfits per request")
        if self.outfits_h is None:
            raise HTTPException(503, "outfit scores are not part of this graph")
        request = {"user": body.user, "set_name": body.set_name,
                   "outfits": [o.as_dict() for o in body.outfits],
                   "liked": [o.as_dict() for o in body.liked], "strategy": body.cold_start}
        try:
            return await self.outfits_h.score.remote(request)
        except (core.BadInput, core.Unavailable) as exc:
            raise _http_error(exc) from None


def settings_from(args: dict) -> ServeConfig:
    """The ``serve`` settings from a builder's ``args`` (a config file's ``args:`` or the
    CLI's), validated, with local run paths made absolute for the replicas."""
    from stylehub_ray import config as C

    cfg = C.load_config(ServeConfig, None, None, **dict(args or {}))
    cfg.run, cfg.outfits_run = resolve_run_path(cfg.run), resolve_run_path(cfg.outfits_run)
    return cfg


def build_app(args: dict):
    """The serving graph as a Serve application (``serve_config.yaml``'s import path)."""
    cfg = settings_from(args)
    s = asdict(cfg)
    extras = [None, None, None] if cfg.trivial else [
        SimilarItems.bind(s), ImageSearch.bind(s), OutfitScorer.bind(s)]
    return Ingress.bind(CustomerEncoder.bind(s), Retriever.bind(s), Ranker.bind(s),
                        BoughtFilter.bind(s), *extras, s)


def build_trivial_app(args: dict):
    """The same graph with every model part answering at once (the benchmark's baseline)."""
    return build_app({**dict(args or {}), "trivial": True})


def start_http(host: str, port: int) -> None:
    """Start Serve's HTTP proxy on ``host:port`` (fixed for the cluster's life once started)."""
    serve.start(http_options={"host": host, "port": port})


def serve_forever(cfg: ServeConfig) -> None:
    """`stylehub serve`: run the graph on the local (or ``RAY_ADDRESS``) Ray instance until
    interrupted, then delete the app."""
    import time

    from stylehub_ray.ray_utils import ensure_ray

    ensure_ray()
    start_http(cfg.host, cfg.port)
    serve.run(build_app(asdict(cfg)), name=APP_NAME, route_prefix="/")
    logger.info(f"serving {cfg.run or '-'} (outfits: {cfg.outfits_run or '-'}) on "
                f"http://{cfg.host}:{cfg.port}/ (OpenAPI at /docs); Ctrl-C stops")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        logger.info("stopping")
    finally:
        serve.delete(APP_NAME)
