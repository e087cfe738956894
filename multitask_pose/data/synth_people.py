"""SynthPeople: a synthetic multi-person COCO-keypoints dataset, rendered from 3D stick-and-volume figures.

Why it exists: the project needs training/evaluation data that a from-scratch Keypoint/Mask R-CNN
can learn on a CPU in minutes, without downloading COCO, yet that keeps the properties that make
person keypoint estimation what it is:

* **Anatomy.** Each person is a 3D figure with human proportions (fractions of body height after
  Drillis & Contini) and joint limits: shoulders move in a cone (elevation / plane of elevation),
  elbows and knees are hinges that bend one way (0-150 deg), hips flex/abduct/rotate within limits,
  the spine bends and twists, the head turns (yaw/pitch/roll) on the neck. Poses come from a small
  mixture (standing, walking, running, gesturing, sitting/squatting, bending) and impossible ones
  (a hand inside the chest, crossed legs through each other) are rejected.
* **Volume and depth.** The figure is a torso of elliptical cross-sections, a head ellipsoid, a neck,
  limbs as tapered capsules of realistic width, hands, feet, ears, a nose and optional long hair.
  It is turned by a yaw about the vertical axis (plus small camera pitch / body roll), projected
  orthographically and rasterised with a per-pixel depth buffer, so self-occlusion is real.
* **Left/right by facing only.** Nothing is glued to one side: left and right limbs share colours.
  What tells the sides apart is what does on real people and survives a mirror flip: a face
  (eyes, brows, mouth, a protruding nose) on the front of the head and hair on the back, ears on
  the sides, and front-only clothing marks (neckline, collar, buttons, a chest print).
* **Honest labels.** Persons are painted back-to-front into a person-id buffer; a keypoint is
  ``v=2`` only if the pixel at it shows this person's body part that the joint belongs to, at
  (about) the joint's depth; otherwise it is ``v=1`` (hidden by another person, a distractor or the
  person's own body / head). Face points on the far side of the head are ``v=1``. Points outside the
  image are ``v=0`` with ``x=y=0``. The mask is the person's visible pixels (COCO RLE), ``area`` its
  pixel count and ``bbox`` the tight box of the mask and the labelled keypoints.
* **Clutter.** Textured backgrounds (gradients, low-frequency noise, stripes, floors, blobs) and
  distractor shapes (rectangles, discs, poles, polygons, limb-like bars) in front of and behind the
  people; sizes from ~30 px tall to close-ups truncated by the border; a crowded variant.

Everything is deterministic: image ``i`` of seed ``s`` is drawn from
``np.random.default_rng(np.random.SeedSequence(s, spawn_key=(i,)))``, independent of other images.

Coordinates: keypoints are written like COCO's, in pixel-index coordinates (pixel ``j`` spans
``[j, j+1)`` in detectron2's continuous coordinates, which add 0.5 on load); boxes are continuous
``[x, y, w, h]``.
"""
from __future__ import annotations

import argparse
import colorsys
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import pycocotools.mask as mask_util

from .keypoints import COCO_PERSON, KeypointSpec, skeleton_indices

__all__ = [
    "GENERATOR_VERSION",
    "SynthSplit",
    "SPLITS",
    "SynthPeople",
    "split_dir",
    "ensure_split",
    "main",
]

logger = logging.getLogger(__name__)

# Bump whenever the rendered images or annotations change: it is part of the cache directory name,
# so old caches are not reused by a new generator.
GENERATOR_VERSION = 1

_DEG = math.pi / 180.0
_JPEG_QUALITY = 92


@dataclass(frozen=True)
class SynthSplit:
    """Parameters of one generated split."""

    num_images: int
    seed: int
    crowded: bool = False
    image_size: int = 320


SPLITS: Dict[str, SynthSplit] = {
    "synth_people_train": SynthSplit(num_images=2000, seed=0),
    "synth_people_val": SynthSplit(num_images=200, seed=1),
    "synth_people_crowd_val": SynthSplit(num_images=100, seed=2, crowded=True),
    # Test-sized splits (the test suite's short training runs; also handy for smoke runs).
    "synth_people_mini_train": SynthSplit(num_images=240, seed=100, image_size=256),
    "synth_people_mini_val": SynthSplit(num_images=60, seed=101, image_size=256),
}

# ----------------------------------------------------------------------------------------------
# Body model
# ----------------------------------------------------------------------------------------------
# Body frame: X = the person's left, Y = up, Z = forward (the way the person faces); units are
# fractions of a standing adult's height. Image space: u = right, v = down, d = depth away from the
# camera (all in pixels); it is the body frame rotated and scaled, and right-handed as well.

# Body parts (index = value written in the per-pixel part buffer).
_PART_NAMES = (
    "torso", "neck", "head", "nose", "ear_l", "ear_r",
    "upper_arm_l", "upper_arm_r", "forearm_l", "forearm_r", "hand_l", "hand_r",
    "thigh_l", "thigh_r", "shin_l", "shin_r", "foot_l", "foot_r", "hair",
)
_PART = {n: i for i, n in enumerate(_PART_NAMES)}

# Which drawn parts show a keypoint: a joint is visible when the pixel at it shows one of these
# parts of the same person (at about the joint's depth). Keyed by COCO keypoint name.
_KEYPOINT_PARTS = {
    "nose": ("nose", "head"),
    "left_eye": ("head",), "right_eye": ("head",),
    "left_ear": ("ear_l", "head"), "right_ear": ("ear_r", "head"),
    "left_shoulder": ("torso", "upper_arm_l"), "right_shoulder": ("torso", "upper_arm_r"),
    "left_elbow": ("upper_arm_l", "forearm_l"), "right_elbow": ("upper_arm_r", "forearm_r"),
    "left_wrist": ("forearm_l", "hand_l"), "right_wrist": ("forearm_r", "hand_r"),
    "left_hip": ("torso", "thigh_l"), "right_hip": ("torso", "thigh_r"),
    "left_knee": ("thigh_l", "shin_l"), "right_knee": ("thigh_r", "shin_r"),
    "left_ankle": ("shin_l", "foot_l"), "right_ankle": ("shin_r", "foot_r"),
}
# Shoulders and hips sit inside the trunk; annotators call them visible while the trunk around them
# is seen, i.e. up to ~50 deg of turn for the far side. Depth (body heights) a trunk joint may lie
# behind the visible surface and still count as visible; limb joints get twice the limb radius.
_TRUNK_JOINT_DEPTH = 0.13
# Face points are seen only from the side their surface faces: minimum of normal . (towards camera).
_FACE_FACING_MIN = {"nose": -0.25, "left_eye": 0.12, "right_eye": 0.12, "left_ear": -0.2, "right_ear": -0.2}

