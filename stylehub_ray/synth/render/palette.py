"""Colours of the synthetic product photos: one RGB per H&M colour group, the fallback for
names outside the vocabulary, mixing, brightness, the per-photo shade jitter and the contrast
colour of prints."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RGB = tuple[int, int, int]

# One RGB per colour_group_name of hm_vocab.json (all 50). Values follow the H&M naming: the
# "Light"/"Dark" variants are tints/shades of the plain colour and "Other X" is a muted X, so
# the colour groups an encoder must separate stay ordered the way shoppers perceive them.
COLOUR_RGB: dict[str, RGB] = {
    "Black": (28, 28, 30),
    "White": (250, 250, 248),
    "Off White": (243, 239, 226),
    "Light Grey": (200, 200, 202),
    "Grey": (140, 140, 143),
    "Dark Grey": (78, 78, 82),
    "Light Beige": (236, 222, 196),
    "Beige": (216, 196, 160),
    "Dark Beige": (172, 146, 110),
    "Greyish Beige": (180, 170, 150),
    "Yellowish Brown": (150, 106, 48),
    "Greenish Khaki": (122, 122, 78),
    "Light Yellow": (250, 238, 160),
    "Yellow": (242, 208, 40),
    "Dark Yellow": (200, 160, 30),
    "Other Yellow": (226, 200, 96),
    "Light Orange": (250, 184, 126),
    "Orange": (238, 128, 36),
    "Dark Orange": (196, 86, 28),
    "Other Orange": (216, 124, 76),
    "Light Red": (236, 112, 112),
    "Red": (200, 30, 42),
    "Dark Red": (128, 22, 36),
    "Other Red": (184, 60, 60),
    "Light Pink": (246, 194, 208),
    "Pink": (238, 146, 178),
    "Dark Pink": (196, 58, 110),
    "Other Pink": (218, 132, 160),
    "Light Purple": (200, 176, 226),
    "Purple": (118, 60, 150),
    "Dark Purple": (74, 36, 90),
    "Other Purple": (142, 96, 150),
    "Light Blue": (160, 196, 232),
    "Blue": (44, 84, 172),
    "Dark Blue": (26, 36, 82),
    "Other Blue": (74, 112, 160),
    "Light Turquoise": (150, 220, 214),
    "Turquoise": (36, 172, 172),
    "Dark Turquoise": (0, 108, 114),
    "Other Turquoise": (64, 166, 164),
    "Light Green": (170, 214, 164),
    "Green": (58, 140, 70),
    "Dark Green": (30, 74, 46),
    "Other Green": (92, 130, 92),
    "Gold": (212, 172, 60),
    "Silver": (190, 192, 198),
    "Bronze/Copper": (180, 112, 56),
    # Clear plastic/organza photographs as a faint cool grey on a white table.
    "Transparent": (222, 226, 232),
    # No hue is known for these two: a neutral mid tone keeps them away from every real group.
    "Other": (150, 134, 142),
    "Unknown": (128, 128, 128),
}

# Colours used for prints, dots and stripes: the H&M palette's most common contrast colours.
_ACCENT_NAMES = (
    "Black", "White", "Off White", "Red", "Dark Blue", "Yellow", "Light Pink", "Green",
    "Orange", "Light Blue", "Dark Red", "Beige",
)


def norm_name(name: object) -> str:
    """Lower-case, stripped name; None/NaN and other non-strings become '' (-> fallback)."""
    if not isinstance(name, str):
        return ""
    return " ".join(name.strip().lower().split())


_COLOUR_BY_KEY = {k.lower(): v for k, v in COLOUR_RGB.items()}
# Words that name a hue in free text, mapped to a colour group, for names outside the vocabulary.
_COLOUR_WORDS = {
    "black": "Black", "white": "White", "cream": "Off White", "ivory": "Off White",
    "grey": "Grey", "gray": "Grey", "beige": "Beige", "sand": "Beige", "camel": "Dark Beige",
    "brown": "Yellowish Brown", "khaki": "Greenish Khaki", "olive": "Greenish Khaki",
    "yellow": "Yellow", "mustard": "Dark Yellow", "orange": "Orange", "rust": "Dark Orange",
    "red": "Red", "burgundy": "Dark Red", "wine": "Dark Red", "pink": "Pink",
    "purple": "Purple", "lilac": "Light Purple", "violet": "Purple", "blue": "Blue",
    "navy": "Dark Blue", "denim": "Blue", "turquoise": "Turquoise", "teal": "Dark Turquoise",
    "mint": "Light Turquoise", "green": "Green", "gold": "Gold", "silver": "Silver",
    "copper": "Bronze/Copper", "bronze": "Bronze/Copper",
}


def colour_rgb(colour_group_name: object) -> RGB:
    """RGB of a colour group; unknown names fall back by hue word and light/dark modifier."""
    key = norm_name(colour_group_name)
    if key in _COLOUR_BY_KEY:
        return _COLOUR_BY_KEY[key]
    words = key.replace("/", " ").replace("-", " ").split()
    for word in reversed(words):  # the hue is usually the last word: "Dusty Light Pink"
        if word in _COLOUR_WORDS:
            r, g, b = COLOUR_RGB[_COLOUR_WORDS[word]]
            if "light" in words or "pale" in words:
                return mix((r, g, b), (255, 255, 255), 0.45)
            if "dark" in words or "deep" in words:
                return (int(r * 0.55), int(g * 0.55), int(b * 0.55))
            return (r, g, b)
    return COLOUR_RGB["Unknown"]


def mix(a: Sequence[float], b: Sequence[float], t: float) -> RGB:
    """The colour a fraction ``t`` of the way from ``a`` to ``b``."""
    return (
        round(a[0] + (b[0] - a[0]) * t),
        round(a[1] + (b[1] - a[1]) * t),
        round(a[2] + (b[2] - a[2]) * t),
    )


def luma(c: Sequence[float]) -> float:
    """Perceived brightness (ITU-R 601 weights), 0..255."""
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def base_colour(colour_group_name: object, rng: np.random.Generator) -> np.ndarray:
    """(3,) float32 RGB of a colour group with shade jitter: the same colour photographs a
    little differently shot to shot."""
    base = np.asarray(colour_rgb(colour_group_name), dtype=np.float32)
    return np.clip(base * rng.uniform(0.95, 1.05) + rng.uniform(-4, 4, 3), 0, 255)


def accent_for(base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A contrast colour: another palette colour or a tint/shade, always clearly different."""
    lb = luma(base)
    if rng.random() < 0.5:
        names = [n for n in _ACCENT_NAMES if abs(luma(COLOUR_RGB[n]) - lb) > 70]
        if names:
            return np.array(COLOUR_RGB[names[int(rng.integers(len(names)))]], dtype=np.float32)
    if lb > 140:
        return base * 0.4
    return base + (255.0 - base) * 0.7

