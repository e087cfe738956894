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


# ----------------------------------------------------------------------------- the refiner
POSEFIX = ["MODEL.TOPDOWN.POSE_NET", "PoseFixHRNet", "MODEL.TOPDOWN.CUE", "PoseCue",
           "TEST.TOPDOWN.HINT.SOURCE", "keypoints", "MODEL.HRNET.INIT", "kaiming",
           "MODEL.TOPDOWN.INPUT_SIZE", "(64, 96)", "MODEL.TOPDOWN.HEATMAP_SIZE", "(16, 24)",
           "MODEL.TOPDOWN.HINT.SIGMA", "2.0"]  # fmt: skip
PLAIN = ["INPUT.TOPDOWN.SCALE_FACTOR", "0.0", "INPUT.TOPDOWN.ROTATION_PROB", "0.0",
         "INPUT.TOPDOWN.HALF_BODY_PROB", "0.0", "INPUT.TOPDOWN.FLIP_PROB", "0.0"]  # fmt: skip


def test_pose_cue_renders_each_keypoint_as_the_hint_cue_does():
    """Channel k of the rendered pose equals the joint-hint cue (tested against OpenCV in
    test_hints.py) on keypoint k; a missing keypoint leaves its channel empty."""
    from topdown.affine import box_to_center_size, crop_affine
    from topdown.data.cues import JointHintCue
    from topdown.posefix import PoseCue

    spec = keypoint_spec_of("coco_person_sample")
    cue = PoseCue(num_keypoints=17, sigma=3.0, rates={}, oks_sigmas=spec.oks_sigmas,
                  flip_indices=spec.flip_indices)  # fmt: skip
    box = np.array([[60.0, 40.0, 180.0, 260.0]])
    center, size = box_to_center_size(box, 48 / 64, 1.25)
    affine = crop_affine(center, size, 20.0, (48, 64))
    rng = np.random.default_rng(0)
    pose = np.c_[rng.uniform([60, 40], [180, 260], (17, 2)), np.ones(17)]
    pose[5] = np.nan
    maps = cue(box, affine, (48, 64), pose[None])
    assert maps.shape == (1, 17, 64, 48)
    single = JointHintCue(sigma=3.0)
    for k in (0, 4, 16):
        ref = single(box, affine, (48, 64), pose[None, k : k + 1])[0, 0]
        np.testing.assert_allclose(maps[0, k].numpy(), ref.numpy(), atol=1e-6)
    assert float(maps[0, 5].abs().max()) == 0.0


@pytest.mark.parametrize("kind,inside", [("none", True), ("miss", False)])
def test_training_input_poses_carry_the_configured_errors(kind, inside):
    """In the training crops the rendered input pose sits at the person's joints when no errors
    are drawn (each Gaussian's mean at ks >= 0.9 of its joint, the "good" range), and away from
    them (ks below 0.4, the synthesis's miss) when every keypoint is a miss."""
    from detectron2.data import DatasetCatalog

    from topdown.affine import apply_affine
    from topdown.data import TopDownTrainMapper, person_dicts
    from topdown_testing import sample_cfg

    rates = {"none": "0.0", "miss": "1.0"}[kind]
    cfg = sample_cfg(*POSEFIX, *PLAIN, "MODEL.TOPDOWN.POSEFIX.JITTER", "0.0",
                     "MODEL.TOPDOWN.POSEFIX.INVERSION", "0.0", "MODEL.TOPDOWN.POSEFIX.SWAP",
                     "0.0", "MODEL.TOPDOWN.POSEFIX.MISS", rates)  # fmt: skip
    spec = keypoint_spec_of("coco_person_sample")
    mapper = TopDownTrainMapper(cfg, is_train=True)
    np.random.seed(0)
    for person in person_dicts(DatasetCatalog.get("coco_person_sample"))[:4]:
        x = mapper(person)
        kp = person["keypoints"].copy()
        kp[:, :2] -= 0.5
        affine = x["crop_affine"].numpy()
        scale = np.sqrt(abs(np.linalg.det(affine[:, :2])))
        for k in np.flatnonzero(kp[:, 2] > 0):
            m = x["cues"][k].numpy()
            v, u = np.unravel_index(m.argmax(), m.shape)
            if m.max() < 0.5 or not (6 <= u <= 57 and 6 <= v <= 89):
                continue  # the input point is not well inside the crop
            ys, xs = np.mgrid[0:96, 0:64]
            centre = np.array([(xs * m).sum(), (ys * m).sum()]) / m.sum()  # the Gaussian's mean
            joint = apply_affine(kp[None, k : k + 1], affine[None])[0, 0, :2]
            d2 = ((centre - joint) ** 2).sum() / scale**2
            sim = np.exp(-d2 / (2 * person["area"] * (2 * spec.oks_sigmas[k]) ** 2))
            assert (sim >= 0.9 - 1e-3) if inside else (sim < 0.4 + 1e-3), (k, sim)