# Head ellipsoid semi-axes (lateral, vertical, depth) and face landmarks in the head frame.
_HEAD_SEMI = np.array([0.048, 0.062, 0.055])
_EYE_DIR = np.array([0.40, 0.05, 0.915])  # unit-sphere direction of the left eye (x -> -x for right)
_BROW_DIR = np.array([0.40, 0.30, 0.866])

# Indices of the trunk cross-sections in _Figure.sections.
_S_CROTCH, _S_HIP, _S_WAIST, _S_CHEST, _S_SHOULDER, _S_NECK = range(6)

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


def _rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rot_y(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # np.cross is slow on single 3-vectors; the figure builder calls this a lot.
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def _rotate(v: np.ndarray, axis: np.ndarray, ang: float) -> np.ndarray:
    """Rodrigues: rotate ``v`` about the unit ``axis`` by ``ang`` radians (right-hand rule)."""
    c, s = math.cos(ang), math.sin(ang)
    return v * c + _cross(axis, v) * s + axis * float(axis @ v) * (1.0 - c)


def _transport(src: np.ndarray, dst: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Apply to ``v`` the smallest rotation that takes unit ``src`` to unit ``dst``: carries a
    limb's rest-pose reference direction (e.g. "the elbow bends forward") along with the limb."""
    axis = _cross(src, dst)
    sn = float(np.sqrt(axis @ axis))
    cs = float(src @ dst)
    if sn < 1e-9:
        return v.copy() if cs > 0 else _rotate(v, np.array([1.0, 0.0, 0.0]), math.pi)
    return _rotate(v, axis / sn, math.atan2(sn, cs))


_DOWN = np.array([0.0, -1.0, 0.0])
_FWD = np.array([0.0, 0.0, 1.0])
_BACK = np.array([0.0, 0.0, -1.0])
_MIRROR = np.array([-1.0, 1.0, 1.0])  # left <-> right in the body frame


@dataclass
class _Shape:
    """Body build of one person (multipliers of the adult template)."""

    width: float = 1.0  # girth of torso and limbs
    head: float = 1.0  # head size
    arm: float = 1.0  # arm length
    leg: float = 1.0  # leg length
    long_hair: float = 0.0  # length of hair hanging below the head (0 = short)


@dataclass
class _Figure:
    """A posed figure in the body frame: drawable primitives and keypoints."""

    keypoints: Dict[str, np.ndarray]
    face_normals: Dict[str, np.ndarray]
    capsules: List[Tuple[str, np.ndarray, np.ndarray, float, float]]  # part, p0, p1, r0, r1
    ellipsoids: List[Tuple[str, np.ndarray, np.ndarray, np.ndarray]]  # part, centre, axes (cols), semi
    sections: List[Tuple[np.ndarray, np.ndarray, np.ndarray, float, float]]  # centre, L, F, a, b
    spine: np.ndarray  # rotation of the upper body; columns: its left, up, forward axes
    pivot: np.ndarray  # the point the spine rotation turns about


def _arm_chain(shoulder, e, p, twist, elbow, wrist, lu, lf, lh):
    """Canonical LEFT arm. ``e``: elevation from hanging (0..175 deg), ``p``: plane of elevation
    (0 = sideways, 90 = forward, >90 across the chest, <0 backwards), ``twist``: humeral rotation
    (+ = internal, swings the forearm towards the belly), ``elbow``: hinge flexion (0..150)."""
    d = np.array([math.sin(e) * math.cos(p), -math.cos(e), math.sin(e) * math.sin(p)])
    # At rest the elbow bends forward; carry that bend direction along with the upper arm.
    n = _rotate(_transport(_DOWN, d, _FWD), d, twist)
    elb = shoulder + lu * d
    fore = math.cos(elbow) * d + math.sin(elbow) * n
    wri = elb + lf * fore
    hinge = _cross(d, n)
    hand_dir = _rotate(fore, hinge, wrist)
    return elb, wri, wri + lh * hand_dir


def _leg_chain(hip, flex, abd, rot, knee, ankle, lt, ls):
    """Canonical LEFT leg. ``flex``: hip flexion (+ forward), ``abd``: abduction (+ outward),
    ``rot``: external rotation (toes out), ``knee``: hinge flexion bending backwards (0..150)."""
    d = np.array([math.sin(abd), -math.cos(abd) * math.cos(flex), math.cos(abd) * math.sin(flex)])
    n = _rotate(_transport(_DOWN, d, _BACK), d, -rot)  # knee bends backwards at rest
    kne = hip + lt * d
    shin = math.cos(knee) * d + math.sin(knee) * n
    ank = kne + ls * shin
    hinge = _cross(d, n)
    foot_dir = _rotate(-n, hinge, knee + ankle)  # the foot points forward, turned with the shin
    heel = ank + 0.032 * shin - 0.03 * foot_dir
    toe = ank + 0.036 * shin + 0.12 * foot_dir
    return kne, ank, heel, toe


def _build_figure(pose: Dict, sh: _Shape) -> _Figure:
    """Pose + build -> posed primitives in the body frame (feet near y=0, head top near y=1)."""
    w = sh.width
    wl = w ** 0.7  # limbs thicken less than the trunk
    lt, ls = 0.235 * sh.leg, 0.225 * sh.leg
    hip_y = 0.04 + lt + ls
    # Upper body: rotated by the spine (bend/lateral/twist) about a pivot just above the pelvis.
    pivot = np.array([0.0, hip_y + 0.06, 0.0])
    r_sp = _rot_y(pose["spine_twist"]) @ _rot_x(pose["spine_bend"]) @ _rot_z(pose["spine_lat"])
    r_half = _rot_y(pose["spine_twist"] / 2) @ _rot_x(pose["spine_bend"] / 2) @ _rot_z(pose["spine_lat"] / 2)

    def up(q):
        return pivot + r_sp @ (q - pivot)

    # Torso cross-sections (height above hip joints, half-width, half-depth, rotation): crotch,
    # hips (widest, with the buttocks), waist, chest, shoulders, neck base.
    sections = []
    for dy, a, b, rot in ((-0.075, 0.088, 0.062, None), (-0.01, 0.118, 0.072, None), (0.10, 0.092, 0.064, r_half),
                          (0.22, 0.10, 0.074, r_sp), (0.305, 0.102, 0.064, r_sp), (0.345, 0.056, 0.046, r_sp)):
        c = np.array([0.0, hip_y + dy, 0.0])
        if rot is None:
            sections.append((c, np.array([1.0, 0.0, 0.0]), _FWD.copy(), a * w, b * w))
        else:
            sections.append((pivot + rot @ (c - pivot), rot[:, 0].copy(), rot[:, 2].copy(), a * w, b * w))

    caps: List[Tuple[str, np.ndarray, np.ndarray, float, float]] = []
    kp: Dict[str, np.ndarray] = {}

    # Arms, computed for a canonical left arm in the upper-body frame and mirrored for the right.
    sh_local = np.array([0.108 * w, hip_y + 0.315, -0.005])
    for side, key in (("left", "arm_l"), ("right", "arm_r")):
        e, p, tw, el, wr = pose[key]
        elb, wri, hand = _arm_chain(sh_local, e, p, tw, el, wr, 0.175 * sh.arm, 0.15 * sh.arm, 0.075 * sh.arm)
        pts = [sh_local, elb, wri, hand]
        if side == "right":
            pts = [q * _MIRROR for q in pts]
        s_, e_, w_, h_ = (up(q) for q in pts)
        t = side[0]
        # Radii include clothing (a sleeve adds ~1 cm): COCO's OKS scales with the mask area.
        caps.append((f"upper_arm_{t}", s_, e_, 0.04 * wl, 0.033 * wl))
        caps.append((f"forearm_{t}", e_, w_, 0.031 * wl, 0.024 * wl))
        caps.append((f"hand_{t}", w_, h_, 0.024 * wl, 0.02 * wl))
        kp[f"{side}_shoulder"], kp[f"{side}_elbow"], kp[f"{side}_wrist"] = s_, e_, w_

    # Legs in the pelvis frame (not rotated by the spine).
    hip_local = np.array([0.07 * w, hip_y, 0.0])
    for side, key in (("left", "leg_l"), ("right", "leg_r")):
        fl, ab, ro, kn, an = pose[key]
        kne, ank, heel, toe = _leg_chain(hip_local, fl, ab, ro, kn, an, lt, ls)
        pts = [hip_local, kne, ank, heel, toe]
        if side == "right":
            pts = [q * _MIRROR for q in pts]
        h_, k_, a_, he_, to_ = pts
        t = side[0]
        caps.append((f"thigh_{t}", h_, k_, 0.056 * wl, 0.038 * wl))
        caps.append((f"shin_{t}", k_, a_, 0.038 * wl, 0.026 * wl))
        caps.append((f"foot_{t}", he_, to_, 0.026 * wl, 0.022 * wl))
        kp[f"{side}_hip"], kp[f"{side}_knee"], kp[f"{side}_ankle"] = h_, k_, a_

    # Neck and head: the head turns on the top of the neck.
    hs = sh.head
    semi = _HEAD_SEMI * hs
    neck_base = up(np.array([0.0, hip_y + 0.335, 0.0]))
    neck_top = up(np.array([0.0, hip_y + 0.39, 0.005]))
    r_head = r_sp @ _rot_y(pose["head_yaw"]) @ _rot_x(pose["head_pitch"]) @ _rot_z(pose["head_roll"])
    centre = neck_top + r_head @ (np.array([0.0, 0.045, 0.012]) * hs)
    neck_end = centre + r_head @ (np.array([0.0, -0.03, -0.012]) * hs)
    caps.append(("neck", neck_base, neck_end, 0.031 * w ** 0.5, 0.028 * w ** 0.5))

    def head_pt(q):
        return centre + r_head @ (np.asarray(q) * hs)

    ells = [("head", centre, r_head, semi)]
    face_n: Dict[str, np.ndarray] = {}
    for side, sx in (("left", 1.0), ("right", -1.0)):
        s_unit = _EYE_DIR * np.array([sx, 1.0, 1.0])
        kp[f"{side}_eye"] = centre + r_head @ (s_unit * semi)
        n = s_unit / _HEAD_SEMI
        face_n[f"{side}_eye"] = r_head @ (n / np.linalg.norm(n))
        ear = head_pt([sx * 0.047, -0.004, -0.004])
        kp[f"{side}_ear"] = ear
        face_n[f"{side}_ear"] = r_head @ np.array([sx, 0.0, -0.1]) / math.hypot(1.0, 0.1)
        ells.append((f"ear_{side[0]}", ear, r_head, np.array([0.007, 0.012, 0.009]) * hs))
    nose_root, nose_tip = head_pt([0.0, 0.0, 0.050]), head_pt([0.0, -0.016, 0.063])
    caps.append(("nose", nose_root, nose_tip, 0.0065 * hs, 0.0075 * hs))
    kp["nose"] = nose_tip
    face_n["nose"] = r_head @ _FWD
    if sh.long_hair > 0:
        caps.append(("hair", head_pt([0.0, -0.004, -0.02]), head_pt([0.0, -0.05 - sh.long_hair, -0.03]),
                     0.04 * hs, 0.034 * hs))

    return _Figure(keypoints=kp, face_normals=face_n, capsules=caps, ellipsoids=ells, sections=sections,
                   spine=r_sp, pivot=pivot)


def _collides(fig: _Figure) -> bool:
    """Reject physically impossible poses: arms or lower legs through the trunk, hands in the
    head, legs through each other. Works on the figure in the upper-body frame (arms) and pelvis
    frame (legs), approximating the trunk by its straight elliptical sections."""
    secs = fig.sections
    ys = np.array([c[1] for c, *_ in secs])
    ys_up = np.array([(fig.pivot + fig.spine.T @ (c - fig.pivot))[1] for c, *_ in secs])
    a_s = np.array([s[3] for s in secs])
    b_s = np.array([s[4] for s in secs])
    caps = {c[0]: c for c in fig.capsules}

    def samples(names, ts):
        pts, rad = [], []
        for nm, t0 in zip(names, ts):
            _, p0, p1, r0, r1 = caps[nm]
            for t in np.linspace(t0, 1.0, 4):
                pts.append(p0 + t * (p1 - p0))
                rad.append(r0 + t * (r1 - r0))
        return np.array(pts), np.array(rad)

    def inside_trunk(p, r, yref):
        y = p[:, 1]
        # A quarter of the limb radius: limbs may press against the trunk (arms hang touching the
        # chest), but their axis must stay outside it.
        a = np.interp(y, yref, a_s) + 0.25 * r
        b = np.interp(y, yref, b_s) + 0.25 * r
        ins = (p[:, 0] / a) ** 2 + (p[:, 2] / b) ** 2 < 1.0
        return bool(np.any(ins & (y > yref[0]) & (y < yref[-1])))

    head_c, _, head_semi = fig.ellipsoids[0][1], fig.ellipsoids[0][2], fig.ellipsoids[0][3]
    for t in "lr":
        p, r = samples([f"upper_arm_{t}", f"forearm_{t}", f"hand_{t}"], [0.5, 0.0, 0.0])
        local = fig.pivot + (p - fig.pivot) @ fig.spine  # = spine^T (p - pivot) row-wise
        if inside_trunk(local, r, ys_up):
            return True
        if np.any(np.linalg.norm(p - head_c, axis=1) < head_semi.max() + r):
            return True
    legs = {}
    for t in "lr":
        p, r = samples([f"thigh_{t}", f"shin_{t}", f"foot_{t}"], [0.3, 0.0, 0.0])
        legs[t] = (p, r)
        lower = slice(4, None)  # shins and feet against the trunk (thigh tops sit in the pelvis)
        if inside_trunk(p[lower], r[lower], ys):
            return True
    (pl, rl), (pr, rr) = legs["l"], legs["r"]
    dist = np.linalg.norm(pl[:, None, :] - pr[None, :, :], axis=2)
    return bool(np.any(dist < 0.9 * (rl[:, None] + rr[None, :])))


_FAMILIES = ("standing", "walking", "running", "action", "sitting", "bending")
_FAMILY_P = (0.33, 0.2, 0.07, 0.27, 0.08, 0.05)


def _sample_pose(rng: np.random.Generator, fam: int) -> Dict:
    """Joint angles (radians) for activity ``fam`` (index into _FAMILIES), within joint limits."""
    u = rng.uniform
    pose = {
        "spine_bend": u(-5, 10), "spine_lat": rng.normal(0, 3), "spine_twist": rng.normal(0, 8),
        "head_yaw": float(np.clip(rng.normal(0, 28), -75, 75)),
        "head_pitch": float(np.clip(rng.normal(5, 12), -30, 40)),
        "head_roll": float(np.clip(rng.normal(0, 7), -20, 20)),
    }

    def arm_relaxed():
        if rng.random() < 0.12:  # hand on the hip
            return [u(30, 50), u(-25, 5), u(40, 75), u(95, 125), u(-10, 20)]
        el = u(0, 35) if rng.random() < 0.7 else u(35, 110)
        return [u(8, 30), u(-30, 60), u(-10, 40), el, u(-10, 25)]

    def leg_standing():
        return [rng.normal(0, 5), u(0, 10), u(0, 25), u(0, 12), u(-10, 10)]

    arms, legs = [arm_relaxed(), arm_relaxed()], [leg_standing(), leg_standing()]
    if fam == 1 or fam == 2:  # walking / running: legs swing in antiphase, arms opposite to legs
        run = fam == 2
        amp = u(30, 55) if run else u(12, 35)
        ph = math.sin(u(0, 2 * math.pi))
        for i, sgn in ((0, 1.0), (1, -1.0)):
            fl = sgn * amp * ph
            back = fl < 0
            kn = (u(50, 120) if back else u(10, 60)) if run else (u(5, 45) if back else u(0, 15))
            legs[i] = [fl, u(0, 8), u(0, 20), kn, u(-15, 20)]
            swing = -fl * (0.8 if not run else 0.7)
            # the arm swings in a plane slightly turned outwards (it clears the hips)
            arms[i] = [abs(swing) + u(8, 15), u(55, 80) if swing > 0 else u(-60, -35), u(0, 30),
                       u(70, 110) if run else u(5, 40), u(-10, 20)]
        pose["spine_bend"] = u(5, 20) if run else u(0, 10)
    elif fam == 3:  # gesturing / action: arms anywhere within limits, legs loosely
        for i in range(2):
            arms[i] = [u(0, 175), u(-50, 140), u(-30, 80), u(0, 145), u(-30, 40)]
            if rng.random() < 0.5:
                legs[i] = [u(-15, 70), u(-5, 40), u(-10, 35), u(0, 100), u(-20, 25)]
        pose.update(spine_bend=u(-10, 35), spine_lat=rng.normal(0, 8), spine_twist=rng.normal(0, 20))
    elif fam == 4:  # sitting / squatting
        fl, kn = u(60, 115), u(60, 140)
        for i in range(2):
            legs[i] = [fl + u(-10, 10), u(0, 30), u(-5, 30), min(150.0, kn + u(-10, 10)), u(-10, 25)]
            arms[i] = [u(0, 80), u(0, 110), u(-10, 60), u(10, 120), u(-10, 30)]
        pose["spine_bend"] = u(0, 30)
    elif fam == 5:  # bending over: arms hang towards the ground
        bend = u(35, 85)
        pose["spine_bend"] = bend
        for i in range(2):
            arms[i] = [bend + u(-20, 25), u(70, 100), u(-10, 30), u(0, 40), u(-10, 20)]
            legs[i] = [rng.normal(0, 5), u(0, 15), u(0, 20), u(0, 30), u(-10, 10)]
    for a in arms:  # shoulder limits: extension behind the body and adduction across it are limited
        a[1] = float(np.clip(a[1], -60, 140))
        a[0] = float(np.clip(a[0], 0, 60 if a[1] < 0 else (115 if a[1] > 100 else 175)))
        a[3] = float(np.clip(a[3], 0, 150))
    for lg in legs:
        lg[0] = float(np.clip(lg[0], -30, 125))
        lg[1] = float(np.clip(lg[1], -15, 50))
        lg[3] = float(np.clip(lg[3], 0, 150))
    pose = {k: v * _DEG for k, v in pose.items()}
    pose["arm_l"], pose["arm_r"] = [tuple(x * _DEG for x in a) for a in arms]
    pose["leg_l"], pose["leg_r"] = [tuple(x * _DEG for x in lg) for lg in legs]
    return pose


_SAFE_POSE = {
    "spine_bend": 0.0, "spine_lat": 0.0, "spine_twist": 0.0, "head_yaw": 0.0, "head_pitch": 0.0, "head_roll": 0.0,
    "arm_l": tuple(x * _DEG for x in (25, 20, 0, 10, 0)), "arm_r": tuple(x * _DEG for x in (25, 20, 0, 10, 0)),
    "leg_l": tuple(x * _DEG for x in (0, 6, 10, 3, 0)), "leg_r": tuple(x * _DEG for x in (0, 6, 10, 3, 0)),
}


def _sample_shape(rng: np.random.Generator) -> _Shape:
    child = rng.random() < 0.07
    return _Shape(
        width=float(rng.uniform(0.85, 1.25)) * (0.9 if child else 1.0),
        head=float(rng.uniform(0.92, 1.08)) * (1.25 if child else 1.0),
        arm=float(rng.uniform(0.95, 1.05)) * (0.9 if child else 1.0),
        leg=float(rng.uniform(0.95, 1.05)) * (0.85 if child else 1.0),
        long_hair=float(rng.uniform(0.03, 0.16)) if rng.random() < 0.3 else 0.0,
    )


def _posed_figure(rng: np.random.Generator, shape: _Shape) -> _Figure:
    """A collision-free pose; retries stay in the same activity so the mixture is kept."""
    fam = int(rng.choice(len(_FAMILIES), p=_FAMILY_P))
    for _ in range(25):
        fig = _build_figure(_sample_pose(rng, fam), shape)
        if not _collides(fig):
            return fig
    return _build_figure(_SAFE_POSE, shape)


# ----------------------------------------------------------------------------------------------
# Rasterisation with a per-person depth buffer
# ----------------------------------------------------------------------------------------------


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


def _draw_ellipsoid(cv: _Canvas, pid: int, c, axes: np.ndarray, semi: np.ndarray, with_aux: bool) -> None:
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
        aux = tuple((axes[0, k] * du + axes[1, k] * dv + axes[2, k] * dd) / semi[k] for k in range(3))
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
    t = np.clip((du * eu + dv * ev) / l2, 0.0, 1.0) if l2 > 1e-6 else np.zeros(mask.shape, np.float32)
    rho = (du - t * eu) * pu + (dv - t * ev) * pv
    q = np.clip(rho / (wa + (wb - wa) * t), -1.0, 1.0)
    hgt = np.sqrt(1.0 - q * q)
    depth = float(ca[2]) + t * float(cb[2] - ca[2]) - (da + (db - da) * t) * hgt
    cv.commit(sl, inside, depth, pid, t + t_offset, (q * pu, q * pv, -hgt))


# ----------------------------------------------------------------------------------------------
# Scene: people, background, distractors
# ----------------------------------------------------------------------------------------------


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
    belt: float  # torso coordinate (0..5 over the 5 segments, 1 = hips, 2 = waist) below which trousers show
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
                        np.array([225, 230, 235], np.float32), skin * np.array([0.55, 0.5, 0.8], np.float32), alt])
    sleeve = rng.choice(4, p=[0.4, 0.4, 0.1, 0.1])  # long, short, sleeveless, three-quarter
    sleeve_ua, sleeve_fa = [(1.1, 0.95), (0.55, 0.0), (0.0, 0.0), (1.1, 0.5)][sleeve]
    shorts = rng.random() < 0.2
    marks = [("vneck", "collar_buttons", "print", "collar_zip", "round_neck")[rng.integers(5)]]
    if rng.random() < 0.35:
        marks.append("print")
    return _Appearance(
        palette=np.clip(palette, 0, 255), sleeve_ua=sleeve_ua, sleeve_fa=sleeve_fa,
        pant_th=0.6 if shorts else 1.1, pant_sh=0.0 if shorts else 0.95, belt=float(rng.uniform(1.45, 1.8)),
        stripes=float(rng.uniform(3, 7)) if rng.random() < 0.25 else 0.0,
        hair=rng.random() > 0.05, hairline=float(rng.uniform(0.42, 0.62)), hair_low=float(rng.uniform(-0.35, 0.0)),
        front_marks=tuple(dict.fromkeys(marks)),
        mark_colour=_random_colour(rng, (0.0, 1.0), (0.0, 1.0)),
    )


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
        cv = _Canvas(int(math.floor(u0)) - 1, int(math.floor(v0)) - 1, int(math.ceil(u1)) + 2, int(math.ceil(v1)) + 2)
        s = self.scale
        min_r = 0.75  # px: keeps thin limbs of small people drawn, so their joints are on a pixel
        secs = [(self.to_img(c), self.rot @ lv, self.rot @ fv, a * s, b * s) for c, lv, fv, a, b in self.fig.sections]
        for i in range(len(secs) - 1):
            _draw_torso_segment(cv, _PART["torso"], secs[i], secs[i + 1], float(i))
        for name, p0, p1, r0, r1 in self.fig.capsules:
            if name == "nose" and r1 * s < 0.6:
                continue  # sub-pixel nose: the nose keypoint then sits on the head
            _draw_capsule(cv, _PART[name], self.to_img(p0), self.to_img(p1), max(r0 * s, min_r), max(r1 * s, min_r))
        for name, c, axes, semi in self.fig.ellipsoids:
            if name != "head" and semi.max() * s < 0.8:
                continue
            _draw_ellipsoid(cv, _PART[name], self.to_img(c), self.rot @ axes, np.maximum(semi * s, min_r),
                            with_aux=name == "head")
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
        """Hair / face / eyes / brows / mouth from the position on the head (unit sphere, head frame)."""
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
            out[face & (brow_dot > math.cos(0.17)) & (eye_dot < math.cos(0.2)) & (su > 0.2)] = _M_HAIR
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
        collar = [img(front(_S_NECK, math.cos(a), math.sin(a) * 1.15)) for a in np.linspace(0.15, np.pi - 0.15, 9)]
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
                        cv2.circle(draw, tuple(int(x) for x in img(p)), max(1, int(round(0.008 * s))) * 16, mark, -1,
                                   cv2.LINE_AA, shift=4)
                elif m == "collar_zip":
                    line = np.array([img(front(i, 0, 1.05)) for i in (_S_SHOULDER, _S_CHEST, _S_WAIST)])
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
            else:
                r = max(radius[p] for p in _KEYPOINT_PARTS[n] if p in radius)
                tol[k] = max(max(2.0 * r, _TRUNK_JOINT_DEPTH if "torso" in _KEYPOINT_PARTS[n] else 0.0) * s, 1.5)
        return pts, tol, ok


