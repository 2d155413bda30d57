"""Tests of the synthetic product-photo renderer (stylehub_ray/synth/render.py)."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stylehub_ray.synth.render import (
    COLOUR_RGB,
    PATTERNS,
    SILHOUETTES,
    colour_rgb,
    pattern_for,
    render_article,
    render_to_jpeg,
    silhouette_for,
    silhouette_mask,
)

VOCAB = json.loads(
    (Path(__file__).resolve().parents[1] / "stylehub_ray/synth/hm_vocab.json").read_text()
)
COLOURS = sorted({c["colour_group_name"] for c in VOCAB["colours"]})
APPEARANCES = [g["graphical_appearance_name"] for g in VOCAB["graphical_appearances"]]
TYPES = [(p["product_group_name"], p["product_type_name"]) for p in VOCAB["product_types"]]

UPPER, LOWER, FULL = "Garment Upper body", "Garment Lower body", "Garment Full body"


def _pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.float64)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def _intensity_steps(img: Image.Image, mask: np.ndarray) -> tuple[float, float]:
    """Mean absolute grey-level step between vertical and horizontal neighbours inside mask."""
    g = np.asarray(img.convert("L"), dtype=np.float64)
    dv = np.abs(np.diff(g, axis=0))[mask[1:] & mask[:-1]].mean()
    dh = np.abs(np.diff(g, axis=1))[mask[:, 1:] & mask[:, :-1]].mean()
    return float(dv), float(dh)


def test_colour_table_covers_every_vocab_colour() -> None:
    assert len(COLOURS) == 50
    assert set(COLOURS) <= set(COLOUR_RGB)
    for name, rgb in COLOUR_RGB.items():
        assert len(rgb) == 3 and all(0 <= v <= 255 for v in rgb), name
    # Light/Dark variants keep the perceived order of the plain colour.
    for hue in ("Blue", "Red", "Green", "Grey", "Pink", "Purple", "Turquoise"):
        light, plain, dark = (sum(COLOUR_RGB[f"{m}{hue}"]) for m in ("Light ", "", "Dark "))
        assert light > plain > dark, hue


@pytest.mark.parametrize(
    ("group", "ptype", "colour"),
    [
        (UPPER, "T-shirt", "Red"),
        (LOWER, "Trousers", "Dark Blue"),
        (FULL, "Dress", "Light Beige"),
        ("Accessories", "Bag", "Green"),
        (UPPER, "Hoodie", "Yellow"),
        ("Underwear", "Bra", "Black"),
    ],
)
def test_solid_article_mean_colour_is_its_colour(group: str, ptype: str, colour: str) -> None:
    for seed in range(3):
        img = _pixels(render_article(group, ptype, colour, "Solid", seed=seed))
        inside = silhouette_mask(group, ptype, seed=seed) > 0.99
        assert inside.sum() > 300
        mean = img[inside].mean(axis=0)
        assert np.abs(mean - np.array(COLOUR_RGB[colour])).max() < 20, (ptype, seed, mean)


def test_rendered_article_covers_its_silhouette_mask() -> None:
    img = _pixels(render_article(LOWER, "Trousers", "Dark Blue", "Solid", seed=3))
    drawn = (255 - img).sum(axis=2) > 60
    assert _iou(drawn, silhouette_mask(LOWER, "Trousers", seed=3) > 0.5) > 0.95


@pytest.mark.parametrize("size", [(96, 128), (64, 64), (160, 120)])
def test_background_corners_are_white_for_every_silhouette(size: tuple[int, int]) -> None:
    for i, shape in enumerate(SILHOUETTES):
        # A vocabulary type drawn with this shape (every shape has one, see the next test).
        group, ptype = next(((g, t) for g, t in TYPES if silhouette_for(g, t) == shape),
                            ("Unknown", "Unknown"))
        img = np.asarray(render_article(group, ptype, "Black", "Check", size=size, seed=i))
        for corner in (img[:4, :4], img[:4, -4:], img[-4:, :4], img[-4:, -4:]):
            assert (corner == 255).all(), (shape, size)


def test_every_silhouette_is_reachable_from_the_vocabulary() -> None:
    reached = {silhouette_for(g, t) for g, t in TYPES}
    # No dead shapes: every silhouette, sets included, is drawn for some real type.
    assert set(SILHOUETTES) - reached == set()


def test_product_groups_give_different_silhouettes() -> None:
    kinds = {
        "trousers": (LOWER, "Trousers"),
        "dress": (FULL, "Dress"),
        "bag": ("Accessories", "Bag"),
        "t-shirt": (UPPER, "T-shirt"),
        "sneakers": ("Shoes", "Sneakers"),
    }
    for seed in range(5):
        masks = {k: silhouette_mask(g, t, seed=seed) > 0.5 for k, (g, t) in kinds.items()}
        names = list(masks)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                assert _iou(masks[a], masks[b]) < 0.8, (a, b, seed)


def test_product_type_refines_the_group_shape() -> None:
    assert silhouette_for(UPPER, "Vest top") == "vest_top"
    assert silhouette_for(UPPER, "Sweater") == "sweater"
    assert silhouette_for(LOWER, "Shorts") == "shorts"
    # Sleeveless vs long-sleeved tops differ clearly even within one group.
    vest = silhouette_mask(UPPER, "Vest top") > 0.5
    sweater = silhouette_mask(UPPER, "Sweater") > 0.5
    assert _iou(vest, sweater) < 0.7
    shorts = silhouette_mask(LOWER, "Shorts") > 0.5
    trousers = silhouette_mask(LOWER, "Trousers") > 0.5
    assert _iou(shorts, trousers) < 0.6


def test_stripes_add_intensity_variation_over_solid() -> None:
    for colour in ("Dark Blue", "Light Grey", "Red", "White", "Black"):
        for seed in range(4):
            inside = silhouette_mask(UPPER, "Sweater", seed=seed) > 0.99
            solid = _intensity_steps(render_article(UPPER, "Sweater", colour, "Solid",
                                                    seed=seed), inside)
            stripe = _intensity_steps(render_article(UPPER, "Sweater", colour, "Stripe",
                                                     seed=seed), inside)
            # Across the stripes (vertical steps for horizontal stripes, or vice versa).
            assert max(stripe) > 3 * max(solid) + 8, (colour, seed, solid, stripe)


def test_every_named_pattern_changes_the_fabric() -> None:
    group, ptype, colour = UPPER, "Sweater", "Dark Green"
    inside = silhouette_mask(group, ptype, seed=5) > 0.99
    solid = _pixels(render_article(group, ptype, colour, "Solid", seed=5))
    for appearance in APPEARANCES:
        pattern = pattern_for(appearance)
        assert pattern in PATTERNS
        img = _pixels(render_article(group, ptype, colour, appearance, seed=5))
        diff = np.abs(img - solid)[inside].mean()
        if appearance in ("Solid", "Unknown"):
            assert pattern == "solid" and diff == 0.0
        else:
            assert pattern != "solid"
            assert diff > 2.0, (appearance, diff)


def test_same_seed_is_deterministic_and_other_seed_differs() -> None:
    args = (FULL, "Dress", "Light Pink", "Dot")
    a = np.asarray(render_article(*args, seed=11))
    b = np.asarray(render_article(*args, seed=11))
    c = np.asarray(render_article(*args, seed=12))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 1.0
    assert render_to_jpeg(*args, seed=11) == render_to_jpeg(*args, seed=11)
    # The jitter is small: the silhouettes still largely overlap.
    assert _iou(silhouette_mask(FULL, "Dress", seed=11) > 0.5,
                silhouette_mask(FULL, "Dress", seed=12) > 0.5) > 0.7


def test_every_vocab_colour_appearance_and_type_renders() -> None:
    for i, colour in enumerate(COLOURS):
        img = render_article(UPPER, "T-shirt", colour, "Solid", seed=i)
        px = np.asarray(img)
        assert img.size == (96, 128) and img.mode == "RGB"
        # Even White and Transparent stay visible through the darker rim.
        assert (px.astype(int).sum(axis=2) < 750).sum() > 100, colour
    for i, appearance in enumerate(APPEARANCES):
        img = render_article(FULL, "Dress", "Blue", appearance, seed=i)
        assert img.size == (96, 128) and img.mode == "RGB"
    for i, (group, ptype) in enumerate(TYPES):
        px = np.asarray(render_article(group, ptype, "Black", "Solid", seed=i))
        assert (px.sum(axis=2) < 300).sum() > 40, (group, ptype)


def test_every_vocab_type_and_appearance_has_a_specific_mapping() -> None:
    for group, ptype in TYPES:
        if ptype not in ("Unknown", "Other accessories"):
            assert silhouette_for(group, ptype) != "generic", (group, ptype)
    assert {pattern_for(a) for a in APPEARANCES} == set(PATTERNS)


def test_unknown_names_fall_back_without_raising() -> None:
    assert silhouette_for("Spaceship", "Warp drive") == "generic"
    assert silhouette_for("Garment Lower body", "Cargo pants") == "trousers"
    assert silhouette_for("Shoes", "Moon boots") == "boot"
    assert silhouette_for("Garment Upper body", "Quantum garment") == "tshirt"
    assert colour_rgb("Mystery") == COLOUR_RGB["Unknown"]
    assert colour_rgb("navy") == COLOUR_RGB["Dark Blue"]
    assert colour_rgb("dark red") == COLOUR_RGB["Dark Red"]
    assert colour_rgb("Dark Mauve Blue") != COLOUR_RGB["Blue"]  # shaded, still blue
    assert pattern_for("Pinstripe") == "stripe"
    assert pattern_for("Something new") == "solid"
    for args in [("Spaceship", "Warp drive", "Mystery", "Holographic"), ("", "", "", ""),
                 (None, float("nan"), None, 3)]:
        img = render_article(*args, seed=1)  # type: ignore[arg-type]
        assert img.size == (96, 128)
        assert (np.asarray(img) < 250).any()


def test_bad_size_is_rejected_with_the_value() -> None:
    with pytest.raises(ValueError, match=r"\(0, 10\)"):
        render_article(UPPER, "T-shirt", "Red", "Solid", size=(0, 10))


@pytest.mark.parametrize("size", [(96, 128), (64, 64), (224, 224)])
def test_jpeg_bytes_decode_to_requested_size(size: tuple[int, int]) -> None:
    data = render_to_jpeg(LOWER, "Skirt", "Dark Red", "Check", size=size, seed=2)
    assert data[:2] == b"\xff\xd8"  # JPEG SOI marker
    img = Image.open(io.BytesIO(data))
    assert img.format == "JPEG" and img.mode == "RGB" and img.size == size
    # Lossy, but close to the lossless render.
    ref = _pixels(render_article(LOWER, "Skirt", "Dark Red", "Check", size=size, seed=2))
    assert np.abs(_pixels(img.convert("RGB")) - ref).mean() < 8


@pytest.mark.slow
def test_render_throughput_at_least_300_per_second() -> None:
    n = 600
    start = time.perf_counter()
    for i in range(n):
        group, ptype = TYPES[i % len(TYPES)]
        render_article(group, ptype, COLOURS[i % len(COLOURS)],
                       APPEARANCES[i % len(APPEARANCES)], seed=i)
    rate = n / (time.perf_counter() - start)
    assert rate >= 300, f"{rate:.0f} images/s"