def test_pose_fix_network_by_hand_and_its_config_errors():
    """PoseFixHRNet is HRNet with 17 more input channels at conv1 (64 x 17 x 3 x 3 weights); an
    HRNet state dict loads into every other layer. A PoseCue model without keypoint hints is
    refused at build time."""
    from detectron2.modeling import build_model

    from topdown.modeling import PoseHighResolutionNet
    from topdown.posefix import PoseFixHRNet
    from topdown_testing import sample_cfg

    def count(m):
        return sum(p.numel() for p in m.parameters())

    hrnet = PoseHighResolutionNet(width=32)
    fix = PoseFixHRNet(width=32)
    assert count(fix) == count(hrnet) + 64 * 17 * 9
    state = {k: v for k, v in hrnet.state_dict().items() if k != "conv1.weight"}
    missing, unexpected = fix.load_state_dict(state, strict=False)
    assert missing == ["conv1.weight"] and unexpected == []
    with pytest.raises(ValueError, match="HINT.SOURCE 'keypoints'"):
        build_model(sample_cfg(*POSEFIX, "TEST.TOPDOWN.HINT.SOURCE", "center"))


@pytest.mark.slow
def test_a_trained_refiner_lowers_the_keypoint_error_of_a_results_file(tmp_path):
    """A small PoseFix refiner trained on the COCO sample's persons with synthesised errors (default
    rates, no augmentation, 300 Adam steps) then refines, through posefix_refine.py, a results
    file of the same persons with fresh errors: the mean keypoint error (in units of the person
    scale) and the keypoint AP both improve. A memorisation check on 12 persons: it shows the
    input pose, the crop and the training agree, not that the refiner generalises."""
    import json
    import sys
    from pathlib import Path

    import torch
    from detectron2.data import DatasetCatalog
    from detectron2.modeling import build_model

    from topdown.data import TopDownTrainMapper, person_dicts
    from topdown_testing import SAMPLE, sample_cfg

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import posefix_refine

    cfg = sample_cfg(*POSEFIX, *PLAIN, "TEST.TOPDOWN.BOX_SOURCE", "file")
    persons = person_dicts(DatasetCatalog.get(SAMPLE))
    torch.manual_seed(0)
    np.random.seed(0)
    model = build_model(cfg)
    mapper = TopDownTrainMapper(cfg, is_train=True)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    steps = 300
    decay = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + np.cos(np.pi * i / steps)))
    for _ in range(steps):
        losses = model([mapper(p) for p in persons])
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
        decay.step()
    torch.save({"model": model.state_dict()}, tmp_path / "refiner.pth")
    (tmp_path / "refiner.yaml").write_text(cfg.dump())

    # The results file to refine: every person with fresh errors (detectron2's results format).
    spec = keypoint_spec_of(SAMPLE)
    rates = {"jitter": 0.15, "inversion": 0.05, "swap": 0.05, "miss": 0.1}
    rng = np.random.default_rng(7)
    entries, truth = [], {}
    for d in DatasetCatalog.get(SAMPLE):
        mine = [p for p in persons if p["image_id"] == d["image_id"]]
        if not mine:
            continue
        gt = np.stack([p["keypoints"] for p in mine]) - [0.5, 0.5, 0]  # COCO's frame
        xy, _ = synthesize_pose_errors(gt, [p["area"] for p in mine], spec.oks_sigmas,
                                       spec.flip_indices, rates, rng)  # fmt: skip
        for p, g, q in zip(mine, gt, xy):
            x0, y0, x1, y1 = p["bbox"]
            kp = np.c_[np.nan_to_num(q), np.where(np.isfinite(q).all(1), 1.0, 0.0)]
            box = [round(float(v), 2) for v in (x0, y0, x1 - x0, y1 - y0)]
            entries.append({"image_id": d["image_id"], "category_id": 1, "bbox": box,
                            "score": 1.0, "keypoints": kp.ravel().tolist()})  # fmt: skip
            truth[(d["image_id"], tuple(box))] = (g, p["area"])
    given = tmp_path / "given.json"
    given.write_text(json.dumps(entries))
    assert posefix_refine.main(["--config-file", str(tmp_path / "refiner.yaml"),
                                "--weights", str(tmp_path / "refiner.pth"),
                                "--results", str(given), "--dataset", SAMPLE,
                                "--output", str(tmp_path / "out")]) == 0  # fmt: skip
    refined = json.loads((tmp_path / "out" / "coco_instances_results.json").read_text())
    assert len(refined) == len(entries)

    def mean_error(results):
        errs = []
        for r in results:
            key = min(
                truth,
                key=lambda t: (t[0] != r["image_id"], np.abs(np.subtract(t[1], r["bbox"])).sum()),
            )
            g, area = truth[key]
            xy = np.asarray(r["keypoints"], float).reshape(-1, 3)[:, :2]
            lab = g[:, 2] > 0
            errs.extend(np.hypot(*(xy[lab] - g[lab, :2]).T) / np.sqrt(area))
        return float(np.mean(errs))

    before, after = mean_error(entries), mean_error(refined)
    print(f"refiner: mean keypoint error / person scale {before:.3f} -> {after:.3f}")
    assert after < 0.7 * before, (before, after)


