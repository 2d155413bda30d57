"""How far FND's weights d_ijk = alpha (r^_i - r^_ijk) (Eq. 11-12) sit from N-pair's 1.

FND multiplies each negative's logit by d_ijk; N-pair is d = 1 for every negative. With the
teacher's unit-vector scores (cosines), the gap r^_i - r^_ijk between a user's mean positive
score and a random negative's score is a fraction, so alpha decides whether a true negative is
pushed as hard as N-pair pushes it. This samples (user, training negative) pairs of a run with
a trained teacher and prints the gap and, per alpha, the mean d and the share of d below 1 and
below 0 (the negatives FND pulls towards the user). Reads only the run's model and features.

    python bench/fndcl_distillation_weights.py --run RUN [--set 630] [--teacher teacher-npair]
"""

from __future__ import annotations

import argparse

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True)
    p.add_argument("--set", dest="set_name", default="630")
    p.add_argument("--teacher", default="teacher-npair")
    p.add_argument("--pairs", type=int, default=4000)
    p.add_argument("--alphas", type=float, nargs="+",
                   default=[0.25, 0.5, 1.0, 1.25, 1.5, 2.0, 3.0])
    args = p.parse_args(argv)

    import torch

    from stylehub_ray.models import fndcl as M
    from stylehub_ray.models.artifacts import load_model
    from stylehub_ray.run import Run
    from stylehub_ray.train.fndcl import item_inputs, load_outfit_set

    torch.set_num_threads(1)
    run = Run(args.run)
    data = load_outfit_set(run, args.set_name)
    teacher, spec, meta = load_model(run, "fndcl", args.teacher)
    table, transform = item_inputs(run, data, spec, meta["config"]["image_size"])
    pos, neg = data.get("train", "posi"), data.get("train", "nega")
    rng = np.random.default_rng(0)
    with torch.no_grad():
        d = M.Distillation.from_teacher(teacher, table, torch.from_numpy(pos["user"]),
                                        torch.from_numpy(pos["outfits"]),
                                        torch.from_numpy(neg["outfits"]), data.n_users,
                                        transform)
        users = torch.from_numpy(rng.integers(0, data.n_users, args.pairs))
        negs = torch.from_numpy(rng.integers(0, len(neg["outfits"]), args.pairs))
        gap = (d.user_mean[users] - (d.users[users] * d.negatives[negs]).sum(1)).numpy()
    print(f"{args.teacher} on set {args.set_name}: users' mean positive score r^_i "
          f"{float(d.user_mean.mean()):.3f}")
    print(f"gap r^_i - r^_ijk over {args.pairs} random (user, training negative) pairs: mean "
          f"{gap.mean():.3f}, median {np.median(gap):.3f}, 10th-90th percentile "
          f"{np.percentile(gap, 10):.3f} .. {np.percentile(gap, 90):.3f}")
    print(f"{'alpha':>6s} {'mean d':>7s} {'d < 1':>6s} {'d < 0':>6s}")
    for a in args.alphas:
        print(f"{a:6.2f} {a * gap.mean():7.3f} {(a * gap < 1).mean():6.3f} "
              f"{(a * gap < 0).mean():6.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
