"""Similar items: the k articles nearest to an article or to a photo, from the contrastive
embeddings through their FAISS index (``index/contrastive-<variant>``). No Ray inside: serving
holds one :class:`SimilarItems` per replica.

- ``by_article(article_id, k)``: the article's own embedding against the index, itself left out.
- ``by_image(photo, k)``: a photo (a file path or its bytes) is decoded and encoded as
  ``stylehub embed images`` did for the run (its architecture, weights, size and PCA). A variant
  trained on image vectors alone embeds the photo directly (paper 3.2.2: "when a user provides an
  image of a desired item"). A variant with text inputs cannot embed a photo without its text,
  so the photo is matched to the catalog article with the most similar photo (cosine over
  ``embeddings/images``) and that article's similar items follow it; the answer names that
  anchor.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

import numpy as np

from stylehub_ray.run import Run


@dataclass
class SimilarItems:
    """A loaded variant: its FAISS index, the row -> article tables and the item embeddings."""

    run: Run
    variant: str
    index: object
    row_article_idx: np.ndarray  # FAISS row -> article_idx
    article_id: np.ndarray  # article_idx -> article_id
    embeddings: np.ndarray  # (n_items, d) unit rows (zeros without a vector)
    has_vector: np.ndarray
    inputs: str
    _image: dict = field(default_factory=dict)  # lazily loaded photo encoder, PCA, vectors

    @classmethod
    def load(cls, run: Run, variant: str = "text") -> SimilarItems:
        from stylehub_ray.embed import index as I
        from stylehub_ray.embed import vectors as V
        from stylehub_ray.train.contrastive import embeddings_dir, index_dir

        for rel in (index_dir(variant), embeddings_dir(variant)):
            if not run.is_complete(rel):
                raise FileNotFoundError(f"{run.uri_of(rel)} is missing or incomplete: train the "
                                        f"variant with `stylehub train contrastive --run "
                                        f"{run.uri}`")
        folder = index_dir(variant)
        index, rows = I.read_index(run, folder)
        emb = V.read_embeddings(run, embeddings_dir(variant))
        meta = run.read_json(posixpath.join(folder, "index.json"))
        return cls(run, variant, index, rows,
                   emb.column("article_id").to_numpy().astype(np.int64),
                   V.from_fixed_list(emb.column("embedding")),
                   emb.column("has_vector").to_numpy(zero_copy_only=False), meta["inputs"])

    # -- queries ---------------------------------------------------------------------------
    def article_idx(self, article_id: int | str) -> int:
        """The dense index of an article id (int or its 10-digit string); KeyError otherwise."""
        aid = int(article_id)
        pos = np.flatnonzero(self.article_id == aid)
        if not len(pos):
            raise KeyError(f"article_id {int(article_id):010d} is not in {self.run.uri}")
        return int(pos[0])

    def search(self, vectors: np.ndarray, k: int, exclude: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """(article_idx (m, k) padded -1, cosine (m, k)) nearest to unit ``vectors`` (m, d);
        ``exclude`` (m,) article_idx left out of each row (the query article)."""
        from stylehub_ray.embed.index import search

        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        return search(self.index, np.atleast_2d(vectors), k, rows=self.row_article_idx,
                      exclude=exclude, batch=None, fill=np.nan)

    def by_article(self, article_id: int | str, k: int = 10) -> list[dict]:
        """The ``k`` articles most similar to ``article_id`` (itself excluded), best first."""
        idx = self.article_idx(article_id)
        if not self.has_vector[idx]:
            raise KeyError(f"article_id {int(article_id):010d} has no {self.inputs} vector in "
                           f"variant {self.variant!r} (no photo?)")
        ids, scores = self.search(self.embeddings[idx][None], k, np.array([idx]))
        return self._rows(ids[0], scores[0])

    def by_image(self, photo: str | bytes, k: int = 10) -> dict:
        """The ``k`` articles most similar to a photo: ``{"items": [...], "anchor": ...}``."""
        from stylehub_ray.embed.text_model import l2_normalize

        vec = self._photo_vector(photo)  # (P,) PCA coordinates, as embeddings/images holds
        if self.inputs == "image":
            import torch

            from stylehub_ray.models.artifacts import load_model

            model = self._image.get("model")
            if model is None:
                model, _spec, _meta = load_model(self.run, "contrastive", self.variant)
                self._image["model"] = model
            x = np.concatenate([vec, [1.0]]).astype(np.float32)[None]  # has_image = 1
            emb = l2_normalize(model.embed_all(torch.from_numpy(x)).numpy())
            ids, scores = self.search(emb, k)
            return {"items": self._rows(ids[0], scores[0]), "anchor": None,
                    "via": "contrastive image embedding"}
        photos = self._image["catalog"]  # unit PCA vectors of the catalog photos
        sims = photos["unit"] @ l2_normalize(vec[None])[0]
        best = int(photos["article_idx"][int(np.argmax(sims))])
        anchor = {"article_id": f"{int(self.article_id[best]):010d}", "article_idx": best,
                  "photo_similarity": float(sims.max())}
        items = [{**anchor, "score": 1.0}] + self.by_article(int(self.article_id[best]), k - 1) \
            if k > 1 else [{**anchor, "score": 1.0}]
        return {"items": items, "anchor": anchor,
                "via": "nearest catalog photo, then its contrastive neighbours"}

    # -- helpers ---------------------------------------------------------------------------
    def _rows(self, ids: np.ndarray, scores: np.ndarray) -> list[dict]:
        return [{"article_id": f"{int(self.article_id[i]):010d}", "article_idx": int(i),
                 "score": float(s)} for i, s in zip(ids, scores) if i >= 0]

    def _photo_vector(self, photo: str | bytes) -> np.ndarray:
        """Decode and encode one photo the way `embed images` did for this run."""
        from stylehub_ray.embed.images import PhotoEncoder, read_bytes
        from stylehub_ray.embed.text_model import l2_normalize
        from stylehub_ray.embed.vectors import from_fixed_list, read_embeddings

        if "encoder" not in self._image:
            self._image["encoder"] = PhotoEncoder.from_run(self.run)
            t = read_embeddings(self.run, "embeddings/images", ["article_idx", "embedding",
                                                                "has_image"])
            present = t.column("has_image").to_numpy(zero_copy_only=False)
            self._image["catalog"] = {
                "unit": l2_normalize(from_fixed_list(t.column("embedding"))[present]),
                "article_idx": t.column("article_idx").to_numpy()[present]}
        data = photo if isinstance(photo, bytes) else read_bytes(str(photo))
        try:
            return self._image["encoder"].photo(data)  # (P,)
        except Exception as exc:  # noqa: BLE001 - any decoder failure: say which input
            name = "the photo bytes" if isinstance(photo, bytes) else str(photo)
            raise ValueError(f"{name}: not a readable image ({type(exc).__name__}: "
                             f"{exc})") from exc


def similar_items(run: Run, *, article_id: int | str | None = None,
                  image: str | bytes | None = None, k: int = 10,
                  variant: str = "text") -> list[dict]:
    """The ``k`` most similar articles to an article id or a photo (exactly one of them):
    ``[{"article_id": "0108775015", "article_idx": ..., "score": cosine}, ...]``."""
    if (article_id is None) == (image is None):
        raise ValueError("similar_items: pass exactly one of article_id, image")
    items = SimilarItems.load(run, variant)
    if article_id is not None:
        return items.by_article(article_id, k)
    return items.by_image(image, k)["items"]