def test_refine_tool_refuses_a_config_that_is_no_refiner_and_a_missing_file(tmp_path, capsys):
    import sys
    from pathlib import Path

    from topdown_testing import sample_cfg

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import posefix_refine

    plain = tmp_path / "plain.yaml"
    plain.write_text(sample_cfg().dump())
    (tmp_path / "w.pth").write_bytes(b"")
    (tmp_path / "r.json").write_text("[]")
    files = ["--weights", str(tmp_path / "w.pth"), "--output", str(tmp_path / "out")]
    assert posefix_refine.main(["--config-file", str(plain), *files, "--results",
                                str(tmp_path / "r.json")]) == 2  # fmt: skip
    assert "not a PoseFix refiner" in capsys.readouterr().err
    refiner = tmp_path / "refiner.yaml"
    refiner.write_text(sample_cfg(*POSEFIX).dump())
    assert posefix_refine.main(["--config-file", str(refiner), *files, "--results",
                                str(tmp_path / "missing.json")]) == 2  # fmt: skip
    assert "--results" in (err := capsys.readouterr().err) and "missing.json" in err


def test_flip_test_mirrors_the_input_pose_as_training_renders_a_mirrored_person():
    """The flip test's cue of a mirrored crop is the rendering of the mirrored pose (x -> W - 1 -
    x, left and right exchanged by the flip map), as the training mapper renders a flipped
    person; a plain mirror of the channels would hand the left wrist's map to the left wrist."""
    from detectron2.modeling import build_model

    from multitask_pose.shared import flip_keypoints
    from topdown_testing import sample_cfg

    model = build_model(sample_cfg(*POSEFIX)).eval()
    cue, (w, h) = model.cue, (64, 96)
    identity = np.array([[[1.0, 0, 0], [0, 1.0, 0]]])  # the image is the crop
    box = np.array([[0.0, 0.0, w - 1, h - 1]])
    rng = np.random.default_rng(1)
    pose = np.c_[rng.uniform([5, 5], [w - 6, h - 6], (17, 2)), np.ones(17)]
    rendered = cue(box, identity, (w, h), pose[None])
    mirrored = flip_keypoints(pose, w, model.flip_indices.numpy())
    expected = cue(box, identity, (w, h), mirrored[None])
    assert np.abs(model.flip_cues(rendered).numpy() - expected.numpy()).max() < 1e-5
    assert np.abs(rendered.flip(-1).numpy() - expected.numpy()).max() > 0.5


def test_pose_fix_trains_a_few_steps_and_refines_through_the_predictor():
    """Finite, falling losses over a few steps on the COCO sample; TopDownPredictor refines given
    poses (boxes + keypoints), one refined pose per box; a pose-less call is refused."""
    import torch

    from topdown_testing import sample_cfg, trained_predictor

    cfg = sample_cfg(*POSEFIX, "TEST.TOPDOWN.IOU_NMS_THRESH", "1.0",
                     "TEST.TOPDOWN.OKS_NMS_THRESH", "1.0")  # fmt: skip
    predictor = trained_predictor(cfg, {"loss_heatmap"})
    image = np.zeros((120, 90, 3), np.uint8)
    kp = np.c_[np.random.uniform(15, 65, (2 * 17, 2)), np.ones(2 * 17)].reshape(2, 17, 3)
    out = predictor(image, boxes=[[10, 10, 70, 110], [5, 5, 60, 100]], keypoints=kp)["instances"]
    assert out.pred_keypoints.shape == (2, 17, 3) and torch.isfinite(out.pred_keypoints).all()
    with pytest.raises(ValueError, match="pred_keypoints"):
        predictor(image, boxes=[[10, 10, 70, 110]])
