"""SynthPeople scene: background noise and textures, and distractor shapes."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from .appearance import _random_colour

_NOISE_BANK: Optional[np.ndarray] = None


def _noise(rng: np.random.Generator, h: int, w: int, channels: int) -> np.ndarray:
    """Standard-normal noise (h, w, channels) float32: a random crop of a fixed bank.

    Drawing fresh normals costs ~3 ms per 320 px image on a slow CPU, more than the rest of the
    background. The bank is built from a fixed seed, so crops are deterministic; a random offset,
    flips and channel order make repeats invisible.
    """
    global _NOISE_BANK
    if _NOISE_BANK is None:
        _NOISE_BANK = np.random.default_rng(20240611).standard_normal((768, 768, 3),
                                                                      dtype=np.float32)
    bank = _NOISE_BANK
    size = bank.shape[0]
    if h > size or w > size:  # very large images: tile
        reps = (-(-h // size), -(-w // size), 1)
        bank = np.tile(bank, reps)
    y = int(rng.integers(0, bank.shape[0] - h + 1))
    x = int(rng.integers(0, bank.shape[1] - w + 1))
    sy, sx = (1 if rng.random() < 0.5 else -1), (1 if rng.random() < 0.5 else -1)
    crop = bank[y:y + h, x:x + w][::sy, ::sx]
    ch = rng.permutation(3)[:channels]
    return crop[..., ch]


def _blend(img: np.ndarray, mask: np.ndarray, colour: np.ndarray, alpha: float) -> np.ndarray:
    """img where mask is 0, img*(1-alpha) + colour*alpha where it is 1 (mask: (h, w, 1) float32)."""
    return img + (mask * np.float32(alpha)) * (colour.astype(np.float32) - img)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Random textured background: gradient, low-frequency colour noise, stripes, a floor, blobs."""
    xs = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    ys = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    a = rng.uniform(0, 2 * np.pi)
    g = xs * np.float32(math.cos(a)) + ys * np.float32(math.sin(a))
    g = (g - g.min()) / max(float(g.max() - g.min()), 1e-6)
    c0, c1 = _random_colour(rng), _random_colour(rng)
    img = c0 + g[..., None] * (c1 - c0)
    if rng.random() < 0.85:  # low-frequency colour noise (clouds, walls, foliage at a distance)
        gh, gw = rng.integers(2, 12, size=2)
        small = rng.normal(0, 1, (gh, gw, 3)).astype(np.float32)
        img += (cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
                * np.float32(rng.uniform(10, 45)))
    if rng.random() < 0.4:  # floor / wall split
        y = int(h * rng.uniform(0.3, 0.8))
        img[y:] = (img[y:] * np.float32(rng.uniform(0.4, 0.9))
                   + _random_colour(rng) * np.float32(rng.uniform(0.1, 0.6)))
    if rng.random() < 0.35:  # stripes, planks, tiles
        b = rng.uniform(0, np.pi)
        period = rng.uniform(0.02, 0.2) * max(h, w)
        phase = xs * np.float32(math.cos(b) * w) + ys * np.float32(math.sin(b) * h)
        st = np.sin(phase * np.float32(2 * np.pi / period))
        m = (st > rng.uniform(-0.5, 0.5)).astype(np.float32)[..., None]
        img = _blend(img, m, _random_colour(rng), rng.uniform(0.2, 0.8))
    img = np.ascontiguousarray(img, dtype=np.float32)
    for _ in range(rng.integers(0, 9)):  # blobs
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (int(rng.integers(3, max(4, w // 3))), int(rng.integers(3, max(4, h // 3))))
        cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360,
                    tuple(float(x) for x in _random_colour(rng)), -1, cv2.LINE_8)
    if rng.random() < 0.5:  # out of focus
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.8, 3.0))
    if rng.random() < 0.6:  # fine grain (sand, fabric, foliage)
        img += _noise(rng, h, w, 1) * np.float32(rng.uniform(3, 18))
    return img


@dataclass
class _Distractor:
    x0: int
    y0: int
    mask: np.ndarray  # bool, window
    colour: np.ndarray  # float32 BGR, window
    depth_key: float


def _distractor(rng: np.random.Generator, h: int, w: int,
                depth_key: float) -> Optional[_Distractor]:
    """A non-person shape: rotated rectangle, disc/ellipse, pole, random polygon or limb-like
    bar."""
    kind = rng.choice(5, p=[0.3, 0.2, 0.2, 0.2, 0.1])
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    size = max(h, w) * math.exp(rng.uniform(math.log(0.03), math.log(0.35)))
    if kind == 0:
        rect = ((cx, cy), (size * rng.uniform(0.3, 1.0), size * rng.uniform(0.3, 1.0)),
                rng.uniform(0, 180))
        pts = cv2.boxPoints(rect)
    elif kind == 1:
        axes = (max(2, int(size / 2)), max(2, int(size / 2 * rng.uniform(0.5, 1.0))))
        pts = cv2.ellipse2Poly((int(cx), int(cy)), axes, int(rng.uniform(0, 180)), 0, 360,
                               10).astype(np.float32)
    elif kind == 2:  # pole: thin and long, roughly vertical, often spans the image
        rect = ((cx, cy), (rng.uniform(2, 12), h * rng.uniform(0.5, 1.5)), rng.normal(0, 8))
        pts = cv2.boxPoints(rect)
    elif kind == 3:
        k = rng.integers(3, 9)
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        rad = size / 2 * rng.uniform(0.4, 1.0, k)
        pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1).astype(np.float32)
    else:  # a limb-like bar (a pipe, a branch, a bag strap): honest clutter for a limb detector
        a = rng.uniform(0, np.pi)
        d = np.array([math.cos(a), math.sin(a)]) * size / 2
        th = rng.uniform(3, 14)
        n = np.array([-d[1], d[0]]) / max(np.linalg.norm(d), 1e-6) * th / 2
        c = np.array([cx, cy])
        pts = np.array([c - d - n, c - d + n, c + d + n, c + d - n], np.float32)
    x0, y0 = max(int(math.floor(pts[:, 0].min())), 0), max(int(math.floor(pts[:, 1].min())), 0)
    x1, y1 = (min(int(math.ceil(pts[:, 0].max())) + 1, w),
              min(int(math.ceil(pts[:, 1].max())) + 1, h))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    poly = np.round((pts - np.array([x0 + 0.5, y0 + 0.5])) * 16).astype(np.int32)
    cv2.fillPoly(mask, [poly], 1, cv2.LINE_8, shift=4)
    mask = mask.astype(bool)
    if not mask.any():
        return None
    hh, ww = mask.shape
    c0 = _random_colour(rng)
    col = np.empty((hh, ww, 3), np.float32)
    col[...] = c0
    style = rng.random()
    if style < 0.25:  # gradient
        g = np.linspace(0, 1, ww, dtype=np.float32)[None, :, None] if rng.random() < 0.5 else \
            np.linspace(0, 1, hh, dtype=np.float32)[:, None, None]
        col = col + g * (_random_colour(rng) - c0)
    elif style < 0.45:  # stripes
        yy, xx = np.mgrid[0:hh, 0:ww].astype(np.float32)
        b = rng.uniform(0, np.pi)
        st = np.sin((xx * math.cos(b) + yy * math.sin(b)) / rng.uniform(2, 8)) > 0
        col[st] = _random_colour(rng)
    col += rng.standard_normal((hh, ww, 1), dtype=np.float32) * rng.uniform(0, 10)
    return _Distractor(x0, y0, mask, col, depth_key)
