"""StyleHub contrastive item model (Khan, "StyleHub - Assessing Contrastive Learning for
Personalized Fashion Recommendations", 3.2 and 4.1.2), torch only.

- FeatureExtractor ``f_feat`` (4.1.2; 3.2 "Model Architecture"): fully connected layers with
  batch norm, ReLU and dropout from the item vector (text and/or image embedding) to the
  embedding used for recommendations (512 by default): ``h1 = ReLU(W1 x + b1)``,
  ``h2 = ReLU(W2 h1 + b2)``.
- ProjectionHead ``f_proj`` (4.1.2): an MLP from the embedding to the contrastive space (128 by
  default); ``z = W3 h2 + b3`` is its last layer.
- SimCLR ``p = f_proj(f_feat(x))`` (4.1.2); ``embed()`` returns ``f_feat(x)``.
- NT-Xent over a batch of N pairs (2.2, 4.5): :func:`stylehub_ray.models.losses.nt_xent_loss`.

The inputs are standardised with the training items' mean and scale, kept as buffers so the
saved model carries them (image PCA coordinates and unit text vectors live on very different
scales).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from stylehub_ray.models.losses import nt_xent_loss


@dataclass
class ContrastiveSpec:
    """Everything needed to rebuild the network (saved beside its weights)."""

    input_dim: int
    hidden: tuple[int, ...] = (1024,)  # widths of the extractor's layers before its output
    embed_dim: int = 512  # 4.1.2: "the final output dimension of the feature extractor is 512"
    projection_hidden: int = 512
    projection_dim: int = 128
    dropout: float = 0.1

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ContrastiveSpec:
        return cls(**{**d, "hidden": tuple(d["hidden"])})


def _block(d_in: int, d_out: int, dropout: float) -> list[nn.Module]:
    """Linear -> BatchNorm -> ReLU -> Dropout (4.1.2)."""
    return [nn.Linear(d_in, d_out), nn.BatchNorm1d(d_out), nn.ReLU(inplace=True),
            nn.Dropout(dropout)]


class FeatureExtractor(nn.Module):
    """``f_feat``: item vector (B, input_dim) -> embedding (B, embed_dim)."""

    def __init__(self, input_dim: int, hidden: tuple[int, ...], embed_dim: int,
                 dropout: float):
        super().__init__()
        widths = (input_dim, *hidden)
        layers: list[nn.Module] = []
        for d_in, d_out in zip(widths[:-1], widths[1:]):
            layers += _block(d_in, d_out, dropout)  # h1 = ReLU(W1 x + b1)
        # h2 = ReLU(W2 h1 + b2): the last layer keeps batch norm and ReLU, without dropout,
        # so the embedding served for recommendations is deterministic in eval mode.
        layers += [nn.Linear(widths[-1], embed_dim), nn.BatchNorm1d(embed_dim),
                   nn.ReLU(inplace=True)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ProjectionHead(nn.Module):
    """``f_proj``: embedding (B, embed_dim) -> contrastive space (B, projection_dim)."""

    def __init__(self, embed_dim: int, hidden: int, projection_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(embed_dim, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, projection_dim))  # z = W3 h + b3

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


class SimCLR(nn.Module):
    """4.1.2: ``p = f_proj(f_feat(x))``; :meth:`embed` gives ``f_feat(x)``."""

    def __init__(self, spec: ContrastiveSpec):
        super().__init__()
        self.spec = spec
        self.register_buffer("input_mean", torch.zeros(spec.input_dim))
        self.register_buffer("input_scale", torch.ones(spec.input_dim))
        self.extractor = FeatureExtractor(spec.input_dim, spec.hidden, spec.embed_dim,
                                          spec.dropout)
        self.head = ProjectionHead(spec.embed_dim, spec.projection_hidden, spec.projection_dim)

    def set_input_stats(self, x: torch.Tensor) -> None:
        """Standardise inputs with the mean and scale of ``x`` (N, input_dim), the training
        items; a constant column keeps scale 1."""
        if x.shape[1] != self.spec.input_dim:
            raise ValueError(f"input stats: expected {self.spec.input_dim} columns, got "
                             f"{x.shape[1]}")
        self.input_mean.copy_(x.mean(0))
        std = x.std(0, unbiased=False)
        self.input_scale.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``z = f_feat(x)``, (B, embed_dim): the vector recommendations use."""
        return self.extractor((x - self.input_mean) / self.input_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``p = f_proj(f_feat(x))``, (B, projection_dim)."""
        return self.head(self.embed(x))

    @torch.no_grad()
    def embed_all(self, x: torch.Tensor, batch: int = 8192) -> torch.Tensor:
        """Embeddings of every row of ``x`` in eval mode, in batches: (N, embed_dim)."""
        was_training = self.training
        self.eval()
        out = torch.cat([self.embed(x[i:i + batch]) for i in range(0, len(x), batch)]) \
            if len(x) else torch.zeros(0, self.spec.embed_dim)
        self.train(was_training)
        return out


def pair_loss(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor, tau: float,
              ids1: torch.Tensor | None = None,
              ids2: torch.Tensor | None = None) -> torch.Tensor:
    """4.5: ``L_batch`` over a batch of N positive pairs (x1, x2) (N, input_dim): the other
    2N - 2 items of the batch are each pair's negatives. ``model`` is a :class:`SimCLR` or its
    DDP wrapper (the forward goes through the wrapper so gradients are synchronised); both
    sides go through one forward pass so batch norm sees the whole batch."""
    p = model(torch.cat([x1, x2]))  # (2N, projection_dim)
    return nt_xent_loss(p[: len(x1)], p[len(x1):], tau, ids1, ids2)
