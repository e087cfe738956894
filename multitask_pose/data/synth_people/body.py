"""SynthPeople body model: geometry helpers, body parts, builds (shapes), posed figures, pose
sampling within joint limits and collision rejection."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np

_DEG = math.pi / 180.0

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
    # AI Challenger's two extra joints (the AIC-format split): the crown, just inside the top of
    # the skull, and the base of the neck between the shoulders.
    "head_top": ("head", "hair"), "neck": ("neck", "torso"),
}
# How far inside the skull's top the head-top point sits (fraction of the vertical semi-axis):
# on the outline itself, half the pixels under it would be background.
_HEAD_TOP_INSET = 0.85
# Shoulders and hips sit inside the trunk; annotators call them visible while the trunk around them
# is seen, i.e. up to ~50 deg of turn for the far side. Depth (body heights) a trunk joint may lie
# behind the visible surface and still count as visible; limb joints get twice the limb radius.
_TRUNK_JOINT_DEPTH = 0.13
# Face points are seen only from the side their surface faces: minimum of normal . (towards camera).
_FACE_FACING_MIN = {
    "nose": -0.25, "left_eye": 0.12, "right_eye": 0.12, "left_ear": -0.2, "right_ear": -0.2,
}

# Head ellipsoid semi-axes (lateral, vertical, depth) and face landmarks in the head frame.
_HEAD_SEMI = np.array([0.048, 0.062, 0.055])
# Unit-sphere direction of the left eye (x -> -x for the right one).
_EYE_DIR = np.array([0.40, 0.05, 0.915])
_BROW_DIR = np.array([0.40, 0.30, 0.866])

# How far the hip joints sit above the base of the upper body (body heights). Generator version 1
# had 0 (hips at 0.50 and knees at 0.265 of the height, 3% and 2% lower than COCO's annotators put
# them: a real COCO-trained model placed them that much higher on SynthPeople). Fractions of the
# shoulder-hip-knee-ankle polyline, medians over upright fully labelled sides, as annotated: real
# COCO sample (17 sides) 0.368 / 0.318 / 0.307; synth_people_val version 1 (577 sides) 0.414 /
# 0.302 / 0.288; version 2 (hips raised 0.03, knees 0.02, upper body unchanged) 0.375 / 0.315 /
# 0.314 (``tools/synth_people_stats.py --anatomy``).
_HIP_RAISE = 0.03

# Indices of the trunk cross-sections in _Figure.sections.
_S_CROTCH, _S_HIP, _S_WAIST, _S_CHEST, _S_SHOULDER, _S_NECK = range(6)


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
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2],
                     a[0] * b[1] - a[1] * b[0]])


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
    # part, centre, axes (cols), semi
    ellipsoids: List[Tuple[str, np.ndarray, np.ndarray, np.ndarray]]
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
    # Joint heights of a standing adult (Drillis & Contini; COCO's annotators agree, see
    # _HIP_RAISE): ankle 0.04, knee 0.285, hip joint 0.53, shoulder 0.815.
    lt, ls = 0.245 * sh.leg, 0.245 * sh.leg
    hip_y = 0.04 + lt + ls
    # The upper body hangs from ``trunk_y`` (the waist section and everything above it).
    trunk_y = hip_y - _HIP_RAISE
    # Upper body: rotated by the spine (bend/lateral/twist) about a pivot just above the pelvis.
    pivot = np.array([0.0, trunk_y + 0.06, 0.0])
    r_sp = _rot_y(pose["spine_twist"]) @ _rot_x(pose["spine_bend"]) @ _rot_z(pose["spine_lat"])
    r_half = (_rot_y(pose["spine_twist"] / 2) @ _rot_x(pose["spine_bend"] / 2)
              @ _rot_z(pose["spine_lat"] / 2))

    def up(q):
        return pivot + r_sp @ (q - pivot)

    # Torso cross-sections (height above the hip joints for the pelvis, above ``trunk_y`` for the
    # rest; half-width, half-depth, rotation): crotch, hips (widest, with the buttocks), waist,
    # chest, shoulders, neck base.
    sections = []
    for y0, dy, a, b, rot in ((hip_y, -0.075, 0.088, 0.062, None),
                              (hip_y, -0.01, 0.118, 0.072, None),
                              (trunk_y, 0.10, 0.092, 0.064, r_half),
                              (trunk_y, 0.22, 0.10, 0.074, r_sp),
                              (trunk_y, 0.305, 0.102, 0.064, r_sp),
                              (trunk_y, 0.345, 0.056, 0.046, r_sp)):
        c = np.array([0.0, y0 + dy, 0.0])
        if rot is None:
            sections.append((c, np.array([1.0, 0.0, 0.0]), _FWD.copy(), a * w, b * w))
        else:
            sections.append((pivot + rot @ (c - pivot), rot[:, 0].copy(), rot[:, 2].copy(),
                             a * w, b * w))

    caps: List[Tuple[str, np.ndarray, np.ndarray, float, float]] = []
    kp: Dict[str, np.ndarray] = {}

    # Arms, computed for a canonical left arm in the upper-body frame and mirrored for the right.
    sh_local = np.array([0.108 * w, trunk_y + 0.315, -0.005])
    for side, key in (("left", "arm_l"), ("right", "arm_r")):
        e, p, tw, el, wr = pose[key]
        elb, wri, hand = _arm_chain(sh_local, e, p, tw, el, wr,
                                    0.175 * sh.arm, 0.15 * sh.arm, 0.075 * sh.arm)
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
    neck_base = up(np.array([0.0, trunk_y + 0.335, 0.0]))
    neck_top = up(np.array([0.0, trunk_y + 0.39, 0.005]))
    r_head = (r_sp @ _rot_y(pose["head_yaw"]) @ _rot_x(pose["head_pitch"])
              @ _rot_z(pose["head_roll"]))
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
    kp["head_top"] = centre + r_head @ np.array([0.0, _HEAD_TOP_INSET * semi[1], 0.0])
    kp["neck"] = neck_base
    face_n["nose"] = r_head @ _FWD
    if sh.long_hair > 0:
        caps.append(("hair", head_pt([0.0, -0.004, -0.02]),
                     head_pt([0.0, -0.05 - sh.long_hair, -0.03]), 0.04 * hs, 0.034 * hs))

    return _Figure(keypoints=kp, face_normals=face_n, capsules=caps, ellipsoids=ells,
                   sections=sections, spine=r_sp, pivot=pivot)


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
        pose.update(spine_bend=u(-10, 35), spine_lat=rng.normal(0, 8),
                    spine_twist=rng.normal(0, 20))
    elif fam == 4:  # sitting / squatting
        fl, kn = u(60, 115), u(60, 140)
        for i in range(2):
            legs[i] = [fl + u(-10, 10), u(0, 30), u(-5, 30), min(150.0, kn + u(-10, 10)),
                       u(-10, 25)]
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
    "spine_bend": 0.0, "spine_lat": 0.0, "spine_twist": 0.0,
    "head_yaw": 0.0, "head_pitch": 0.0, "head_roll": 0.0,
    "arm_l": tuple(x * _DEG for x in (25, 20, 0, 10, 0)),
    "arm_r": tuple(x * _DEG for x in (25, 20, 0, 10, 0)),
    "leg_l": tuple(x * _DEG for x in (0, 6, 10, 3, 0)),
    "leg_r": tuple(x * _DEG for x in (0, 6, 10, 3, 0)),
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
