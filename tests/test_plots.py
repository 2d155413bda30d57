"""stylehub_ray.plots: every figure from plain data is a PNG of the expected size (no Ray)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from stylehub_ray import plots


def _size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG"
    return img.size


def test_metric_vs_param_is_a_fixed_size_figure_for_numeric_categorical_and_empty():
    x = np.array([1e-4, 1e-3, 1e-3, 1e-2])
    y = np.array([0.5, 0.6, 0.7, 0.55])
    complete = np.array([True, True, False, True])
    numeric = plots.metric_vs_param_png(x, y, complete, [1e-4, 1e-3, 1e-2], [0.5, 0.65, 0.55],
                                        (1e-3, 0.7), param="lr", metric="val_auc", log=True)
    categorical = plots.metric_vs_param_png([0, 1, 1], [0.5, 0.6, 0.7], [True, True, True],
                                            [0, 1], [0.5, 0.65], (1, 0.7), param="aug",
                                            metric="val_auc", labels=["crop", "flip"])
    empty = plots.metric_vs_param_png([], [], [], [], [], None, param="lr", metric="val_auc")
    # Figure(5.0 x 3.6 in, dpi 110), saved without trimming: 550 x 396 pixels.
    assert {_size(numeric), _size(categorical), _size(empty)} == {(550, 396)}
    assert len({numeric, categorical, empty}) == 3


def test_model_bars_grow_with_the_rows():
    def scored(v: float) -> dict:
        return {"metrics": {"map@12": v, "recall@12": 2 * v}, "ci": {"map@12": [0.9 * v, 1.1 * v]}}

    rows = [("oracle (realized)", scored(0.3)), ("two-tower/default drop", scored(0.05)),
            ("popularity drop", {"metrics": {"map@12": 0.02, "recall@12": 0.04}})]
    few = _size(plots.model_bars_png(rows[:1], ("map@12", "recall@12"), "t"))
    many = _size(plots.model_bars_png(rows, ("map@12", "recall@12"), "t"))
    assert many[1] > few[1]


def test_curves_histograms_and_maps_render():
    history = [{"epoch": i, "loss": 1 / (i + 1), "val_pos_dist": 0.3, "val_neg_dist": 0.6,
                "val_recall5": 0.1 * i, "auc": 0.6, "precision": 0.1, "recall": None}
               for i in range(3)]
    rng = np.random.default_rng(0)
    measures = {"pos": rng.random(50), "neg": rng.random(50) + 0.5, "pos_dist": 0.5,
                "neg_dist": 1.0}
    no_neg = {**measures, "neg": np.array([])}
    xy = rng.standard_normal((60, 2))
    groups = np.array([f"g{i % 12}" for i in range(60)], dtype=object)
    pngs = [
        plots.training_curves_png(history),
        plots.contrastive_history_png("text", history),
        plots.distance_histograms_png("text", (("trained", measures), ("input", no_neg))),
        plots.group_map_png(xy, groups, "map"),
        plots.embedding_map_png(rng.standard_normal((60, 8)), groups, 40, seed=1),
    ]
    for png in pngs:
        w, h = _size(png)
        assert w > 300 and h > 200
    # The same data and seed draw the same bytes.
    assert plots.embedding_map_png(xy @ np.ones((2, 4)), groups, 40, seed=1) == \
        plots.embedding_map_png(xy @ np.ones((2, 4)), groups, 40, seed=1)
