"""The Ray Serve graph: a FastAPI ingress and the deployments behind it.

```
HTTP -> Ingress (FastAPI, /docs)
          /recommend  recommend_layout "ingress":  in the ingress replica      (no hop)
                                       "together": -> TwoTower                 (one hop)
                                       "split":    -> Retriever -> Ranker      (two hops)
          /similar       -> SimilarItems   (contrastive model, else item embeddings)
          /similar-image -> ImageSearch    (image encoder + PCA + FAISS)
          /outfit-score  -> OutfitScorer   (FND-CL, cold starters through avg / w-avg)
```

Each handle hop costs a few milliseconds (more than the models' work on /recommend), so the
cheap parts of /recommend (customer look-up and vector, the bought filter, popularity) always
run beside retrieval: in ``split`` the Retriever holds them and the Ranker (a GPU replica on a
cluster) only ranks. Every /recommend part takes batches (``@serve.batch``). Each deployment
wraps parts of ``serve/core.py`` (no model math here); the ingress awaits handles (never a
blocking ``.result()``).

The contract: every parameter's pattern and bounds are in the schema (``serve/schemas.py``),
every status code a route can answer is listed with its body, every error has one body
(:class:`~stylehub_ray.serve.schemas.ErrorResponse`) carrying the request id that Serve sends
as ``X-Request-ID`` and writes in its logs, and no traceback leaves the service (it is
logged under that request id). An endpoint the runs cannot serve (no outfit model, say) is
left out of the schema and answers 404 saying what to train.

:func:`build_app` is the app builder ``serve_config.yaml`` names
(``import_path: stylehub_ray.serve.app:build_app``); its ``args`` are the ``serve`` stage's
settings (:class:`~stylehub_ray.serve.settings.ServeConfig`), so a ``serve deploy`` with a new
``run`` rolls every deployment over to the new run's models while the old replicas finish what
they hold.
"""

# No `from __future__ import annotations` here: FastAPI builds the OpenAPI schema in the
# Serve proxy, where string annotations (Annotated[..., Query(...)]) cannot be resolved.

import asyncio
import io
import logging
from dataclasses import asdict
from http import HTTPStatus
from typing import Annotated

import numpy as np
from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import StringConstraints
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from stylehub_ray.run import Run
from stylehub_ray.serve import core
from stylehub_ray.serve.page import add_page
from stylehub_ray.serve.schemas import (
    ARTICLE_ID_PATTERN,
    ARTICLE_IDS_PATTERN,
    CUSTOMER_ID_PATTERN,
    MAX_K,
    MAX_PURCHASES,
    REQUEST_ID_HEADER,
    ColdStart,
    ErrorResponse,
    OutfitScoreRequest,
    OutfitScoreResponse,
    RecommendRequest,
    RecommendResponse,
    SimilarResponse,
    format_article_id,
    parse_article_id,
)
from stylehub_ray.serve.settings import ServeConfig, resolve_run_path

logger = logging.getLogger(__name__)
# Serve's own logger: in a replica its lines carry the request id (Serve's log format), so a
# client's X-Request-ID finds them.
request_log = logging.getLogger("ray.serve")

APP_NAME = "stylehub"
# Small CPU shares so the whole graph fits a laptop or a 4-CPU test head; serve_config.yaml
# sets the production values per deployment.
SMALL = {"num_cpus": 0.1}
# A new run (a redeploy with new args) replaces every replica: start each replacement before
# stopping the replica it replaces (Ray's default stops first, so a one-replica deployment
# has no replica for a moment and requests in that moment fail).
SURGE = 100


ArticleIds = Annotated[str, StringConstraints(pattern=ARTICLE_IDS_PATTERN)]


def _settings(settings: dict) -> ServeConfig:
    return ServeConfig(**settings)


def _limit_threads() -> None:
    import torch

    torch.set_num_threads(1)  # replicas share the node's cores; one thread each


class _PartHolder:
    """A deployment's part, or why it has none (then every call is a 503 with the reason)."""

    part_cls: type | None = None
    needs: str = "run"

    def _load(self, settings: dict) -> None:
        _limit_threads()
        cfg = _settings(settings)
        self.cfg, self.part, self.unavailable = cfg, None, None
        path = getattr(cfg, self.needs)
        try:
            if not path:
                raise core.Unavailable(f"no --{self.needs.replace('_', '-')} given")
            self.part = self.part_cls(Run(path), cfg)
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

    def _batching(self, method) -> None:
        method.set_max_batch_size(self.cfg.batch_max_size)
        method.set_batch_wait_timeout_s(self.cfg.batch_wait_timeout_s)


