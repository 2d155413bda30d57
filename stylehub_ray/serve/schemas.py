"""Request and response bodies of the serving API (pydantic; FastAPI publishes them at /docs).

Ids follow the data contract: ``article_id`` is the 10-digit zero-padded string, ``customer_id``
the 64-character lower-case hex string. A body that breaks a rule here is answered 422 with the
field and the reason, before any deployment sees it.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ARTICLE_ID = re.compile(r"^\d{1,10}$")
CUSTOMER_ID = re.compile(r"^[0-9a-f]{64}$")
OUTFIT_SLOTS = ("top", "top2", "bottom", "shoe")
REQUIRED_SLOTS = ("top", "bottom", "shoe")
PATHS = ("model", "cold-start-avg", "cold-start-w-avg", "popularity")


def parse_article_id(value: str | int, field: str = "article_id") -> int:
    """A user-facing article id (``"0108775015"``, leading zeros optional) -> int64."""
    text = str(value).strip()
    if not ARTICLE_ID.match(text):
        raise ValueError(f"{field}: {value!r} is not an article id (up to 10 digits, e.g. "
                         f"'0108775015')")
    return int(text)


def format_article_id(value: int) -> str:
    return f"{int(value):010d}"


def check_customer_id(value: str) -> str:
    if not CUSTOMER_ID.match(value):
        raise ValueError(f"customer_id: {value[:80]!r} is not a customer id (64 lower-case hex "
                         f"characters)")
    return value


class Article(BaseModel):
    article_id: str = Field(description="10-digit article id")
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

    model_config = ConfigDict(extra="forbid")

    customer_id: str
    k: int = Field(12, ge=1, le=100)
    purchased: list[str] = Field(default_factory=list,
                                 description="article ids the customer bought (cold start)")
    cold_start: str | None = Field(None, description="avg | w-avg (default: the server's)")
    drop_bought: bool = True

    @field_validator("customer_id")
    @classmethod
    def _customer(cls, v: str) -> str:
        return check_customer_id(v)

    @field_validator("purchased")
    @classmethod
    def _purchased(cls, v: list[str]) -> list[str]:
        for i, item in enumerate(v):
            parse_article_id(item, f"purchased[{i}]")
        return v


class RecommendResponse(BaseModel):
    customer_id: str
    k: int
    path: str = Field(description="what answered: " + " | ".join(PATHS))
    known_customer: bool = Field(description="the id is in the run's customers")
    ranked_by: str = Field(description="ranking model | retrieval score | popularity")
    items: list[Article]


class SimilarResponse(BaseModel):
    article_id: str | None = None
    k: int
    source: str = Field(description="the vectors that answered (contrastive model, image or "
                                    "text embeddings)")
    items: list[Article]


class Outfit(BaseModel):
    """One outfit of a Polyvore-U set: item ids per category slot (``top2`` optional)."""

    top: int = Field(ge=0)
    bottom: int = Field(ge=0)
    shoe: int = Field(ge=0)
    top2: int = Field(-1, ge=-1)

    @model_validator(mode="before")
    @classmethod
    def _slots(cls, data):
        if isinstance(data, dict):
            unknown = [key for key in data if key not in OUTFIT_SLOTS]
            if unknown:
                raise ValueError(f"unknown outfit categories {unknown}; known: "
                                 f"{', '.join(OUTFIT_SLOTS)}")
            missing = [key for key in REQUIRED_SLOTS if key not in data]
            if missing:
                raise ValueError(f"outfit lacks {', '.join(missing)} (needs "
                                 f"{', '.join(REQUIRED_SLOTS)}; top2 optional)")
        return data

    def as_dict(self) -> dict:
        return {"top": self.top, "top2": self.top2, "bottom": self.bottom, "shoe": self.shoe}


class OutfitScoreRequest(BaseModel):
    """``POST /outfit-score``: a trained user, or a new one described by the outfits they
    liked (FND-CL 3.5 cold start), and the outfits to score."""

    model_config = ConfigDict(extra="forbid")

    user: int | None = Field(None, ge=0, description="a trained user of the model's set")
    set_name: str | None = Field(None, description="Polyvore-U set (default: the model's)")
    outfits: list[Outfit] = Field(min_length=1)
    liked: list[Outfit] = Field(default_factory=list,
                                description="a new user's liked outfits (cold start)")
    cold_start: str = Field("w-avg", description="avg | w-avg")

    @model_validator(mode="after")
    def _who(self):
        if self.user is None and not self.liked:
            raise ValueError("give a trained `user`, or the `liked` outfits of a new user")
        if self.cold_start not in ("avg", "w-avg"):
            raise ValueError(f"cold_start must be avg or w-avg, got {self.cold_start!r}")
        return self


class OutfitScoreResponse(BaseModel):
    user: int | None
    set_name: str
    variant: str
    path: str = Field(description="model | cold-start-avg | cold-start-w-avg")
    scores: list[float]
