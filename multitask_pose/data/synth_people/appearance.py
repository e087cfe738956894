"""SynthPeople appearance: colours, materials and the sampled look of a person (skin, hair,
clothes, front-only clothing marks)."""
from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Tuple

import numpy as np

# Materials (palette rows) for colouring.
_M_SKIN, _M_HAIR, _M_SHIRT, _M_PANTS, _M_SHOES, _M_EYE, _M_WHITE, _M_MOUTH, _M_ALT = range(9)

# Skin tones, hair colours (BGR).
_SKIN_TONES = np.array([
    (196, 224, 255), (170, 205, 245), (148, 205, 255), (125, 194, 241), (105, 172, 224),
    (90, 150, 205), (66, 134, 198), (50, 105, 165), (36, 85, 141), (23, 51, 92),
], np.float32)
_HAIR_COLOURS = np.array([
    (18, 18, 22), (25, 30, 40), (30, 45, 70), (40, 70, 110), (90, 150, 200), (120, 180, 220),
    (150, 150, 155), (210, 210, 215), (30, 60, 150),
], np.float32)
_HAIR_P = np.array([0.26, 0.2, 0.16, 0.12, 0.07, 0.05, 0.07, 0.03, 0.04])


def _hsv_bgr(h: float, s: float, v: float) -> np.ndarray:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return np.array([b * 255, g * 255, r * 255], np.float32)


def _random_colour(rng: np.random.Generator, sat=(0.0, 1.0), val=(0.1, 1.0)) -> np.ndarray:
    return _hsv_bgr(rng.random(), rng.uniform(*sat), rng.uniform(*val))


@dataclass
class _Appearance:
    palette: np.ndarray  # (9, 3) BGR per material
    sleeve_ua: float  # upper arm coordinate below which the sleeve covers it (0 = sleeveless)
    sleeve_fa: float
    pant_th: float
    pant_sh: float
    # torso coordinate (0..5 over the 5 segments, 1 = hips, 2 = waist) below which trousers show
    belt: float
    stripes: float  # stripe frequency on the shirt (0 = plain)
    hair: bool
    hairline: float
    hair_low: float
    front_marks: Tuple[str, ...]
    mark_colour: np.ndarray


def _sample_appearance(rng: np.random.Generator) -> _Appearance:
    skin = _SKIN_TONES[rng.integers(len(_SKIN_TONES))] * rng.uniform(0.9, 1.08)
    hair = _HAIR_COLOURS[rng.choice(len(_HAIR_COLOURS), p=_HAIR_P)] * rng.uniform(0.85, 1.15)
    shirt = _random_colour(rng, (0.0, 0.9), (0.15, 0.95))
    if rng.random() < 0.35:  # jeans-like trousers are common
        pants = _hsv_bgr(rng.uniform(0.55, 0.65), rng.uniform(0.3, 0.7), rng.uniform(0.25, 0.6))
    else:
        pants = _random_colour(rng, (0.0, 0.6), (0.08, 0.7))
    shoes = _random_colour(rng, (0.0, 0.5), (0.05, 0.6))
    alt = _random_colour(rng, (0.0, 0.9), (0.2, 1.0))
    palette = np.stack([skin, hair, shirt, pants, shoes, np.array([30, 25, 25], np.float32),
                        np.array([225, 230, 235], np.float32),
                        skin * np.array([0.55, 0.5, 0.8], np.float32), alt])
    sleeve = rng.choice(4, p=[0.4, 0.4, 0.1, 0.1])  # long, short, sleeveless, three-quarter
    sleeve_ua, sleeve_fa = [(1.1, 0.95), (0.55, 0.0), (0.0, 0.0), (1.1, 0.5)][sleeve]
    shorts = rng.random() < 0.2
    marks = [("vneck", "collar_buttons", "print", "collar_zip", "round_neck")[rng.integers(5)]]
    if rng.random() < 0.35:
        marks.append("print")
    return _Appearance(
        palette=np.clip(palette, 0, 255), sleeve_ua=sleeve_ua, sleeve_fa=sleeve_fa,
        pant_th=0.6 if shorts else 1.1, pant_sh=0.0 if shorts else 0.95,
        belt=float(rng.uniform(1.45, 1.8)),
        stripes=float(rng.uniform(3, 7)) if rng.random() < 0.25 else 0.0,
        hair=rng.random() > 0.05, hairline=float(rng.uniform(0.42, 0.62)),
        hair_low=float(rng.uniform(-0.35, 0.0)),
        front_marks=tuple(dict.fromkeys(marks)),
        mark_colour=_random_colour(rng, (0.0, 1.0), (0.0, 1.0)),
    )
