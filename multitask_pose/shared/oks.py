"""Object keypoint similarity between pose candidates, and greedy OKS-NMS over them.

``keypoint_oks`` is the similarity the COCO-keypoint teams suppress duplicates with (HRNet's and
SimpleBaseline's ``oks_iou``): for two poses ``a`` and ``b`` with areas ``s_a`` and ``s_b``,

    OKS = mean over keypoints labelled in both of exp(-d^2 / (2 * ((s_a + s_b) / 2) * (2 sigma)^2))

(pycocotools' ``computeOks`` uses one ground-truth area instead of the mean and is what the
evaluator runs; this one is symmetric, as NMS needs). It is computed for all pairs at once.
"""

from typing import Optional

import torch

__all__ = ["keypoint_oks", "oks_nms"]


def keypoint_oks(
    kpts_a: torch.Tensor,
    kpts_b: torch.Tensor,
    areas_a: torch.Tensor,
    areas_b: torch.Tensor,
    sigmas,
    vis_thresh: Optional[float] = None,
) -> torch.Tensor:
    """Pairwise OKS.

    Args:
        kpts_a: (N, K, 3) keypoints (x, y, score or visibility).
        kpts_b: (M, K, 3).
        areas_a, areas_b: (N,), (M,) object areas in pixels squared.
        sigmas: (K,) the dataset's OKS sigmas (``keypoint_oks_sigmas`` in its metadata).
        vis_thresh: count only keypoints whose third value exceeds it in both poses; None counts
            all.

    Returns:
        (N, M) similarities in [0, 1]; 0 for a pair with no keypoint counted.
    """
    kpts_a = torch.as_tensor(kpts_a, dtype=torch.float64)
    kpts_b = torch.as_tensor(kpts_b, dtype=torch.float64, device=kpts_a.device)
    sig = torch.as_tensor(sigmas, dtype=torch.float64, device=kpts_a.device)
    if (
        kpts_a.dim() != 3
        or kpts_b.dim() != 3
        or kpts_a.shape[1:] != kpts_b.shape[1:]
        or kpts_a.shape[1] != len(sig)
    ):
        raise ValueError(
            f"keypoint_oks expects (N, K, 3) and (M, K, 3) keypoints with K = {len(sig)} sigmas;"
            f" got {tuple(kpts_a.shape)} and {tuple(kpts_b.shape)}"
        )
    areas_a = torch.as_tensor(areas_a, dtype=torch.float64, device=kpts_a.device).reshape(-1)
    areas_b = torch.as_tensor(areas_b, dtype=torch.float64, device=kpts_a.device).reshape(-1)
    var = (2 * sig) ** 2
    d2 = ((kpts_a[:, None, :, :2] - kpts_b[None, :, :, :2]) ** 2).sum(-1)  # (N, M, K)
    scale = (areas_a[:, None] + areas_b[None, :]) / 2 + torch.finfo(torch.float64).eps
    e = torch.exp(-d2 / var / scale[..., None] / 2)
    if vis_thresh is None:
        return e.mean(-1)
    counted = (kpts_a[:, None, :, 2] > vis_thresh) & (kpts_b[None, :, :, 2] > vis_thresh)
    n = counted.sum(-1)
    return torch.where(n > 0, (e * counted).sum(-1) / n.clamp_min(1), torch.zeros_like(e[..., 0]))


def oks_nms(
    keypoints: torch.Tensor,
    scores: torch.Tensor,
    areas: torch.Tensor,
    sigmas,
    thresh: float,
    vis_thresh: Optional[float] = None,
) -> torch.Tensor:
    """Greedy NMS by OKS: keep the best-scored pose, drop every remaining one whose OKS with it
    exceeds ``thresh``, repeat. Returns the kept indices (into the inputs), best first.

    Each step computes the kept pose's OKS with all remaining candidates in one vector operation
    (as many steps as kept poses); a full pairwise matrix would do far more work when most
    candidates are duplicates.
    """
    scores = torch.as_tensor(scores)
    if len(scores) == 0:
        return torch.zeros(0, dtype=torch.long, device=scores.device)
    order = torch.argsort(scores, descending=True, stable=True)
    kp = torch.as_tensor(keypoints, dtype=torch.float64)[order]
    ar = torch.as_tensor(areas, dtype=torch.float64)[order]
    keep = []
    remaining = torch.arange(len(order), device=kp.device)
    while remaining.numel():
        i = remaining[0]
        keep.append(i)
        rest = remaining[1:]
        if rest.numel():
            oks = keypoint_oks(
                kp[i : i + 1], kp[rest], ar[i : i + 1], ar[rest], sigmas, vis_thresh
            )[0]
            rest = rest[oks <= thresh]
        remaining = rest
    return order[torch.stack(keep).to(order.device)]
