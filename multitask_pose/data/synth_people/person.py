"""SynthPeople person: a posed, placed figure in image space; its rasterisation, colour rendering
and keypoints with their visibility tolerances."""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

from .appearance import (
    _M_ALT,
    _M_EYE,
    _M_HAIR,
    _M_MOUTH,
    _M_PANTS,
    _M_SHIRT,
    _M_SHOES,
    _M_SKIN,
    _M_WHITE,
    _Appearance,
)
from .body import (
    _BROW_DIR,
    _EYE_DIR,
    _FACE_FACING_MIN,
    _HEAD_SEMI,
    _KEYPOINT_PARTS,
    _PART,
    _PART_NAMES,
    _S_CHEST,
    _S_NECK,
    _S_SHOULDER,
    _S_WAIST,
    _TRUNK_JOINT_DEPTH,
    _Figure,
)
from .raster import _Canvas, _draw_capsule, _draw_ellipsoid, _draw_torso_segment


class _Person:
    """A posed, placed figure in image space, its buffers and its colour rendering."""

    def __init__(self, fig: _Figure, app: _Appearance, scale: float, r_glob: np.ndarray):
        self.fig, self.app, self.scale = fig, app, scale
        self.rot = np.diag([1.0, -1.0, -1.0]) @ r_glob  # body frame -> image space directions
        self.lin = scale * self.rot
        self.offset = np.zeros(3)
        self.canvas: Optional[_Canvas] = None
        self.depth_key = 0.0

    def to_img(self, p: np.ndarray) -> np.ndarray:
        return self.lin @ p + self.offset

    def extent(self) -> Tuple[float, float, float, float]:
        """Image-plane box (u0, v0, u1, v1) of all primitives at the current offset."""
        s = self.scale
        lo, hi = [], []
        for _, p0, p1, r0, r1 in self.fig.capsules:
            for p, r in ((p0, r0), (p1, r1)):
                q = self.to_img(p)[:2]
                lo.append(q - r * s)
                hi.append(q + r * s)
        for _, c, axes, semi in self.fig.ellipsoids:
            q = self.to_img(c)[:2]
            ext = np.sqrt((((self.rot @ axes) * (semi * s)) ** 2).sum(axis=1))[:2]
            lo.append(q - ext)
            hi.append(q + ext)
        for c, _, _, a, b in self.fig.sections:
            q = self.to_img(c)[:2]
            lo.append(q - max(a, b) * s)
            hi.append(q + max(a, b) * s)
        lo, hi = np.min(lo, axis=0), np.max(hi, axis=0)
        return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])

    def rasterise(self) -> None:
        u0, v0, u1, v1 = self.extent()
        cv = _Canvas(int(math.floor(u0)) - 1, int(math.floor(v0)) - 1,
                     int(math.ceil(u1)) + 2, int(math.ceil(v1)) + 2)
        s = self.scale
        min_r = 0.75  # px: keeps thin limbs of small people drawn, so their joints are on a pixel
        secs = [(self.to_img(c), self.rot @ lv, self.rot @ fv, a * s, b * s)
                for c, lv, fv, a, b in self.fig.sections]
        for i in range(len(secs) - 1):
            _draw_torso_segment(cv, _PART["torso"], secs[i], secs[i + 1], float(i))
        for name, p0, p1, r0, r1 in self.fig.capsules:
            if name == "nose" and r1 * s < 0.6:
                continue  # sub-pixel nose: the nose keypoint then sits on the head
            _draw_capsule(cv, _PART[name], self.to_img(p0), self.to_img(p1),
                          max(r0 * s, min_r), max(r1 * s, min_r))
        for name, c, axes, semi in self.fig.ellipsoids:
            if name != "head" and semi.max() * s < 0.8:
                continue
            _draw_ellipsoid(cv, _PART[name], self.to_img(c), self.rot @ axes,
                            np.maximum(semi * s, min_r), with_aux=name == "head")
        self.canvas = cv

    # -- colour -----------------------------------------------------------------------------
    def colourise(self, light: np.ndarray, ambient: float) -> np.ndarray:
        """BGR float32 image of the canvas (undefined outside the person's pixels)."""
        cv, app = self.canvas, self.app
        part = cv.part
        n = len(_PART_NAMES)
        # Per part: coordinate threshold, material below it, material at/above it.
        thr = np.full(n + 1, 2.0, np.float32)
        lo = np.full(n + 1, _M_SKIN, np.int8)
        hi = np.full(n + 1, _M_SKIN, np.int8)
        # Both sides get the same clothes: nothing but the facing direction tells left from right.
        for name, t_, a_, b_ in (("torso", app.belt, _M_PANTS, _M_SHIRT),
                                 ("upper_arm", app.sleeve_ua, _M_SHIRT, _M_SKIN),
                                 ("forearm", app.sleeve_fa, _M_SHIRT, _M_SKIN),
                                 ("thigh", app.pant_th, _M_PANTS, _M_SKIN),
                                 ("shin", app.pant_sh, _M_PANTS, _M_SKIN),
                                 ("foot", 2.0, _M_SHOES, _M_SHOES),
                                 ("hair", 2.0, _M_HAIR, _M_HAIR)):
            for part_name in ((name,) if name in _PART else (name + "_l", name + "_r")):
                i = _PART[part_name]
                thr[i], lo[i], hi[i] = t_, a_, b_
        mat = np.where(cv.t < thr[part], lo[part], hi[part])
        if app.stripes > 0:
            shirt = mat == _M_SHIRT
            stripe = np.sin(cv.t * (app.stripes * 2 * np.pi)) > 0.3
            mat[shirt & stripe] = _M_ALT
        head = part == _PART["head"]
        if head.any():
            mat[head] = self._head_materials(cv.aux[head])
        shade = np.clip(cv.nrm @ light.astype(np.float32), 0.0, 1.0) * (1.0 - ambient) + ambient
        col = app.palette[mat] * shade[..., None]
        self._front_marks(col)
        return col

    def _head_materials(self, s: np.ndarray) -> np.ndarray:
        """Hair / face / eyes / brows / mouth from the position on the head (unit sphere, head
        frame)."""
        app = self.app
        sl, su, sf = s[:, 0], s[:, 1], s[:, 2]
        out = np.full(len(s), _M_SKIN, np.int8)
        face = (sf > 0.2) & (su < app.hairline)
        if app.hair:
            out[~face & (su > app.hair_low - 0.55 * np.clip(-sf, 0, 1))] = _M_HAIR
        else:  # bald: a fringe low at the back and sides
            out[~face & (su > -0.45) & (su < -0.05) & (sf < -0.1)] = _M_HAIR
        head_px = self.scale * _HEAD_SEMI[0]
        ex = np.abs(sl)
        eye_dot = ex * _EYE_DIR[0] + su * _EYE_DIR[1] + sf * _EYE_DIR[2]
        brow_dot = ex * _BROW_DIR[0] + su * _BROW_DIR[1] + sf * _BROW_DIR[2]
        if head_px >= 4:
            out[face & (eye_dot > math.cos(0.22))] = _M_WHITE
            out[face & (brow_dot > math.cos(0.17)) & (eye_dot < math.cos(0.2))
                & (su > 0.2)] = _M_HAIR
        out[face & (eye_dot > math.cos(0.13 if head_px >= 4 else 0.2))] = _M_EYE
        out[face & (np.abs(sl) < 0.26) & (np.abs(su + 0.52) < 0.05)] = _M_MOUTH
        return out

    def _front_marks(self, col: np.ndarray) -> None:
        """Clothing marks on the front of the trunk (neckline, collar, buttons, zip, chest print),
        drawn only where the trunk itself is visible: a facing cue that survives mirroring."""
        fwd = self.rot @ self.fig.spine[:, 2]
        if -fwd[2] < 0.2 or not self.app.front_marks:
            return  # front not turned towards the camera
        cv, app, s = self.canvas, self.app, self.scale
        secs = self.fig.sections
        origin = np.array([cv.x0 + 0.5, cv.y0 + 0.5])

        def img(p):  # body-frame point -> subpixel drawing coordinates in the canvas
            return np.round((self.to_img(p)[:2] - origin) * 16).astype(np.int32)

        def front(i, lat=0.0, out=1.0):
            c, lv, fv, a, b = secs[i]
            return c + lat * a * lv + out * b * fv

        draw = np.ascontiguousarray(col)
        before = draw.copy()
        thick = max(1, int(round(0.012 * s)))
        shade = float(np.clip(0.55 - 0.45 * fwd[2], 0.5, 1.0))
        mark = tuple(float(x) * shade for x in app.mark_colour)
        skin = tuple(float(x) * shade for x in app.palette[_M_SKIN])
        collar = [img(front(_S_NECK, math.cos(a), math.sin(a) * 1.15))
                  for a in np.linspace(0.15, np.pi - 0.15, 9)]
        for m in app.front_marks:
            if m == "vneck":
                tri = np.array([img(front(_S_NECK, 0.9, 0.6)), img(front(_S_NECK, -0.9, 0.6)),
                                img(0.5 * (front(_S_SHOULDER) + front(_S_CHEST)))])
                cv2.fillPoly(draw, [tri], skin, lineType=cv2.LINE_AA, shift=4)
            elif m in ("collar_buttons", "collar_zip", "round_neck"):
                cv2.polylines(draw, [np.array(collar)], False, mark, thick, cv2.LINE_AA, shift=4)
                if m == "collar_buttons":
                    for f in np.linspace(0.15, 0.85, 4):
                        p = (1 - f) * front(_S_SHOULDER) + f * front(_S_WAIST)
                        cv2.circle(draw, tuple(int(x) for x in img(p)),
                                   max(1, int(round(0.008 * s))) * 16, mark, -1,
                                   cv2.LINE_AA, shift=4)
                elif m == "collar_zip":
                    line = np.array([img(front(i, 0, 1.05))
                                     for i in (_S_SHOULDER, _S_CHEST, _S_WAIST)])
                    cv2.polylines(draw, [line], False, mark, thick, cv2.LINE_AA, shift=4)
            elif m == "print":
                c = 0.55 * front(_S_CHEST) + 0.45 * front(_S_SHOULDER)
                lv, uv = secs[_S_CHEST][1], self.fig.spine[:, 1]
                corners = ((1, 1), (-1, 1), (-1, -1), (1, -1))
                quad = np.array([img(c + 0.045 * x * lv + 0.035 * y * uv) for x, y in corners])
                cv2.fillConvexPoly(draw, quad, mark, cv2.LINE_AA, shift=4)
        keep = cv.part != _PART["torso"]
        draw[keep] = before[keep]
        col[...] = draw

    # -- keypoints --------------------------------------------------------------------------
    def keypoints_img(self, names: Sequence[str]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(K,3) image-space keypoints, (K,) depth tolerance in px, (K,) face-facing ok."""
        s = self.scale
        pts = np.array([self.to_img(self.fig.keypoints[n]) for n in names])
        radius = {c[0]: max(c[3], c[4]) for c in self.fig.capsules}
        tol = np.empty(len(names))
        ok = np.ones(len(names), bool)
        for k, n in enumerate(names):
            if n in _FACE_FACING_MIN:
                facing = -float((self.rot @ self.fig.face_normals[n])[2])
                ok[k] = facing > _FACE_FACING_MIN[n]
                tol[k] = max(0.35 * _HEAD_SEMI[2] * s, 1.5)
            elif n == "head_top":  # inside the skull: the surface in front is about a semi-axis
                tol[k] = max(_HEAD_SEMI[2] * s, 1.5)
            else:
                r = max(radius[p] for p in _KEYPOINT_PARTS[n] if p in radius)
                tol[k] = max(max(2.0 * r, _TRUNK_JOINT_DEPTH if "torso" in _KEYPOINT_PARTS[n]
                                 else 0.0) * s, 1.5)
        return pts, tol, ok
