"""Request, response and error bodies of the serving API (pydantic; FastAPI publishes them in
``/openapi.json`` and at ``/docs``).

The schema is the contract a generated client is built from, so every rule the service applies
to a request is stated here: ids follow the data contract (``article_id``: 1 to 10 digits,
shown zero-padded to 10; ``customer_id``: 64 lower-case hex characters), and every number and
list has its bounds. A request that breaks a rule is answered 422 before any deployment sees
it. JSON bodies are validated strictly (no ``"5"`` for 5, no unknown fields), so what the
schema calls invalid is refused. Every error, 4xx or 5xx, has one shape: :class:`ErrorResponse`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

# [0-9], not \d: \d also matches other scripts' digits.
ARTICLE_ID_PATTERN = r"^[0-9]{1,10}$"
CUSTOMER_ID_PATTERN = r"^[0-9a-f]{64}$"
MAX_K = 100
MAX_PURCHASES = 200  # articles a cold-start request may name
# A ``purchased`` query value: one article id or up to MAX_PURCHASES comma-separated ones.
ARTICLE_IDS_PATTERN = rf"^[0-9]{{1,10}}(,[0-9]{{1,10}}){{0,{MAX_PURCHASES - 1}}}$"
SET_NAME_PATTERN = r"^[0-9A-Za-z_-]{1,32}$"
MAX_OUTFITS = 500  # outfits to score, and liked outfits, per /outfit-score request
MAX_ITEM = 2 ** 31 - 1  # item ids and user ids are int32 in the models
PATHS = ("ranker", "model", "model-cold", "cold-start-avg", "cold-start-w-avg", "popularity")
REQUEST_ID_HEADER = "X-Request-ID"

ArticleId = Annotated[str, StringConstraints(pattern=ARTICLE_ID_PATTERN)]
CustomerId = Annotated[str, StringConstraints(pattern=CUSTOMER_ID_PATTERN)]
ColdStart = Literal["avg", "w-avg"]


def _integral(value):
    """JSON's 3.0 is the integer 3 (JSON Schema says so); strict validation refuses the rest
    of what is not an integer ("3", true)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Int = Annotated[int, BeforeValidator(_integral)]


def parse_article_id(value: str | int) -> int:
    """A user-facing article id (``"0108775015"``, leading zeros optional) -> int64; the
    schema's pattern has checked it."""
    return int(str(value))


def format_article_id(value: int) -> str:
    return f"{int(value):010d}"


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="where: body / query / path, then the field")
    msg: str
    type: str


class ErrorResponse(BaseModel):
    """Every error answer of the API, 4xx and 5xx alike."""

    status: int = Field(description="the HTTP status code")
    error: str = Field(description="the status's name (e.g. 'Not Found')")
    detail: str = Field(description="what was wrong, for a person")
    request_id: str = Field(description="the X-Request-ID header; the server's logs show it")
    fields: list[FieldError] = Field(default_factory=list,
                                     description="422: each field that broke a rule")


class Article(BaseModel):
    article_id: str = Field(description="10-digit article id", pattern=ARTICLE_ID_PATTERN)
    score: float
    prod_name: str | None = None
    product_type_name: str | None = None
    product_group_name: str | None = None
    colour_group_name: str | None = None
    department_name: str | None = None
    index_group_name: str | None = None
    garment_group_name: str | None = None


class RecommendRequest(BaseModel):
    """``POST /recommend``: a customer, and optionally what they bought (cold start)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    customer_id: CustomerId
    k: Int = Field(12, ge=1, le=MAX_K)
    purchased: list[ArticleId] = Field(default_factory=list, max_length=MAX_PURCHASES,
                                       description="article ids the customer bought (cold "
                                                   "start)")
    cold_start: ColdStart | None = Field(None, description="default: the server's")
    drop_bought: bool | None = Field(None, description="drop articles bought before "
                                                       "(default: the model's choice, made on "
                                                       "val)")


class RecommendResponse(BaseModel):
    customer_id: str = Field(pattern=CUSTOMER_ID_PATTERN)
    k: int
    path: Literal[PATHS] = Field(description="what answered")
    known_customer: bool = Field(description="the id is in the run's customers")
    ranked_by: Literal["ranking model", "retrieval score", "popularity"]
    items: list[Article]


class SimilarResponse(BaseModel):
    article_id: str | None = None
    k: int
    source: str = Field(description="the vectors that answered (contrastive model, image or "
                                    "text embeddings)")
    items: list[Article]


class Outfit(BaseModel):
    """One outfit of a Polyvore-U set: item ids per category slot (``top2`` optional)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    top: Int = Field(ge=0, le=MAX_ITEM)
    bottom: Int = Field(ge=0, le=MAX_ITEM)
    shoe: Int = Field(ge=0, le=MAX_ITEM)
    top2: Int = Field(-1, ge=-1, le=MAX_ITEM, description="-1: none")

    def as_dict(self) -> dict:
        return {"top": self.top, "top2": self.top2, "bottom": self.bottom, "shoe": self.shoe}


class OutfitScoreRequest(BaseModel):
    """``POST /outfit-score``: a trained user, or a new one described by the outfits they
    liked (FND-CL 3.5 cold start), and the outfits to score. Give ``user`` or ``liked``."""

    # `user`, `set_name` and `liked` may be left out but are never null: the annotations say
    # what a present value must be (the None defaults are not validated).
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={
        "anyOf": [{"required": ["user"]}, {"required": ["liked"]}]})

    user: Int = Field(None, ge=0, le=MAX_ITEM, description="a trained user of the model's set")
    set_name: str = Field(None, pattern=SET_NAME_PATTERN,
                          description="Polyvore-U set (default: the model's)")
    outfits: list[Outfit] = Field(min_length=1, max_length=MAX_OUTFITS)
    liked: list[Outfit] = Field(None, min_length=1, max_length=MAX_OUTFITS,
                                description="a new user's liked outfits (cold start)")
    cold_start: ColdStart = "w-avg"

    @model_validator(mode="after")
    def _who(self):
        if self.user is None and not self.liked:
            raise ValueError("give a trained `user`, or the `liked` outfits of a new user")
        return self


class OutfitScoreResponse(BaseModel):
    user: int | None
    set_name: str
    variant: str
    path: Literal["model", "cold-start-avg", "cold-start-w-avg"]
    scores: list[float]
