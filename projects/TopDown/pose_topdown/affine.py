"""The one affine helper of the top-down stage: person box -> fixed-aspect crop and back.

Conventions are the official HRNet / SimpleBaseline ones, so that their checkpoints and recipes
reproduce: a box becomes a centre and a size of the crop's aspect ratio, enlarged by a padding
factor (1.25); the crop maps that centre to the crop's centre ``(W/2, H/2)``, scales the size to
``(W, H)`` and rotates by ``rot`` degrees (positive rotates the person anticlockwise in the crop).
The transform is a similarity written in closed form (the official code derives the same matrix from
three point pairs with ``cv2.getAffineTransform``). Heatmap coordinates are crop coordinates divided
by the stride, exactly, because both affines fix the centre to the output's centre.

Everything is vectorised over a batch of boxes: arrays carry a leading ``N``.
"""

from typing import Sequence, Tuple

import cv2
import numpy as np

__all__ = [
    "box_to_center_size",
    "crop_affine",
    "invert_affine",
    "apply_affine",
    "warp_crops",
]


def box_to_center_size(
    boxes_xyxy: np.ndarray, aspect_ratio: float, padding: float = 1.25
) -> Tuple[np.ndarray, np.ndarray]:
    """(N, 4) XYXY boxes -> centres (N, 2) and sizes (N, 2) in pixels with
    ``w / h == aspect_ratio``.

    The shorter side is grown to the aspect ratio (never cropped), then both sides are multiplied by
    ``padding``. Raises on non-finite or non-positive-area boxes: they have no crop.
    """
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    bad = ~np.isfinite(boxes).all(axis=1) | (w <= 0) | (h <= 0)
    if bad.any():
        raise ValueError(
            f"boxes without area or with non-finite corners have no crop: {boxes[bad][:3].tolist()}"
            f" ({int(bad.sum())} of {len(boxes)})"
        )
    center = np.stack([boxes[:, 0] + 0.5 * w, boxes[:, 1] + 0.5 * h], axis=1)
    h = np.maximum(h, w / aspect_ratio)
    w = h * aspect_ratio
    return center, np.stack([w, h], axis=1) * padding


def crop_affine(
    center: np.ndarray, size: np.ndarray, rot_deg, output_size: Sequence[int]
) -> np.ndarray:
    """(N, 2, 3) matrices mapping image pixels to crop pixels.

    Args:
        center, size: (N, 2) from :func:`box_to_center_size` (size in image pixels, any aspect:
            the crop is scaled by ``output_w / size_w`` in both directions, as the official code).
        rot_deg: scalar or (N,) rotation in degrees.
        output_size: (W, H) of the crop (or of the heatmap, for heatmap coordinates).
    """
    center = np.asarray(center, dtype=np.float64).reshape(-1, 2)
    size = np.asarray(size, dtype=np.float64).reshape(-1, 2)
    rot = np.broadcast_to(np.deg2rad(np.asarray(rot_deg, dtype=np.float64)), (len(center),))
    out_w, out_h = float(output_size[0]), float(output_size[1])
    k = out_w / size[:, 0]
    c, s = np.cos(rot) * k, np.sin(rot) * k
    m = np.empty((len(center), 2, 3))
    # dst = (out_w/2, out_h/2) + k * R(-rot) @ (src - center)
    m[:, 0, 0], m[:, 0, 1] = c, s
    m[:, 1, 0], m[:, 1, 1] = -s, c
    m[:, 0, 2] = out_w / 2 - (c * center[:, 0] + s * center[:, 1])
    m[:, 1, 2] = out_h / 2 - (-s * center[:, 0] + c * center[:, 1])
    return m


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of (N, 2, 3) affine matrices."""
    m = np.asarray(m, dtype=np.float64)
    a = m[..., :2]
    a_inv = np.linalg.inv(a)
    t = -np.einsum("nij,nj->ni", a_inv, m[..., 2])
    return np.concatenate([a_inv, t[..., None]], axis=-1)


def apply_affine(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Map (N, K, 2+) points (extra columns such as visibility or score are kept) by (N, 2, 3)."""
    points = np.asarray(points, dtype=np.float64)
    out = points.copy()
    out[..., :2] = np.einsum("nij,nkj->nki", m[..., :2], points[..., :2]) + m[:, None, :, 2]
    return out


def warp_crops(image: np.ndarray, m: np.ndarray, output_size: Sequence[int]) -> np.ndarray:
    """(N, H, W, C) crops of one HWC image, bilinear, zero outside the image (as the official
    code)."""
    w, h = int(output_size[0]), int(output_size[1])
    out = np.zeros((len(m), h, w) + image.shape[2:], dtype=image.dtype)
    # cv2.warpAffine has no batched form; one call per crop is the cost of the warp itself.
    for i, mi in enumerate(m):
        out[i] = cv2.warpAffine(image, mi.astype(np.float64), (w, h), flags=cv2.INTER_LINEAR)
    return out