# -- /recommend's deployments ---------------------------------------------------------------
@serve.deployment(ray_actor_options=SMALL, max_surge_percent=SURGE, max_ongoing_requests=64)
class TwoTower(_PartHolder):
    """Retrieval and ranking in one replica (``recommend_layout: together``)."""

    part_cls = core.TwoTowerPart

    def __init__(self, settings: dict):
        self._load(settings)
        self._batching(self.recommend)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0)
    async def recommend(self, queries: list[core.RecommendQuery]) -> list[core.Recommendation]:
        return self._get().recommend_many(queries)


@serve.deployment(ray_actor_options=SMALL, max_surge_percent=SURGE, max_ongoing_requests=64)
class Retriever(_PartHolder):
    """Customer look-up and vector, FAISS retrieval, bought filter, cold start, popularity
    (``recommend_layout: split``)."""

    part_cls = core.CandidatePart

    def __init__(self, settings: dict):
        self._load(settings)
        self._batching(self.candidates)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0)
    async def candidates(self, queries: list[core.RecommendQuery]
                         ) -> list[core.Recommendation]:
        return self._get().candidates_many(queries)


@serve.deployment(ray_actor_options=SMALL, max_surge_percent=SURGE, max_ongoing_requests=64)
class Ranker(_PartHolder):
    """The ranking model (``recommend_layout: split``); concurrent requests scored together."""

    part_cls = core.RankerPart

    def __init__(self, settings: dict):
        self._load(settings)
        self._batching(self.rank)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0)
    async def rank(self, requests: list[tuple[int, np.ndarray, np.ndarray]]
                   ) -> list[np.ndarray]:
        return self._get().rank_many(requests)


# -- the other endpoints' deployments -------------------------------------------------------
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


# -- the recommend flow over each layout ----------------------------------------------------
class LocalRecommender:
    """``ingress``: the part in this replica, batched across concurrent requests."""

    def __init__(self, part: core.TwoTowerPart, cfg: ServeConfig):
        self.part = part
        self.batch.set_max_batch_size(cfg.batch_max_size)
        self.batch.set_batch_wait_timeout_s(cfg.batch_wait_timeout_s)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0)
    async def batch(self, queries: list[core.RecommendQuery]) -> list[core.Recommendation]:
        return self.part.recommend_many(queries)

    async def recommend(self, query: core.RecommendQuery) -> core.Recommendation:
        return await self.batch(query)

    def info(self) -> dict:
        return self.part.info()


class TogetherRecommender:
    """``together``: one hop to the TwoTower deployment."""

    def __init__(self, two_tower):
        self.two_tower = two_tower

    async def recommend(self, query: core.RecommendQuery) -> core.Recommendation:
        return await self.two_tower.recommend.remote(query)

    async def info(self) -> dict:
        return await self.two_tower.info.remote()


class SplitRecommender:
    """``split``: the Retriever's candidates, then the Ranker (two hops)."""

    def __init__(self, retriever, ranker):
        self.retriever, self.ranker = retriever, ranker

    async def recommend(self, query: core.RecommendQuery) -> core.Recommendation:
        cand = await self.retriever.candidates.remote(query)
        if cand.ranked_by != "":
            return cand
        scores = await self.ranker.rank.remote((cand.customer_idx, cand.article_idx,
                                                cand.scores))
        return core.RankerPart.finish(cand, scores, query.k)

    async def info(self) -> dict:
        a, b = await asyncio.gather(self.retriever.info.remote(), self.ranker.info.remote())
        return {"retriever": a, "ranker": b}


# -- errors: one body, the request id, no traceback -----------------------------------------
def request_id_of(request: Request) -> str:
    """The id Serve's proxy gave the request (its ``X-Request-ID`` response header)."""
    rid = request.headers.get("x-request-id")
    if rid:
        return rid
    try:
        return serve.context._get_serve_request_context().request_id or "-"
    except Exception:  # noqa: BLE001 - outside a replica (a unit test of the app)
        return "-"


