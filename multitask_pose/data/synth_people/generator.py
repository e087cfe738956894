"""The SynthPeople generator: scene sampling, rendering, annotation and dataset writing."""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
import pycocotools.mask as mask_util

from ..keypoints import COCO_PERSON, KeypointSpec, skeleton_indices
from .appearance import _sample_appearance
from .body import (
    _DEG,
    _KEYPOINT_PARTS,
    _PART,
    _PART_NAMES,
    _posed_figure,
    _rot_x,
    _rot_y,
    _rot_z,
    _sample_shape,
)
from .person import _Person
from .raster import _Canvas
from .scene import _background, _distractor, _noise

logger = logging.getLogger(__name__)

# Bump whenever the rendered images or annotations change: it is part of the cache directory name,
# so old caches are not reused by a new generator.
GENERATOR_VERSION = 2

_JPEG_QUALITY = 92


class SynthPeople:
    """Deterministic generator of the SynthPeople dataset.

    ``render(i)`` draws image ``i`` (BGR uint8, COCO annotations without ids); ``write`` renders
    ``num_images`` images into a COCO-format folder. ``crowded=True`` puts 5-10 people per image
    with heavy overlaps. ``basic=True`` is the level a from-scratch model learns in minutes: 1-4
    people per image, nine in ten of them 80-300 px tall (the rest 50-80 px), no close-ups cut by
    the border, fewer distractors, overlaps between people up to 40% of the smaller box; poses,
    build, appearance, background and camera effects are sampled as in the standard level.
    """

    def __init__(self, seed: int, image_size: int = 320, crowded: bool = False,
                 spec: KeypointSpec = COCO_PERSON, basic: bool = False):
        unknown = [n for n in spec.keypoint_names if n not in _KEYPOINT_PARTS]
        if unknown:
            raise ValueError(f"SynthPeople cannot render keypoints {unknown} of spec "
                             f"{spec.name!r}; it knows {sorted(_KEYPOINT_PARTS)}")
        if crowded and basic:
            raise ValueError("a SynthPeople level is either crowded or basic, not both")
        if image_size < 64:
            raise ValueError(f"image_size must be at least 64 px, got {image_size}")
        self.seed = int(seed)
        self.image_size = int(image_size)
        self.crowded = bool(crowded)
        self.basic = bool(basic)
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
        # (h, w): landscape or portrait
        return (short, long_) if rng.random() < 0.72 else (long_, short)

    def _num_people(self, rng) -> int:
        if self.crowded:
            return int(rng.integers(5, 11))
        if self.basic:
            return int(rng.choice([1, 2, 3, 4], p=[0.3, 0.3, 0.25, 0.15]))
        if rng.random() < 0.03:
            return 0
        return int(rng.choice([1, 2, 3, 4], p=[0.34, 0.3, 0.21, 0.15]))

    def _height_px(self, rng, h: int) -> float:
        """Standing height in pixels: small people, medium/large ones and close-ups."""
        r = rng.random()
        if self.basic:
            top = max(min(300.0, 0.95 * h), 81.0)
            lo, hi = (80.0, top) if r < 0.9 else (50.0, 80.0)
            return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
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
        max_cover = 0.85 if self.crowded else (0.4 if self.basic else 0.6)
        people: List[_Person] = []
        boxes: List[Tuple[float, float, float, float]] = []
        for _ in range(n):
            fig = _posed_figure(rng, _sample_shape(rng))
            app = _sample_appearance(rng)
            height = self._height_px(rng, h)
            yaw = rng.uniform(0, 2 * np.pi)
            roll = (rng.uniform(-90, 90) if rng.random() < 0.02
                    else float(np.clip(rng.normal(0, 4), -12, 12)))
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
        n_dis = int(min(rng.poisson(1.0 if self.basic else (2.0 if self.crowded else 2.5)), 7))
        distractors = [
            d for d in (_distractor(rng, h, w,
                                    rng.uniform(lo, hi) if rng.random() < 0.6 else hi + 1.0)
                        for _ in range(n_dis)) if d is not None]
        for p in people:
            p.rasterise()

        # Paint back to front into an owner buffer: -1 background, i person i, 1000+j distractor j.
        # Then drop people that ended up (almost) hidden -- they are not drawn at all, so no drawn
        # person is left unannotated -- and paint again.
        layers = sorted([(p.depth_key, 0, i) for i, p in enumerate(people)] +
                        [(d.depth_key, 1, j) for j, d in enumerate(distractors)],
                        key=lambda t: (-t[0], t[1], t[2]))
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
            for i in tqdm(range(num_images), disable=not progress,
                          desc=f"SynthPeople seed {self.seed}", unit="img"):
                img, img_anns = self.render(i)
                name = f"{i:06d}.jpg"
                ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
                if not ok:
                    raise RuntimeError(f"JPEG encoding failed for image {i}")
                with open(os.path.join(img_dir, name), "wb") as f:
                    f.write(buf.tobytes())
                images.append({"id": i + 1, "file_name": name,
                               "height": int(img.shape[0]), "width": int(img.shape[1])})
                for a in img_anns:
                    anns.append({"id": len(anns) + 1, "image_id": i + 1, **a})
            data = {
                "info": {"description": "SynthPeople synthetic person keypoints",
                         "version": GENERATOR_VERSION, "seed": self.seed,
                         "image_size": self.image_size, "crowded": self.crowded,
                         "basic": self.basic},
                "licenses": [],
                "images": images,
                "annotations": anns,
                "categories": self.categories(),
            }
            tmp_json = os.path.join(tmp, "annotations.json")
            with open(tmp_json, "w") as f:
                json.dump(data, f, separators=(",", ":"))
            logger.info("SynthPeople seed %d: %d images, %d persons in %.1f s", self.seed,
                        len(images), len(anns), time.perf_counter() - t0)
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
