"""Contrastive losses shared by the models (torch only): NT-Xent.

NT-Xent (SimCLR, Chen et al. 2020; StyleHub paper 2.2 and 4.5; FND-CL Eq. 17-18): a batch of
N pairs gives 2N views; for view i its partner j is the positive and the other 2N - 2 views are
the negatives,

    l(i, j) = -log( exp(sim(z_i, z_j) / tau) / sum_{k != i} exp(sim(z_i, z_k) / tau) ),

with ``sim`` the cosine similarity, and the loss is the mean of l over all 2N views (both
directions of every pair).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, tau: float,
                 ids1: torch.Tensor | None = None,
                 ids2: torch.Tensor | None = None) -> torch.Tensor:
    """Mean NT-Xent over the 2N views of ``z1``, ``z2`` (N, d'): row n of z1 and of z2 are
    the two views of pair n.

    ``ids1`` / ``ids2`` (N,), optional: the item behind each view. When given, a view of the
    same item as view i (other than i's partner) is not used as a negative of i: kNN pairs
    put one item in several pairs of a batch, and its copies would otherwise be negatives
    with similarity 1 (false negatives the batch cannot help).
    """
    n = z1.shape[0]
    z = F.normalize(torch.stack([z1, z2], dim=1).reshape(2 * n, -1), dim=-1)  # views 2n, 2n+1
    s = z @ z.T / tau  # sim(z_i, z_k) / tau, (2N, 2N)
    rows = torch.arange(2 * n, device=z.device)
    partner = rows ^ 1  # 0<->1, 2<->3, ...
    drop = torch.eye(2 * n, dtype=torch.bool, device=z.device)  # k != i
    if ids1 is not None and ids2 is not None:
        ids = torch.stack([ids1, ids2], dim=1).reshape(2 * n).to(z.device)
        same = ids[:, None] == ids[None, :]
        same[rows, partner] = False  # the positive always stays in the denominator
        drop = drop | same
    s = s.masked_fill(drop, float("-inf"))
    # l(i, j) per view, then the mean over all 2N views.
    return (torch.logsumexp(s, dim=1) - s[rows, partner]).mean()
