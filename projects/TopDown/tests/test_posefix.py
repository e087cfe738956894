"""PoseFix's training inputs: ground-truth poses corrupted with each error type of the
Ronchi & Perona taxonomy. The synthesis redraws until the error-analysis classifier agrees, so the
tests check what it cannot make true by itself: how many keypoints of the requested type it makes,
and, by the OKS formula computed here, that each lies where its type says (own joint at jitter
similarity, mirror joint, another person's joint, far from the own joint)."""

import numpy as np
import pytest

import multitask_pose  # noqa: F401  (registers the datasets)
from multitask_pose.data.keypoints import keypoint_spec_of
from multitask_pose.evaluation.error_analysis import (
    ERROR_TYPES,
    UNLABELLED,
    classify_keypoints,
    load_ground_truth,
)
from topdown.posefix import synthesize_pose_errors

DATASET = "synth_people_mini_val"


def images(coco):
    for img_id in coco.getImgIds():
        anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=[img_id])) if a["num_keypoints"]]
        if anns:
            kp = np.array([a["keypoints"] for a in anns], float).reshape(len(anns), -1, 3)
            yield kp, np.array([a["area"] for a in anns], float)


def ks(xy, target_xy, area, sigmas):
    """Keypoint similarity exp(-d^2 / (2 area (2 sigma)^2)), (G, K)."""
    d2 = ((xy - target_xy) ** 2).sum(-1)
    return np.exp(-d2 / (2 * np.asarray(area)[:, None] * (2 * np.asarray(sigmas)) ** 2))


@pytest.mark.parametrize("kind", ERROR_TYPES[1:])
def test_each_synthesised_error_lies_where_its_type_says(kind, synth_mini):
    coco, spec, _ = load_ground_truth(DATASET)
    sig, flip = np.asarray(spec.oks_sigmas), np.asarray(spec.flip_indices)
    rng = np.random.default_rng(0)
    want = ERROR_TYPES.index(kind)
    made = total = 0
    for gt, areas in images(coco):
        xy, types = synthesize_pose_errors(gt, areas, sig, flip, {kind: 1.0}, rng)
        labels = classify_keypoints(np.nan_to_num(xy), gt, areas, np.arange(len(gt)), sig, flip)
        assert ((types == UNLABELLED) == (gt[..., 2] == 0)).all()
        assert np.isnan(xy[types == UNLABELLED]).all()
        assert (labels.labels == types).all()  # the types returned are the classifier's
        sel = types == want
        total += (types != UNLABELLED).sum()
        made += sel.sum()
        own = ks(xy, gt[..., :2], areas, sig)
        if kind == "jitter":
            assert ((own[sel] >= 0.55 - 1e-9) & (own[sel] <= 0.8 + 1e-9)).all()
        elif kind == "miss":
            assert (own[sel] < 0.4).all()
        elif kind == "inversion":
            mirror = ks(xy, gt[:, flip, :2], areas, sig)
            assert (mirror[sel] >= 0.9 - 1e-9).all()
        else:  # swap: near the same joint of some other person
            near = np.zeros_like(sel)
            for h in range(len(gt)):
                other = ks(xy, gt[h, :, :2][None], np.full(len(gt), areas[h]), sig)
                near |= (other >= 0.9 - 1e-9) & (np.arange(len(gt)) != h)[:, None]
            assert near[sel].all()
    # Measured on this split: jitter 0.999, inversion 0.921, swap 0.748 (one-person images and
    # joints nobody else has labelled fall back to jitter), miss 1.0.
    assert made / total > {"inversion": 0.85, "swap": 0.65}.get(kind, 0.97), (kind, made, total)


def test_rates_are_drawn_as_requested(synth_mini):
    coco, spec, _ = load_ground_truth(DATASET)
    rng = np.random.default_rng(1)
    rates = {"jitter": 0.2, "miss": 0.1}
    types = np.concatenate([
        synthesize_pose_errors(gt, a, spec.oks_sigmas, spec.flip_indices, rates, rng)[1].ravel()
        for gt, a in images(coco)
    ])  # fmt: skip
    types = types[types != UNLABELLED]
    share = {t: np.mean(types == ERROR_TYPES.index(t)) for t in ("good", "jitter", "miss")}
    assert abs(share["jitter"] - 0.2) < 0.03 and abs(share["miss"] - 0.1) < 0.03
    assert abs(share["good"] - 0.7) < 0.03
    with pytest.raises(ValueError, match="summing to at most 1"):
        synthesize_pose_errors(np.zeros((1, 17, 3)), [1.0], spec.oks_sigmas, spec.flip_indices,
                               {"jitter": 0.8, "miss": 0.5}, rng)  # fmt: skip
    with pytest.raises(ValueError, match="non-negative rates"):
        synthesize_pose_errors(np.zeros((1, 17, 3)), [1.0], spec.oks_sigmas, spec.flip_indices,
                               {"blur": 0.1}, rng)  # fmt: skip
    assert keypoint_spec_of(DATASET).num_keypoints == 17