_NOISE_BANK: Optional[np.ndarray] = None


def _noise(rng: np.random.Generator, h: int, w: int, channels: int) -> np.ndarray:
    """Standard-normal noise (h, w, channels) float32: a random crop of a fixed bank.

    Drawing fresh normals costs ~3 ms per 320 px image on a slow CPU, more than the rest of the
    background. The bank is built from a fixed seed, so crops are deterministic; a random offset,
    flips and channel order make repeats invisible.
    """
    global _NOISE_BANK
    if _NOISE_BANK is None:
        _NOISE_BANK = np.random.default_rng(20240611).standard_normal((768, 768, 3), dtype=np.float32)
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
        img += cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR) * np.float32(rng.uniform(10, 45))
    if rng.random() < 0.4:  # floor / wall split
        y = int(h * rng.uniform(0.3, 0.8))
        img[y:] = img[y:] * np.float32(rng.uniform(0.4, 0.9)) + _random_colour(rng) * np.float32(rng.uniform(0.1, 0.6))
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


def _distractor(rng: np.random.Generator, h: int, w: int, depth_key: float) -> Optional[_Distractor]:
    """A non-person shape: rotated rectangle, disc/ellipse, pole, random polygon or limb-like bar."""
    kind = rng.choice(5, p=[0.3, 0.2, 0.2, 0.2, 0.1])
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    size = max(h, w) * math.exp(rng.uniform(math.log(0.03), math.log(0.35)))
    if kind == 0:
        rect = ((cx, cy), (size * rng.uniform(0.3, 1.0), size * rng.uniform(0.3, 1.0)), rng.uniform(0, 180))
        pts = cv2.boxPoints(rect)
    elif kind == 1:
        axes = (max(2, int(size / 2)), max(2, int(size / 2 * rng.uniform(0.5, 1.0))))
        pts = cv2.ellipse2Poly((int(cx), int(cy)), axes, int(rng.uniform(0, 180)), 0, 360, 10).astype(np.float32)
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
    x1, y1 = min(int(math.ceil(pts[:, 0].max())) + 1, w), min(int(math.ceil(pts[:, 1].max())) + 1, h)
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