def error_response(request: Request, status: int, detail: str, fields: list | None = None,
                   headers: dict | None = None) -> JSONResponse:
    try:
        name = HTTPStatus(status).phrase
    except ValueError:
        name = "Error"
    body = ErrorResponse(status=status, error=name, detail=detail,
                         request_id=request_id_of(request), fields=fields or [])
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _field_errors(errors) -> list[dict]:
    return [{"loc": [str(x) if not isinstance(x, int) else x for x in e.get("loc", ())],
             "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))} for e in errors]


def _first(fields: list[dict]) -> str:
    if not fields:
        return "invalid request"
    f = fields[0]
    more = f" (and {len(fields) - 1} more)" if len(fields) > 1 else ""
    return f"{'.'.join(str(x) for x in f['loc'])}: {f['msg']}{more}"


class CatchAll:
    """ASGI middleware: an exception that escapes a route becomes a 500 with the error body;
    its traceback goes to the replica's log under the request id, never to the client."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:  # noqa: BLE001 - the last line of defence: log, answer 500
            request = Request(scope)
            rid = request_id_of(request)
            request_log.exception(f"request {rid}: {request.method} {request.url.path} failed")
            if not started:
                response = error_response(request, 500, f"internal error; the server's logs "
                                                        f"have it under request id {rid}")
                await response(scope, receive, send)


def install_errors(app: FastAPI) -> None:
    """One error body for everything ``app`` answers: HTTP errors, validation errors (422,
    with each field) and, through :class:`CatchAll`, any exception (500, logged)."""

    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code >= 500:
            request_log.warning(f"request {request_id_of(request)}: {exc.status_code} "
                                f"{exc.detail}")
        return error_response(request, exc.status_code, str(exc.detail), headers=exc.headers)

    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = _field_errors(exc.errors())
        return error_response(request, 422, _first(fields), fields)

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_middleware(CatchAll)


def with_request_id_header(app: FastAPI) -> None:
    """``app.openapi`` that lists the X-Request-ID header on every response."""
    plain = app.openapi

    def schema() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        spec = plain()
        header = {REQUEST_ID_HEADER: {"description": "the request's id, as the server's logs "
                                                     "show it", "schema": {"type": "string"}}}
        for ops in spec.get("paths", {}).values():
            for op in ops.values():
                for response in op.get("responses", {}).values():
                    response.setdefault("headers", {}).update(header)
        return spec

    app.openapi = schema


def _errors(*codes: int) -> dict:
    """OpenAPI ``responses`` for the error codes a route answers (all one body)."""
    text = {400: "the body is not JSON (undecodable bytes)", 404: "unknown id",
            413: "upload over the limit", 415: "not an image",
            422: "a parameter or the body breaks the schema's rules",
            500: "internal error (logged under the request id)",
            503: "a model the runs lack, or no replica ready (retry later)"}
    return {c: {"model": ErrorResponse, "description": text[c]} for c in codes}


COMMON = (422, 500, 503)
# Exceptions of a handle call that mean "not now": a 503 with the error body (Serve's own
# handler for them answers plain text).
_BUSY = (serve.exceptions.BackPressureError, serve.exceptions.DeploymentUnavailableError)


def _http_error_of(exc: Exception) -> HTTPException:
    """A part's BadInput (4xx) or Unavailable (503), raised here or in another replica (then
    Ray wraps it; its ``cause`` is the part's own exception, without Ray's traceback), or a
    busy deployment (503)."""
    cause = getattr(exc, "cause", None) or exc
    if isinstance(cause, core.BadInput):
        return HTTPException(cause.status, cause.message)
    if isinstance(exc, _BUSY):
        return HTTPException(503, f"busy, retry later ({type(exc).__name__})")
    return HTTPException(503, str(cause))


PART_ERRORS = (core.BadInput, core.Unavailable, *_BUSY)


@serve.deployment(ray_actor_options=SMALL, max_surge_percent=SURGE, max_ongoing_requests=100)
@serve.ingress()
class Ingress:
    """The FastAPI ingress. Its app is built per replica (:meth:`__serve_build_asgi_app__`)
    with the routes of the endpoints these runs serve, so the schema lists exactly those;
    the others answer 404 saying what to train."""

    def __init__(self, recommender, similar, images, outfits, settings: dict, served: dict):
        _limit_threads()
        self.cfg = _settings(settings)
        self.served = served  # endpoint group -> None, or why these runs cannot serve it
        self.similar_h, self.images_h, self.outfits_h = similar, images, outfits
        self.catalog, self.catalog_error = None, "no --run given"
        if self.cfg.run and not all(served[g] for g in ("recommend", "similar",
                                                         "similar-image")):
            try:
                self.catalog, self.catalog_error = core.Catalog.load(Run(self.cfg.run)), None
            except FileNotFoundError as exc:
                self.catalog_error = str(exc)
        self.recommender, self.recommender_error = None, served["recommend"]
        layout = self.cfg.recommend_layout
        if served["recommend"]:
            pass  # not served: the route answers 404 naming why
        elif layout == "ingress":
            try:
                self.recommender = LocalRecommender(
                    core.TwoTowerPart(Run(self.cfg.run), self.cfg), self.cfg)
            except core.Unavailable as exc:
                self.recommender_error = str(exc)
        elif layout == "together":
            self.recommender = TogetherRecommender(recommender["two_tower"])
        else:
            self.recommender = SplitRecommender(recommender["retriever"],
                                                recommender["ranker"])

    def __serve_build_asgi_app__(self) -> FastAPI:
        app = FastAPI(
            title="StyleHub-Ray",
            description="Fashion recommendations: two-tower retrieve-then-rank, similar "
                        "items, photo search and FND-CL outfit scores. Every response "
                        "carries an X-Request-ID header; every error has the ErrorResponse "
                        "body.",
            version="0.2.0")
        install_errors(app)
        add_page(app, self.cfg.run, self.cfg.outfits_run)  # the browser demo at /
        app.add_api_route("/healthz", self.healthz, methods=["GET"])
        routes = {
            "recommend": [
                ("/recommend/{customer_id}", self.recommend, "GET", RecommendResponse,
                 _errors(404, *COMMON), None),
                ("/recommend", self.recommend_post, "POST", RecommendResponse,
                 _errors(400, 404, *COMMON), None)],
            "similar": [("/similar/{article_id}", self.similar, "GET", SimilarResponse,
                         _errors(404, *COMMON), None)],
            "similar-image": [("/similar-image", self.similar_image, "POST", SimilarResponse,
                               _errors(413, 415, *COMMON), {"requestBody": {
                                   "required": True, "content": {
                                       t: {"schema": {"type": "string", "format": "binary"}}
                                       for t in ("image/jpeg", "image/png")}}})],
            "outfit-score": [("/outfit-score", self.outfit_score, "POST", OutfitScoreResponse,
                              _errors(400, 404, *COMMON), None)],
        }
        for group, entries in routes.items():
            for path, endpoint, method, model, responses, extra in entries:
                if self.served[group]:
                    app.add_api_route(path, self._not_served(group), methods=[method],
                                      include_in_schema=False)
                else:
                    app.add_api_route(path, endpoint, methods=[method], response_model=model,
                                      responses=responses, openapi_extra=extra)
        with_request_id_header(app)
        return app

    def _not_served(self, group: str):
        async def not_served() -> None:
            raise HTTPException(404, f"not served here: {self.served[group]}")

        return not_served

    def _catalog(self) -> core.Catalog:
        if self.catalog is None:
            raise HTTPException(503, f"no article catalogue: {self.catalog_error}")
        return self.catalog

    async def healthz(self) -> dict:
        """Every deployment's run, model and memory (a part that cannot answer says why)."""
        handles = {"similar": self.similar_h, "image": self.images_h,
                   "outfits": self.outfits_h}
        infos = await asyncio.gather(*(h.info.remote() for h in handles.values()))
        parts = dict(zip(handles, infos))
        if self.recommender is not None:
            info = self.recommender.info()
            parts["recommend"] = await info if asyncio.iscoroutine(info) else info
        else:
            parts["recommend"] = {"unavailable": self.recommender_error}
        return {"status": "ok", "run": self.cfg.run or None,
                "outfits_run": self.cfg.outfits_run or None,
                "recommend_layout": self.cfg.recommend_layout,
                "served": {g: why is None for g, why in self.served.items()},
                "ingress": core.run_info(None), "parts": parts}

    async def recommend(
        self,
        customer_id: Annotated[str, Path(pattern=CUSTOMER_ID_PATTERN,
                                         description="64 lower-case hex characters")],
        k: Annotated[int, Query(ge=1, le=MAX_K, description="how many articles")] = 12,
        purchased: Annotated[list[ArticleIds], Query(
            max_length=MAX_PURCHASES,
            description="article ids the customer bought (repeat, or comma-separated): "
                        "the cold-start path")] = [],  # noqa: B006 - FastAPI copies it
        cold_start: Annotated[ColdStart, Query(description="default: the server's")] = None,
        drop_bought: Annotated[bool | None, Query(
            description="drop articles bought before (default: the model's choice, made on "
                        "val)")] = None,
    ) -> dict:
        """Top-k articles for a customer: retrieve, drop bought, rank (or a fallback)."""
        items = [p for part in purchased for p in part.split(",")]
        return await self._recommend(customer_id, k, items, cold_start, drop_bought)

    async def recommend_post(self, body: RecommendRequest) -> dict:
        """The same, with the request as JSON."""
        return await self._recommend(body.customer_id, body.k, body.purchased,
                                     body.cold_start, body.drop_bought)

    async def _recommend(self, customer_id: str, k: int, purchased: list[str],
                         cold_start: str | None, drop_bought: bool | None) -> dict:
        catalog = self._catalog()
        if self.recommender is None:
            raise HTTPException(503, f"recommendations: {self.recommender_error}")
        try:
            idx = catalog.idx_of([parse_article_id(p) for p in purchased], "purchased")
            query = core.RecommendQuery(customer_id, k, idx, cold_start or self.cfg.cold_start,
                                        drop_bought)
            rec = await self.recommender.recommend(query)
        except PART_ERRORS as exc:
            raise _http_error_of(exc) from None
        return {"customer_id": customer_id, "k": k, "path": rec.path,
                "known_customer": rec.known_customer, "ranked_by": rec.ranked_by,
                "items": catalog.describe(rec.article_idx, rec.scores)}

    async def similar(
        self,
        article_id: Annotated[str, Path(pattern=ARTICLE_ID_PATTERN,
                                        description="1 to 10 digits")],
        k: Annotated[int, Query(ge=1, le=MAX_K)] = 12,
    ) -> dict:
        """The k articles most similar to one article."""
        catalog = self._catalog()
        try:
            idx = catalog.idx_of([parse_article_id(article_id)])[0]
            got, scores, source = await self.similar_h.similar.remote(int(idx), k)
        except PART_ERRORS as exc:
            raise _http_error_of(exc) from None
        return {"article_id": format_article_id(parse_article_id(article_id)), "k": k,
                "source": source, "items": catalog.describe(got, scores)}

    async def similar_image(self, request: Request,
                            k: Annotated[int, Query(ge=1, le=MAX_K)] = 12) -> dict:
        """Catalogue articles whose photos look like the uploaded one (the raw image bytes as
        the body, ``Content-Type: image/jpeg`` or ``image/png``)."""
        catalog = self._catalog()
        data = await self._read_upload(request)
        try:
            got, scores, source = await self.images_h.similar.remote(data, k)
        except PART_ERRORS as exc:
            raise _http_error_of(exc) from None
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

    async def outfit_score(self, body: OutfitScoreRequest) -> dict:
        """FND-CL preference of a user (or a new user from liked outfits) for outfits."""
        request = {"user": body.user, "set_name": body.set_name,
                   "outfits": [o.as_dict() for o in body.outfits],
                   "liked": [o.as_dict() for o in body.liked or []],
                   "strategy": body.cold_start}
        try:
            return await self.outfits_h.score.remote(request)
        except PART_ERRORS as exc:
            raise _http_error_of(exc) from None


def settings_from(args: dict) -> ServeConfig:
    """The ``serve`` settings from a builder's ``args`` (a config file's ``args:`` or the
    CLI's), validated, with local run paths made absolute for the replicas."""
    from stylehub_ray import config as C

    cfg = C.load_config(ServeConfig, None, None, **dict(args or {}))
    cfg.run, cfg.outfits_run = resolve_run_path(cfg.run), resolve_run_path(cfg.outfits_run)
    return cfg


def build_app(args: dict):
    """The serving graph as a Serve application (``serve_config.yaml``'s import path: Serve
    calls a builder with the ``args`` dictionary alone). The deployments are the same
    whatever the runs hold (so one config file fits every run); the ones for ``/recommend``
    follow ``recommend_layout``."""
    return build_graph(args)


def build_graph(args: dict, options: dict[str, dict] | None = None):
    """:func:`build_app` with ``options``: deployment name -> ``.options()`` keywords
    (replicas, autoscaling) for a graph run from Python (``bench/serve.py``)."""
    cfg = settings_from(args)
    s = asdict(cfg)
    served = core.served_endpoints(cfg)
    options = options or {}

    def bind(deployment, *a):
        return deployment.options(**options.get(deployment.name, {})).bind(*a)

    recommender = {}
    if cfg.recommend_layout == "together":
        recommender = {"two_tower": bind(TwoTower, s)}
    elif cfg.recommend_layout == "split":
        recommender = {"retriever": bind(Retriever, s), "ranker": bind(Ranker, s)}
    return bind(Ingress, recommender, bind(SimilarItems, s), bind(ImageSearch, s),
                bind(OutfitScorer, s), s, served)


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
