"""SynthPeople rasterisation: a per-person canvas with a depth buffer, and the drawing of tapered
capsules, ellipsoids and torso segments into it."""
from __future__ import annotations

import math

import cv2
import numpy as np


class _Canvas:
    """Per-person buffers over a window of the image plane (may extend past the image): depth,
    part id, a coordinate along the part (for sleeves/stripes), surface normal, and head-surface
    coordinates (for hair / face)."""

    def __init__(self, x0: int, y0: int, x1: int, y1: int):
        self.x0, self.y0 = x0, y0
        h, w = y1 - y0, x1 - x0
        self.depth = np.full((h, w), np.inf, np.float32)
        self.part = np.full((h, w), -1, np.int8)
        self.t = np.zeros((h, w), np.float32)
        self.nrm = np.zeros((h, w, 3), np.float32)
        self.aux = np.zeros((h, w, 3), np.float32)

    def window(self, umin, umax, vmin, vmax):
        """Slices of the buffers covering ``[umin, umax] x [vmin, vmax]`` and the pixel-centre
        coordinates of that window (row vector X, column vector Y), or None if empty."""
        h, w = self.part.shape
        c0 = max(int(math.floor(umin)) - self.x0, 0)
        c1 = min(int(math.ceil(umax)) - self.x0 + 1, w)
        r0 = max(int(math.floor(vmin)) - self.y0, 0)
        r1 = min(int(math.ceil(vmax)) - self.y0 + 1, h)
        if c1 <= c0 or r1 <= r0:
            return None
        xs = (np.arange(c0, c1, dtype=np.float32) + (self.x0 + 0.5))[None, :]
        ys = (np.arange(r0, r1, dtype=np.float32) + (self.y0 + 0.5))[:, None]
        return (slice(r0, r1), slice(c0, c1)), xs, ys

    def commit(self, sl, inside, depth, pid, t, nrm, aux=None):
        zb = self.depth[sl]
        upd = inside & (depth < zb)
        if not upd.any():
            return
        zb[upd] = depth[upd]
        self.part[sl][upd] = pid
        self.t[sl][upd] = t[upd] if isinstance(t, np.ndarray) else t
        nb = self.nrm[sl]
        for k in range(3):
            nb[..., k][upd] = nrm[k][upd]
        if aux is not None:
            ab = self.aux[sl]
            for k in range(3):
                ab[..., k][upd] = aux[k][upd]


def _draw_capsule(cv: _Canvas, pid: int, p0, p1, r0: float, r1: float) -> None:
    """Tapered capsule between 3D image-space points (radius linear along the axis)."""
    win = cv.window(min(p0[0] - r0, p1[0] - r1), max(p0[0] + r0, p1[0] + r1),
                    min(p0[1] - r0, p1[1] - r1), max(p0[1] + r0, p1[1] + r1))
    if win is None:
        return
    sl, xs, ys = win
    eu, ev = float(p1[0] - p0[0]), float(p1[1] - p0[1])
    l2 = eu * eu + ev * ev
    du, dv = xs - np.float32(p0[0]), ys - np.float32(p0[1])
    if l2 > 1e-6:
        t = np.clip((du * eu + dv * ev) * np.float32(1.0 / l2), 0.0, 1.0)
    else:
        t = np.zeros(np.broadcast_shapes(du.shape, dv.shape), np.float32)
    cu, cvv = du - t * eu, dv - t * ev
    rr = r0 + (r1 - r0) * t
    rho2 = cu * cu + cvv * cvv
    inside = rho2 < rr * rr
    if not inside.any():
        return
    hgt = np.sqrt(np.maximum(rr * rr - rho2, 0.0))
    depth = float(p0[2]) + t * float(p1[2] - p0[2]) - hgt
    inv = 1.0 / rr
    cv.commit(sl, inside, depth, pid, t, (cu * inv, cvv * inv, -hgt * inv))