# ----------------------------------------------------------------------------------------------
# The generator
# ----------------------------------------------------------------------------------------------


class SynthPeople:
    """Deterministic generator of the SynthPeople dataset.

    ``render(i)`` draws image ``i`` (BGR uint8, COCO annotations without ids); ``write`` renders
    ``num_images`` images into a COCO-format folder. ``crowded=True`` puts 5-10 people per image
    with heavy overlaps.
    """

    def __init__(self, seed: int, image_size: int = 320, crowded: bool = False, spec: KeypointSpec = COCO_PERSON):
        unknown = [n for n in spec.keypoint_names if n not in _KEYPOINT_PARTS]
        if unknown:
            raise ValueError(f"SynthPeople cannot render keypoints {unknown} of spec {spec.name!r}; "
                             f"it knows {sorted(_KEYPOINT_PARTS)}")
        if image_size < 64:
            raise ValueError(f"image_size must be at least 64 px, got {image_size}")
        self.seed = int(seed)
        self.image_size = int(image_size)
        self.crowded = bool(crowded)
        self.spec = spec
        self._names = tuple(spec.keypoint_names)
        k = len(self._names)
        # keypoint x part table: which parts show which keypoint
        self._assoc = np.zeros((k, len(_PART_NAMES) + 1), bool)
        for i, n in enumerate(self._names):
            for p in _KEYPOINT_PARTS[n]:
                self._assoc[i, _PART[p]] = True

    # -- scene sampling -----------------------------------------------------------------------
    def _image_shape(self, rng) -> Tuple[int, int]:
        aspect = rng.choice([1.0, 1.25, 4 / 3, 1.5, 16 / 9], p=[0.12, 0.13, 0.45, 0.18, 0.12])
        long_, short = self.image_size, int(round(self.image_size / aspect))
        return (short, long_) if rng.random() < 0.72 else (long_, short)  # (h, w): landscape or portrait

    def _num_people(self, rng) -> int:
        if self.crowded:
            return int(rng.integers(5, 11))
        if rng.random() < 0.03:
            return 0
        return int(rng.choice([1, 2, 3, 4], p=[0.34, 0.3, 0.21, 0.15]))

    def _height_px(self, rng, h: int) -> float:
        """Standing height in pixels: small people, medium/large ones and close-ups."""
        r = rng.random()
        f = min(1.0, self.image_size / 320.0)  # small images: smaller minimum sizes
        small, medium = 30.0 * f, 64.0 * f
        top = max(0.75 * h if self.crowded else 0.95 * h, medium + 1.0)
        if r < (0.35 if self.crowded else 0.22):
            return float(math.exp(rng.uniform(math.log(small), math.log(medium))))
        if r < 0.86 or self.crowded:
            return float(math.exp(rng.uniform(math.log(medium), math.log(top))))
        return float(rng.uniform(0.95, 1.4) * h)  # close-up, cut by the image border

    def _make_people(self, rng, h: int, w: int) -> List[_Person]:
        n = self._num_people(rng)
        ground = rng.random() < (0.7 if self.crowded else 0.5)
        horizon = h * rng.uniform(0.15, 0.5)
        cam_k = rng.uniform(0.45, 1.1)  # feet sit cam_k * height below the horizon (camera height)
        max_cover = 0.85 if self.crowded else 0.6
        people: List[_Person] = []
        boxes: List[Tuple[float, float, float, float]] = []
        for _ in range(n):
            fig = _posed_figure(rng, _sample_shape(rng))
            app = _sample_appearance(rng)
            height = self._height_px(rng, h)
            yaw = rng.uniform(0, 2 * np.pi)
            roll = rng.uniform(-90, 90) if rng.random() < 0.02 else float(np.clip(rng.normal(0, 4), -12, 12))
            pitch = rng.uniform(-8, 20)
            r_glob = _rot_x(pitch * _DEG) @ _rot_z(roll * _DEG) @ _rot_y(yaw)
            person = _Person(fig, app, height, r_glob)
            u0, v0, u1, v1 = person.extent()
            bw, bh = u1 - u0, v1 - v0
            best = None
            for _try in range(8):
                if ground and height < 0.95 * h:
                    bottom = horizon + cam_k * height * rng.uniform(0.85, 1.15)
                    y = bottom - bh
                elif bh > h:  # close-up: head near the top, legs cut by the border
                    y = rng.uniform(-0.12 * bh, 0.06 * h)
                else:
                    y = rng.uniform(-0.3 * bh, h - 0.7 * bh)
                x = rng.uniform(-0.3 * bw, w - 0.7 * bw)
                box = (x, y, x + bw, y + bh)
                cover = max((self._overlap(box, b) for b in boxes), default=0.0)
                if best is None or cover < best[0]:
                    best = (cover, x, y)
                if cover <= max_cover:
                    break
            _, x, y = best
            person.offset = np.array([x - u0, y - v0, 0.0])
            boxes.append((x, y, x + bw, y + bh))
            # Nearer people are larger (perspective); a little noise lets similar sizes swap.
            person.depth_key = -math.log(height) + rng.normal(0, 0.25 if ground else 1.0)
            people.append(person)
        return people

    @staticmethod
    def _overlap(a, b) -> float:
        iw = min(a[2], b[2]) - max(a[0], b[0])
        ih = min(a[3], b[3]) - max(a[1], b[1])
        if iw <= 0 or ih <= 0:
            return 0.0
        return iw * ih / min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))

    # -- rendering ------------------------------------------------------------------------------
    def render(self, index: int) -> Tuple[np.ndarray, List[Dict]]:
        """Image ``index`` (H, W, 3 uint8 BGR) and its COCO annotations (no ``id``/``image_id``)."""
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(int(index),)))
        h, w = self._image_shape(rng)
        img = _background(rng, h, w)
        people = self._make_people(rng, h, w)
        depth_keys = [p.depth_key for p in people]
        lo = min(depth_keys, default=0.0) - 1.0
        hi = max(depth_keys, default=0.0) + 1.0
        n_dis = int(min(rng.poisson(2.0 if self.crowded else 2.5), 7))
        distractors = [d for d in (_distractor(rng, h, w, rng.uniform(lo, hi) if rng.random() < 0.6 else hi + 1.0)
                                   for _ in range(n_dis)) if d is not None]
        for p in people:
            p.rasterise()

        # Paint back to front into an owner buffer: -1 background, i person i, 1000+j distractor j.
        # Then drop people that ended up (almost) hidden -- they are not drawn at all, so no drawn
        # person is left unannotated -- and paint again.
        layers = sorted([(p.depth_key, 0, i) for i, p in enumerate(people)] +
                        [(d.depth_key, 1, j) for j, d in enumerate(distractors)], key=lambda t: (-t[0], t[1], t[2]))
        min_frac = 0.1 if self.crowded else 0.18
        drop: set = set()
        for _ in range(2):
            owner = self._paint_owner(h, w, layers, people, distractors, drop)
            own = owner[(owner >= 0) & (owner < 1000)]
            counts = np.bincount(own.ravel(), minlength=len(people))
            new = {i for i, p in enumerate(people) if i not in drop and
                   counts[i] < max(30, min_frac * np.count_nonzero(p.canvas.part >= 0))}
            if not new:
                break
            drop |= new
        else:
            owner = self._paint_owner(h, w, layers, people, distractors, drop)

        light = np.array([rng.uniform(-0.6, 0.6), rng.uniform(-0.8, 0.1), -1.0])
        light /= np.linalg.norm(light)
        ambient = rng.uniform(0.4, 0.65)
        for kind, idx in ((k, i) for _, k, i in layers):
            if kind == 1:
                d = distractors[idx]
                sub = owner[d.y0:d.y0 + d.mask.shape[0], d.x0:d.x0 + d.mask.shape[1]] == 1000 + idx
                img[d.y0:d.y0 + d.mask.shape[0], d.x0:d.x0 + d.mask.shape[1]][sub] = d.colour[sub]
            elif idx not in drop:
                p = people[idx]
                win = self._clip(p.canvas, h, w)
                if win is None:
                    continue
                (iy, ix), (cy, cx) = win
                sub = owner[iy, ix] == idx
                img[iy, ix][sub] = p.colourise(light, ambient)[cy, cx][sub]

        img = self._post(rng, img)
        anns = [self._annotate(i, p, owner, h, w) for i, p in enumerate(people) if i not in drop]
        return img, [a for a in anns if a is not None]

    @staticmethod
    def _clip(cv: _Canvas, h: int, w: int):
        """Image slices and canvas slices of the canvas window clipped to the image."""
        ch, cw = cv.part.shape
        y0, x0 = max(cv.y0, 0), max(cv.x0, 0)
        y1, x1 = min(cv.y0 + ch, h), min(cv.x0 + cw, w)
        if y1 <= y0 or x1 <= x0:
            return None
        return ((slice(y0, y1), slice(x0, x1)),
                (slice(y0 - cv.y0, y1 - cv.y0), slice(x0 - cv.x0, x1 - cv.x0)))

    def _paint_owner(self, h, w, layers, people, distractors, drop) -> np.ndarray:
        owner = np.full((h, w), -1, np.int16)
        for _, kind, idx in layers:
            if kind == 1:
                d = distractors[idx]
                owner[d.y0:d.y0 + d.mask.shape[0], d.x0:d.x0 + d.mask.shape[1]][d.mask] = 1000 + idx
            elif idx not in drop:
                win = self._clip(people[idx].canvas, h, w)
                if win is not None:
                    (iy, ix), (cy, cx) = win
                    owner[iy, ix][people[idx].canvas.part[cy, cx] >= 0] = idx
        return owner

    @staticmethod
    def _post(rng, img: np.ndarray) -> np.ndarray:
        """Camera effects: exposure, illumination gradient, slight blur, sensor noise."""
        h, w = img.shape[:2]
        gain = rng.uniform(0.75, 1.2)
        a = rng.uniform(0, 2 * np.pi)
        xs = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :]
        ys = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
        illum = np.float32(gain) * (1.0 + np.float32(rng.uniform(0, 0.5)) *
                                    (xs * np.float32(math.cos(a)) + ys * np.float32(math.sin(a))))
        img = img * illum[..., None] + np.float32(rng.uniform(-15, 15))
        if rng.random() < 0.3:
            img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.0))
        img += _noise(rng, h, w, 3) * np.float32(rng.uniform(1, 6))
        return np.clip(img, 0, 255).astype(np.uint8)

    def _annotate(self, idx: int, p: _Person, owner: np.ndarray, h: int, w: int) -> Optional[Dict]:
        mask = owner == idx
        area = int(np.count_nonzero(mask))
        if area == 0:
            return None
        pts, tol, face_ok = p.keypoints_img(self._names)
        x, y = pts[:, 0] - 0.5, pts[:, 1] - 0.5  # continuous -> COCO pixel-index coordinates
        inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
        vis = np.where(inside, 1, 0)
        cv = p.canvas
        for k in np.nonzero(inside)[0]:
            iy, ix = int(math.floor(pts[k, 1])), int(math.floor(pts[k, 0]))
            if owner[iy, ix] != idx:
                continue  # another person or a distractor in front
            cy, cx = iy - cv.y0, ix - cv.x0
            part = cv.part[cy, cx]
            if face_ok[k] and self._assoc[k, part] and pts[k, 2] - cv.depth[cy, cx] <= tol[k]:
                vis[k] = 2
        x, y = np.where(vis > 0, x, 0.0), np.where(vis > 0, y, 0.0)
        rows, cols = np.any(mask, axis=1), np.any(mask, axis=0)
        r0, r1 = np.argmax(rows), h - np.argmax(rows[::-1])
        c0, c1 = np.argmax(cols), w - np.argmax(cols[::-1])
        lab = vis > 0
        bx0, by0, bx1, by1 = float(c0), float(r0), float(c1), float(r1)
        if lab.any():
            bx0, bx1 = min(bx0, float(x[lab].min())), max(bx1, float(x[lab].max()))
            by0, by1 = min(by0, float(y[lab].min())), max(by1, float(y[lab].max()))
        rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        kps = []
        for xx, yy, vv in zip(x, y, vis):
            kps += [round(float(xx), 2), round(float(yy), 2), int(vv)]
        bx0, by0 = round(bx0, 2), round(by0, 2)
        return {
            "category_id": 1,
            "iscrowd": 0,
            "bbox": [bx0, by0, round(bx1 - bx0, 2), round(by1 - by0, 2)],
            "area": area,
            "segmentation": {"size": [int(h), int(w)], "counts": rle["counts"]},
            "keypoints": kps,
            "num_keypoints": int(lab.sum()),
        }

    # -- dataset writing ---------------------------------------------------------------------------
    def categories(self) -> List[Dict]:
        return [{
            "id": 1, "name": "person", "supercategory": "person",
            "keypoints": list(self._names),
            "skeleton": [[a + 1, b + 1] for a, b in skeleton_indices(self.spec)],
        }]

    def write(self, out_dir: str, num_images: int, progress: bool = True) -> str:
        """Render ``num_images`` images into ``out_dir/images/NNNNNN.jpg`` and
        ``out_dir/annotations.json`` (returned). Crash-safe: everything is written into a temporary
        sibling directory first and moved into place at the end, the json last, so an interrupted
        run never leaves a dataset that looks complete."""
        from tqdm import tqdm

        out_dir = os.path.abspath(out_dir)
        parent = os.path.dirname(out_dir)
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=os.path.basename(out_dir) + ".tmp-", dir=parent)
        try:
            img_dir = os.path.join(tmp, "images")
            os.makedirs(img_dir)
            images, anns = [], []
            t0 = time.perf_counter()
            for i in tqdm(range(num_images), disable=not progress, desc=f"SynthPeople seed {self.seed}", unit="img"):
                img, img_anns = self.render(i)
                name = f"{i:06d}.jpg"
                ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
                if not ok:
                    raise RuntimeError(f"JPEG encoding failed for image {i}")
                with open(os.path.join(img_dir, name), "wb") as f:
                    f.write(buf.tobytes())
                images.append({"id": i + 1, "file_name": name, "height": int(img.shape[0]), "width": int(img.shape[1])})
                for a in img_anns:
                    anns.append({"id": len(anns) + 1, "image_id": i + 1, **a})
            data = {
                "info": {"description": "SynthPeople synthetic person keypoints", "version": GENERATOR_VERSION,
                         "seed": self.seed, "image_size": self.image_size, "crowded": self.crowded},
                "licenses": [],
                "images": images,
                "annotations": anns,
                "categories": self.categories(),
            }
            tmp_json = os.path.join(tmp, "annotations.json")
            with open(tmp_json, "w") as f:
                json.dump(data, f, separators=(",", ":"))
            logger.info("SynthPeople seed %d: %d images, %d persons in %.1f s", self.seed, len(images), len(anns),
                        time.perf_counter() - t0)
            return self._publish(tmp, out_dir)
        finally:
            if os.path.isdir(tmp):
                shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def _publish(tmp: str, out_dir: str) -> str:
        """Move the finished ``tmp`` folder to ``out_dir``; the json always arrives last."""
        json_path = os.path.join(out_dir, "annotations.json")
        if not os.path.exists(out_dir) or (os.path.isdir(out_dir) and not os.listdir(out_dir)):
            os.rename(tmp, out_dir)  # atomic
            return json_path
        # out_dir already has content: invalidate its json first, swap the image folder, json last.
        if os.path.exists(json_path):
            os.remove(json_path)
        old = os.path.join(out_dir, "images")
        if os.path.isdir(old):
            trash = tempfile.mkdtemp(prefix=".old-images-", dir=out_dir)
            os.rename(old, os.path.join(trash, "images"))
            shutil.rmtree(trash, ignore_errors=True)
        os.rename(os.path.join(tmp, "images"), old)
        os.replace(os.path.join(tmp, "annotations.json"), json_path)
        return json_path


