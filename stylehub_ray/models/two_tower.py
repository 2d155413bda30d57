"""Hybrid two-tower recommender (seeds/hybrid-two-tower.txt, "Step 5: Model"): torch only.

- :class:`FeatureEncoder`: one side's preprocessed inputs (standardised numbers, learned
  embeddings of category codes, optionally a learned id embedding, and for articles the 256-d
  image embedding with its has-image flag and the optional text embedding) as one vector.
- :class:`Tower`: dense (128, 64) ReLU, an output layer to 32 dimensions, L2 normalisation
  (the Customer (Query) Tower and the Article (Candidate) Tower).
- :class:`RankingModel`: a customer branch and an article branch, each dense (64, 32) ReLU, and
  the ``rating`` head over their concatenation, dense (32, 16) ReLU and one sigmoid unit.
- :class:`TwoStageRecommender`: both trained together; loss = retrieval + w * ranking.
- :func:`retrieval_loss`: in-batch sampled softmax over customer-article dot products with a
  temperature (the paper's contrastive retrieval loss), with the log-q correction by each
  article's sampling probability (:func:`sampling_log_q`); :func:`ranking_loss`: binary
  cross-entropy; :func:`drop_ids`: id dropout, which trains the unknown id row.

The paper has no equation numbers; comments name the paragraph a line implements.
Inputs are dicts of tensors per side: ``num`` (B, Dn) float, ``cat`` (B, K) int64 codes
(0 = unknown), ``ids`` (B,) int64 (0 = unknown id), ``extra`` (B, De) float (image + text
for articles; for customers the day's context when the model is fed it, else width 0).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

Inputs = dict[str, torch.Tensor]


@dataclass
class TwoTowerSpec:
    """Everything needed to rebuild the modules (saved beside the weights)."""

    customer_numeric: int
    customer_categories: tuple[int, ...]  # embedding table sizes (categories + unknown)
    article_numeric: int
    article_categories: tuple[int, ...]
    article_extra: int  # image (+ text) embedding width
    customer_extra: int = 0  # context of the example's day (day of week, month), when fed
    customer_ids: int = 0  # id embedding rows (index 0 = unknown); 0: no id embedding
    article_ids: int = 0
    id_dim: int = 32
    cat_dim: int = 8
    tower: tuple[int, ...] = (128, 64)
    out_dim: int = 32
    branch: tuple[int, ...] = (64, 32)
    head: tuple[int, ...] = (32, 16)
    extra: dict = field(default_factory=dict)  # free-form notes (not used by the modules)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TwoTowerSpec:
        d = dict(d)
        for k in ("customer_categories", "article_categories", "tower", "branch", "head"):
            d[k] = tuple(d[k])
        return cls(**d)


def mlp(in_dim: int, hidden: tuple[int, ...]) -> nn.Sequential:
    """Dense layers with ReLU after each."""
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(in_dim, h), nn.ReLU()]
        in_dim = h
    return nn.Sequential(*layers)


class FeatureEncoder(nn.Module):
    """One side's inputs as one vector: numbers, category embeddings, id embedding, extra
    (Step 4, "Feature Preprocessing": standardised numbers, encoded categories, the image
    embedding kept as features)."""

    def __init__(self, numeric: int, categories: tuple[int, ...], extra: int, ids: int,
                 id_dim: int, cat_dim: int):
        super().__init__()
        self.cats = nn.ModuleList(nn.Embedding(n, cat_dim) for n in categories)
        self.ids = nn.Embedding(ids, id_dim) if ids else None
        self.out_dim = numeric + cat_dim * len(categories) + extra + (id_dim if ids else 0)

    def forward(self, x: Inputs) -> torch.Tensor:
        parts = [x["num"]]
        parts += [emb(x["cat"][:, i]) for i, emb in enumerate(self.cats)]  # (B, cat_dim) each
        if self.ids is not None:
            parts.append(self.ids(x["ids"]))  # (B, id_dim)
        if x["extra"].shape[1]:
            parts.append(x["extra"])
        return torch.cat(parts, dim=1)  # (B, out_dim)


class Tower(nn.Module):
    """Step 5, Customer (Query) / Article (Candidate) Tower: dense (128, 64) with ReLU, an
    output layer to 32 dimensions, then the normalisation layer (unit vectors)."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...], out_dim: int):
        super().__init__()
        self.body = mlp(in_dim, hidden)
        self.out = nn.Linear(hidden[-1] if hidden else in_dim, out_dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.out(self.body(h)), dim=1)  # (B, out_dim), unit rows


