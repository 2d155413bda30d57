"""Which fallback serves the test week's buyers the two-tower was not trained on?

With the label window (``features.label_days``) only customers who bought in it are trained;
an earlier buyer outside it gets the popularity fallback. This scores, on those customers of
the test week who have earlier purchases, MAP@12 of the popularity fallback against the
cold-start path of serving (the mean of their bought articles' retrieval vectors, then
retrieve), with bought articles dropped and kept.

    .venv/bin/python bench/fallback_check.py --run RUN
"""

from __future__ import annotations

import argparse

import numpy as np

from stylehub_ray.eval import ranking as R
from stylehub_ray.metrics import map_at_k
from stylehub_ray.models.recommender import TwoTowerRecommender
from stylehub_ray.run import Run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True)
    p.add_argument("--variant", default="default")
    args = p.parse_args()
    run = Run(args.run)
    test = R.load_test_set(run)
    rec = TwoTowerRecommender.load(run, args.variant, "test")
    customers = np.asarray(test.customers)
    known = rec.known(customers)
    bought = rec.bought(customers)
    sel = [i for i in range(len(customers)) if not known[i] and len(bought[i])]
    print(f"test buyers {len(customers):,}: trained {int(known.sum()):,}, untrained "
          f"{int((~known).sum()):,} ({len(sel):,} of them with earlier purchases)")
    popular = rec.popular(200)
    truth = [test.truth[i] for i in sel]
    for drop in (True, False):
        pop, avg = [], []
        for i in sel:
            b = bought[i]
            pop.append(popular[~np.isin(popular, b)][:12] if drop else popular[:12])
            got, _ = rec.retrieve(rec.article_vectors[b].mean(0, keepdims=True),
                                  12 + (len(b) if drop else 0))
            avg.append(got[0][~np.isin(got[0], b)][:12] if drop else got[0][:12])
        print(f"{'drop' if drop else 'keep'} bought: MAP@12 popularity "
              f"{map_at_k(pop, truth, 12):.4f}, mean of bought articles' vectors "
              f"{map_at_k(avg, truth, 12):.4f}")


if __name__ == "__main__":
    main()