# ----------------------------------------------------------------------------------------------
# Cached splits
# ----------------------------------------------------------------------------------------------


def _split(name: str) -> SynthSplit:
    try:
        return SPLITS[name]
    except KeyError:
        raise KeyError(f"unknown SynthPeople split {name!r}; known splits: {sorted(SPLITS)}") from None


def split_dir(name: str, cache_root: str) -> str:
    """The cache folder of split ``name``: ``cache_root/<name>-<hash of the split parameters and
    generator version>``. It holds ``annotations.json`` and ``images/`` once generated."""
    params = json.dumps({"split": asdict(_split(name)), "version": GENERATOR_VERSION,
                         "keypoints": list(COCO_PERSON.keypoint_names)}, sort_keys=True)
    return os.path.join(cache_root, f"{name}-{hashlib.sha1(params.encode()).hexdigest()[:10]}")


def ensure_split(name: str, cache_root: str, progress: bool = True) -> Tuple[str, str]:
    """Generate split ``name`` into its cache folder unless it is already there.
    Returns ``(json_path, image_root)``. Concurrent callers wait on a lock file instead of
    generating twice. Unknown names raise KeyError."""
    split = _split(name)
    out = split_dir(name, cache_root)
    json_path, image_root = os.path.join(out, "annotations.json"), os.path.join(out, "images")
    if os.path.isfile(json_path):
        return json_path, image_root
    os.makedirs(cache_root, exist_ok=True)
    lock_path = out + ".lock"
    with open(lock_path, "w") as lock:
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)
        except ImportError:  # not POSIX: no cross-process lock, the atomic rename still protects us
            pass
        if not os.path.isfile(json_path):
            logger.info("Generating SynthPeople split %s (%d images) into %s", name, split.num_images, out)
            # Leftovers of interrupted runs (no json; we hold the lock, so nobody is writing them).
            stale = [out] + [os.path.join(cache_root, d) for d in os.listdir(cache_root)
                             if d.startswith(os.path.basename(out) + ".tmp-")]
            for d in stale:
                if os.path.isdir(d):
                    shutil.rmtree(d, ignore_errors=True)
            gen = SynthPeople(split.seed, image_size=split.image_size, crowded=split.crowded)
            gen.write(out, split.num_images, progress=progress)
    return json_path, image_root


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="Generate a SynthPeople split (COCO person keypoints).")
    ap.add_argument("--split", default="synth_people_val", help=f"one of {sorted(SPLITS)}")
    ap.add_argument("--out", required=True, help="output folder (gets images/ and annotations.json)")
    ap.add_argument("--num-images", type=int, default=None, help="override the split's image count")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    split = _split(args.split)
    n = split.num_images if args.num_images is None else args.num_images
    t0 = time.perf_counter()
    path = SynthPeople(split.seed, split.image_size, split.crowded).write(args.out, n, progress=not args.no_progress)
    dt = time.perf_counter() - t0
    with open(path) as f:
        data = json.load(f)
    kps = sum(a["num_keypoints"] for a in data["annotations"])
    print(f"{args.split}: {len(data['images'])} images, {len(data['annotations'])} persons, "
          f"{kps} keypoints labelled, {dt:.1f} s -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