class RankingModel(nn.Module):
    """Step 5, Ranking Model: ``customer_sequential`` and ``article_sequential`` branches, each
    dense (64, 32) with ReLU, and the ``rating`` head over their concatenation: dense (32, 16)
    with ReLU and one sigmoid unit. :meth:`forward` returns the logit (the sigmoid is applied
    in the loss and in :meth:`head_probability`)."""

    def __init__(self, customer_dim: int, article_dim: int, branch: tuple[int, ...],
                 head: tuple[int, ...]):
        super().__init__()
        self.customer_branch = mlp(customer_dim, branch)
        self.article_branch = mlp(article_dim, branch)
        self.rating = nn.Sequential(mlp(2 * branch[-1], head), nn.Linear(head[-1], 1))

    def head(self, c: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Logits from branch outputs: c (B, 32), a (B, 32) -> (B,)."""
        return self.rating(torch.cat([c, a], dim=1)).squeeze(1)

    def forward(self, hc: torch.Tensor, ha: torch.Tensor) -> torch.Tensor:
        return self.head(self.customer_branch(hc), self.article_branch(ha))


class TwoStageRecommender(nn.Module):
    """Step 5, TwoStageRecommender: the retrieval towers and the ranking model trained
    together (multi-task). Both share each side's input encoder (the category and id
    embeddings)."""

    def __init__(self, spec: TwoTowerSpec):
        super().__init__()
        self.spec = spec
        self.customer_encoder = FeatureEncoder(spec.customer_numeric, spec.customer_categories,
                                               spec.customer_extra, spec.customer_ids,
                                               spec.id_dim, spec.cat_dim)
        self.article_encoder = FeatureEncoder(spec.article_numeric, spec.article_categories,
                                              spec.article_extra, spec.article_ids,
                                              spec.id_dim, spec.cat_dim)
        self.customer_tower = Tower(self.customer_encoder.out_dim, spec.tower, spec.out_dim)
        self.article_tower = Tower(self.article_encoder.out_dim, spec.tower, spec.out_dim)
        self.ranking = RankingModel(self.customer_encoder.out_dim, self.article_encoder.out_dim,
                                    spec.branch, spec.head)

    def forward(self, customers: Inputs, articles: Inputs
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One training batch of (customer, article) rows -> (u (B, 32), v (B, 32), ranking
        logits (B,)). One forward for everything, so DDP sees every parameter used."""
        hc = self.customer_encoder(customers)
        ha = self.article_encoder(articles)
        return self.customer_tower(hc), self.article_tower(ha), self.ranking(hc, ha)

    def id_embeddings(self) -> list[nn.Embedding]:
        """The learned id tables (one row per customer or article): the model's largest
        parameters by far, of which a batch touches only its own rows (see
        :func:`split_id_parameters`)."""
        return [e.ids for e in (self.customer_encoder, self.article_encoder)
                if e.ids is not None]

    # -- serving pieces (each cheap and separately callable) --------------------------------
    @torch.no_grad()
    def customer_vectors(self, customers: Inputs) -> torch.Tensor:
        return self.customer_tower(self.customer_encoder(customers))

    @torch.no_grad()
    def article_vectors(self, articles: Inputs) -> torch.Tensor:
        return self.article_tower(self.article_encoder(articles))

    @torch.no_grad()
    def customer_branch(self, customers: Inputs) -> torch.Tensor:
        return self.ranking.customer_branch(self.customer_encoder(customers))

    @torch.no_grad()
    def article_branch(self, articles: Inputs) -> torch.Tensor:
        return self.ranking.article_branch(self.article_encoder(articles))

    @torch.no_grad()
    def head_probability(self, c: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Ranking probabilities from precomputed branch outputs: c (M, 32) and a (M, N, 32)
        (the candidates of each customer) -> (M, N)."""
        m, n, d = a.shape
        logits = self.ranking.head(c[:, None, :].expand(m, n, d).reshape(m * n, d),
                                   a.reshape(m * n, d))
        return torch.sigmoid(logits).reshape(m, n)


def split_id_parameters(model: TwoStageRecommender, sparse: bool
                        ) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(id table weights, every other parameter). With ``sparse`` the id tables' gradients
    become sparse (only the batch's rows), for an optimizer that updates just those rows
    (``torch.optim.SparseAdam``): a dense optimizer step over a table of every customer costs
    in proportion to all customers at every step. Call before wrapping the model in DDP."""
    tables = model.id_embeddings()
    for emb in tables:
        emb.sparse = sparse
    ids = {id(e.weight) for e in tables}
    return ([e.weight for e in tables],
            [p for p in model.parameters() if id(p) not in ids])


def retrieval_loss(u: torch.Tensor, v: torch.Tensor, temperature: float,
                   article_ids: torch.Tensor | None = None,
                   customer_ids: torch.Tensor | None = None,
                   log_q: torch.Tensor | None = None) -> torch.Tensor:
    """Step 5, Retrieval model, "Contrastive Loss": in-batch sampled softmax.

    Row i is a positive pair (customer i, article i); every other article of the batch is a
    sampled negative: loss_i = -log softmax_j(u_i . v_j / T - log q_j)[i]. With ids given, a
    column j whose article equals article i, or whose positive belongs to customer i, is not a
    negative for row i (it is masked out). ``log_q`` (B,): the log of each column's article's
    sampling probability, its share of all training positives. The in-batch softmax samples
    negatives in proportion to popularity; subtracting log q_j from each logit corrects that
    bias (Yi et al., RecSys 2019, "Sampling-bias-corrected neural modeling"), so popular
    articles are not pushed down merely for appearing often as negatives.
    """
    logits = (u @ v.T) / temperature  # (B, B)
    b = logits.shape[0]
    eye = torch.eye(b, dtype=torch.bool, device=logits.device)
    if log_q is not None:
        logits = logits - log_q.to(logits.dtype)[None, :]
    mask = torch.zeros_like(eye)
    if article_ids is not None:
        mask |= article_ids[:, None] == article_ids[None, :]
    if customer_ids is not None:
        mask |= customer_ids[:, None] == customer_ids[None, :]
    logits = logits.masked_fill(mask & ~eye, float("-inf"))
    return F.cross_entropy(logits, torch.arange(b, device=logits.device))


def sampling_log_q(article_positives: torch.Tensor) -> torch.Tensor:
    """log q per article (n,): its share of all training positives (the probability that an
    in-batch negative is that article); articles without a positive never appear in the
    softmax and get log(1 / total) so the table stays finite."""
    counts = article_positives.to(torch.float64)
    total = max(float(counts.sum()), 1.0)
    return torch.log(counts.clamp(min=1.0) / total).to(torch.float32)


def batch_log_q(article_ids: torch.Tensor) -> torch.Tensor:
    """log q per column from the batch alone: each article's share of the batch's positives.
    Distinct articles all get log(1/B), a constant that leaves the softmax unchanged; only
    articles repeated within the batch are corrected. :func:`sampling_log_q` is the estimate
    Yi et al. prescribe."""
    _, inverse, counts = torch.unique(article_ids, return_inverse=True, return_counts=True)
    return torch.log(counts[inverse].to(torch.float32) / len(article_ids))


def drop_ids(ids: torch.Tensor, rate: float, generator: torch.Generator | None = None
             ) -> torch.Tensor:
    """Id dropout: each id replaced by 0 ("unknown") with probability ``rate``, so the unknown
    row is trained and each tower learns to place a row from its features alone (new articles,
    customers outside the label window)."""
    if rate <= 0:
        return ids
    drop = torch.rand(ids.shape, generator=generator, device=ids.device) < rate
    return ids.masked_fill(drop, 0)


def ranking_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Step 5, Ranking Model: binary cross-entropy of the sigmoid unit against the 4:1
    negative-sampled labels."""
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


def total_loss(retrieval: torch.Tensor, ranking: torch.Tensor, ranking_weight: float
               ) -> torch.Tensor:
    """Step 5, TwoStageRecommender: the multi-task loss, retrieval + w * ranking."""
    return retrieval + ranking_weight * ranking