def _draw_ellipsoid(cv: _Canvas, pid: int, c, axes: np.ndarray, semi: np.ndarray,
                    with_aux: bool) -> None:
    """Exact orthographic ray-cast of an ellipsoid (``axes`` columns in image space)."""
    amat = (axes / semi ** 2) @ axes.T
    ext = np.sqrt(((axes * semi) ** 2).sum(axis=1))
    win = cv.window(c[0] - ext[0], c[0] + ext[0], c[1] - ext[1], c[1] + ext[1])
    if win is None:
        return
    sl, xs, ys = win
    du, dv = xs - np.float32(c[0]), ys - np.float32(c[1])
    auu, auv, aud, avv, avd, add = (float(amat[0, 0]), float(amat[0, 1]), float(amat[0, 2]),
                                    float(amat[1, 1]), float(amat[1, 2]), float(amat[2, 2]))
    b = aud * du + avd * dv
    q = auu * du * du + 2.0 * auv * du * dv + avv * dv * dv - 1.0
    disc = b * b - add * q
    inside = disc > 0
    if not inside.any():
        return
    dd = (-b - np.sqrt(np.maximum(disc, 0.0))) / add
    du, dv = np.broadcast_to(du, dd.shape), np.broadcast_to(dv, dd.shape)
    nx = auu * du + auv * dv + aud * dd
    ny = auv * du + avv * dv + avd * dd
    nz = aud * du + avd * dv + add * dd
    inv = 1.0 / np.maximum(np.sqrt(nx * nx + ny * ny + nz * nz), 1e-9)
    aux = None
    if with_aux:  # point on the unit sphere in head coordinates (left, up, forward)
        aux = tuple((axes[0, k] * du + axes[1, k] * dv + axes[2, k] * dd) / semi[k]
                    for k in range(3))
    cv.commit(sl, inside, float(c[2]) + dd, pid, 0.0, (nx * inv, ny * inv, nz * inv), aux)


def _draw_torso_segment(cv: _Canvas, pid: int, sa, sb, t_offset: float) -> None:
    """Trunk between two elliptical cross-sections: silhouette = convex hull of the two projected
    ellipses; depth/normal from an elliptical-cylinder approximation along the projected axis."""
    ang = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    cos, sin = np.cos(ang)[:, None], np.sin(ang)[:, None]
    pts = []
    for c, lv, fv, a, b in (sa, sb):
        pts.append(c[None, :2] + a * cos * lv[None, :2] + b * sin * fv[None, :2])
    pts = np.concatenate(pts)
    win = cv.window(pts[:, 0].min(), pts[:, 0].max(), pts[:, 1].min(), pts[:, 1].max())
    if win is None:
        return
    sl, xs, ys = win
    hull = cv2.convexHull(pts.astype(np.float32))[:, 0, :]
    mask = np.zeros((ys.shape[0], xs.shape[1]), np.uint8)
    poly = np.round((hull - np.array([xs[0, 0], ys[0, 0]], np.float32)) * 16).astype(np.int32)
    cv2.fillConvexPoly(mask, poly, 1, lineType=cv2.LINE_8, shift=4)
    inside = mask.astype(bool)
    if not inside.any():
        return
    ca, cb = sa[0], sb[0]
    eu, ev = float(cb[0] - ca[0]), float(cb[1] - ca[1])
    l2 = eu * eu + ev * ev
    if l2 > 1e-6:
        ln = math.sqrt(l2)
        pu, pv = -ev / ln, eu / ln
    else:
        pu, pv = 1.0, 0.0

    def view_params(sec):
        _, lv, fv, a, b = sec
        w = math.sqrt((a * (lv[0] * pu + lv[1] * pv)) ** 2 + (b * (fv[0] * pu + fv[1] * pv)) ** 2)
        dpt = 1.0 / math.sqrt((lv[2] / a) ** 2 + (fv[2] / b) ** 2 + 1e-12)
        return max(w, 0.5), min(dpt, max(a, b))

    wa, da = view_params(sa)
    wb, db = view_params(sb)
    du, dv = xs - np.float32(ca[0]), ys - np.float32(ca[1])
    t = (np.clip((du * eu + dv * ev) / l2, 0.0, 1.0) if l2 > 1e-6
         else np.zeros(mask.shape, np.float32))
    rho = (du - t * eu) * pu + (dv - t * ev) * pv
    q = np.clip(rho / (wa + (wb - wa) * t), -1.0, 1.0)
    hgt = np.sqrt(1.0 - q * q)
    depth = float(ca[2]) + t * float(cb[2] - ca[2]) - (da + (db - da) * t) * hgt
    cv.commit(sl, inside, depth, pid, t + t_offset, (q * pu, q * pv, -hgt))
