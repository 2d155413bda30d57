"""Text encoders for item descriptions: cleaning, TF-IDF and a transformers encoder (no Ray).

Paper (contrastive, 4.3.1): the item text joins product_group_name, product_type_name,
colour_group_name, garment_group_name and detail_desc; it is lower-cased, stripped of
non-alphanumerics, tokenized, and stopwords and repeated words are removed. 4.3.2 vectorizes it
with TF-IDF (at most 500 terms) and says the TF-IDF vectors "were passed through BERT", which a
BERT model cannot take (it reads token ids, not TF-IDF weights). Here BERT runs on the cleaned
text instead and TF-IDF stays a separate choice; ``tfidf+bert`` concatenates both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

TEXT_COLUMNS = ("product_group_name", "product_type_name", "colour_group_name",
                "garment_group_name", "detail_desc")
_NON_ALNUM = re.compile(r"[^0-9a-z]+")


# Words of scikit-learn's stopword list that name garments and their cut in this catalogue
# ("Bikini top", "Trousers with a high waist and thick fabric", "Down jacket", "Off-shoulder").
FASHION_WORDS = frozenset({"top", "bottom", "front", "back", "side", "full", "thick", "thin",
                           "down", "off", "fill"})


def _stopwords() -> frozenset[str]:
    # scikit-learn's English list (available offline; NLTK's needs a download), minus the
    # words that carry meaning for clothes.
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS) - FASHION_WORDS


def clean_text(parts: list[str | None], stopwords: frozenset[str] | None = None) -> str:
    """Join the fields, lower-case, keep [0-9a-z] tokens, drop stopwords and repeats (the
    first occurrence of a word stays, in order)."""
    stop = _stopwords() if stopwords is None else stopwords
    seen: set[str] = set()
    out = []
    for token in _NON_ALNUM.split(" ".join(p for p in parts if p).lower()):
        if token and token not in stop and token not in seen:
            seen.add(token)
            out.append(token)
    return " ".join(out)


def clean_columns(columns: dict[str, list]) -> list[str]:
    """Row-wise :func:`clean_text` over the TEXT_COLUMNS of a batch."""
    stop = _stopwords()
    n = len(next(iter(columns.values())))
    return [clean_text([columns[c][i] for c in TEXT_COLUMNS], stop) for i in range(n)]


@dataclass
class Tfidf:
    """A fitted TF-IDF vocabulary (at most ``max_terms`` terms, rows L2-normalised), kept as
    plain arrays so it serialises to JSON and reloads anywhere."""

    vocabulary: list[str]
    idf: np.ndarray

    @classmethod
    def fit(cls, texts: list[str], max_terms: int = 500) -> Tfidf:
        from sklearn.feature_extraction.text import TfidfVectorizer

        vec = TfidfVectorizer(max_features=max_terms, token_pattern=r"(?u)\b\w+\b")
        vec.fit(texts)
        vocab = sorted(vec.vocabulary_, key=vec.vocabulary_.get)
        return cls(vocab, vec.idf_.astype(np.float32))

    def transform(self, texts: list[str]) -> np.ndarray:
        """(N,) texts -> (N, V) float32, each row unit length (zero for an empty text)."""
        index = {w: i for i, w in enumerate(self.vocabulary)}
        out = np.zeros((len(texts), len(self.vocabulary)), np.float32)
        for r, text in enumerate(texts):
            for token in text.split():
                j = index.get(token)
                if j is not None:
                    out[r, j] += 1.0
        out *= self.idf  # sublinear tf off, smooth idf: as TfidfVectorizer's defaults
        return l2_normalize(out)

    def to_json(self) -> dict:
        return {"vocabulary": self.vocabulary, "idf": self.idf.tolist()}

    @classmethod
    def from_json(cls, obj: dict) -> Tfidf:
        return cls(list(obj["vocabulary"]), np.asarray(obj["idf"], np.float32))

    @property
    def dim(self) -> int:
        return len(self.vocabulary)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norm > 0, norm, 1.0)).astype(np.float32)


class BertEncoder:
    """A local transformers encoder with attention-masked mean pooling, L2-normalised (how
    all-MiniLM-L6-v2 is meant to be pooled). Never touches the network."""

    def __init__(self, folder: str, device: str = "cpu", max_length: int = 128):
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from stylehub_ray.compat import ensure_torchvision

        ensure_torchvision()  # transformers imports torchvision when it is installed
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.model = AutoModel.from_pretrained(folder, local_files_only=True).to(device).eval()
        self.device, self.max_length = device, max_length

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def encode(self, texts: list[str], chunk: int | None = None) -> np.ndarray:
        """(N,) texts -> (N, H) float32 unit vectors. The texts are encoded in chunks of
        similar length (as sentence-transformers does), so that few pad tokens are computed;
        padding is masked out, so the vectors are those of one text at a time."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)[
            "input_ids"]
        order = np.argsort([len(x) for x in ids], kind="stable")
        chunk = chunk or (512 if self.device.startswith("cuda") else 32)
        out = np.empty((len(texts), self.dim), np.float32)
        for start in range(0, len(order), chunk):
            part = order[start:start + chunk]
            out[part] = self._encode_ids([ids[i] for i in part])
        return out

    def _encode_ids(self, ids: list[list[int]]) -> np.ndarray:
        import torch

        tok = self.tokenizer.pad({"input_ids": ids}, padding=True,
                                 return_tensors="pt").to(self.device)
        cuda = self.device.startswith("cuda")
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16,
                                                    enabled=cuda):
            hidden = self.model(**tok).last_hidden_state  # (N, T, H)
        mask = tok["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (N, T, 1)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (N, H)
        return l2_normalize(pooled.float().cpu().numpy())


def combine(parts: list[np.ndarray]) -> np.ndarray:
    """``tfidf+bert``: unit vectors side by side, scaled so the result is unit length again
    (each part then weighs the same in a cosine)."""
    return (np.concatenate(parts, axis=1) / np.sqrt(len(parts))).astype(np.float32)
