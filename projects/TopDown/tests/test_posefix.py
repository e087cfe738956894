"""PoseFix as its official code builds it (mks0601/PoseFix_RELEASE; settings and sources in
published_posefix.py): the error synthesis against the official tables and regions, the input
pose rendering, the soft-argmax codec and loss against references computed here, the test crop,
flip test and OKS-NMS, and the refiner's wiring (its pose input, the flips)."""

import numpy as np
import pytest
import torch
from published_posefix import ERROR_TABLES, KS_BOUNDS, SETTINGS

import multitask_pose  # noqa: F401  (registers the datasets)
from multitask_pose.data.keypoints import keypoint_spec_of
from multitask_pose.evaluation.error_analysis import ERROR_TYPES, UNLABELLED, load_ground_truth
from pose_topdown.posefix import OFFICIAL_RATES, synthesize_pose

DATASET = "synth_people_mini_val"


def persons(coco):
    """(joints (K, 3), near (M, K, 3), box area) of each annotated person, near the persons whose
    box IoU with it is at least 0.1 (lib/tfflat/base.py:329-335)."""
    for img_id in coco.getImgIds():
        anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=[img_id])) if a["num_keypoints"]]
        boxes = np.array([a["bbox"] for a in anns], float).reshape(-1, 4)
        for i, a in enumerate(anns):
            x0 = np.maximum(boxes[i, :2], boxes[:, :2])
            x1 = np.minimum(boxes[i, :2] + boxes[i, 2:], boxes[:, :2] + boxes[:, 2:])
            inter = np.prod(np.clip(x1 - x0, 0, None), 1)
            iou = inter / (boxes[i, 2:].prod() + boxes[:, 2:].prod(1) - inter)
            near = [np.reshape(b["keypoints"], (-1, 3)) for j, b in enumerate(anns)
                    if j != i and iou[j] >= 0.1]  # fmt: skip
            yield (np.reshape(a["keypoints"], (-1, 3)).astype(float),
                   np.array(near, float).reshape(-1, 17, 3), float(boxes[i, 2:].prod()))


def ks_of(xy, target, area, sigma):
    return np.exp(-((xy - target) ** 2).sum(-1) / (2 * area * (2 * sigma) ** 2))


def test_official_error_tables():
    for key, (values, source) in ERROR_TABLES.items():
        np.testing.assert_allclose(OFFICIAL_RATES[key], values, err_msg=f"{key} ({source})")
    assert set(OFFICIAL_RATES) == set(ERROR_TABLES)


def expected_table(joints, near):
    """The published tables' probabilities for one person (main/gen_batch.py:124-256)."""
    n, m = int((joints[:, 2] > 0).sum()), len(near)
    crowded = (n <= 10 and m > 0) or (n <= 15 and m >= 3)
    return {
        "jitter": ERROR_TABLES["jitter", "<=10 labelled" if n <= 10 else ">10 labelled"][0],
        "miss": ERROR_TABLES["miss", "<=5 labelled" if n <= 5 else "<=10 labelled" if n <= 10
                             else ">10 labelled"][0],  # fmt: skip
        "inversion": ERROR_TABLES["inversion", "any"][0],
        "swap": ERROR_TABLES["swap", "crowded" if crowded else "not crowded"][0],
    }


def test_error_types_are_drawn_at_the_official_rates(synth_mini):
    """Over the split's persons, each type's share of the drawn keypoints matches the published
    tables, renormalised where a type has no candidate (no labelled mirror joint: no inversion;
    no partner with the joint or its mirror: no swap; main/gen_batch.py:306-326)."""
    coco, spec, _ = load_ground_truth(DATASET)
    flip = np.asarray(spec.flip_indices)
    rng = np.random.default_rng(0)
    made = dict.fromkeys(ERROR_TYPES, 0)
    expected = dict.fromkeys(ERROR_TYPES, 0.0)
    for joints, near, area in persons(coco):
        _, types = synthesize_pose(joints, near, area, spec.oks_sigmas, flip, rng)
        table = expected_table(joints, near)
        lab = joints[:, 2] > 0
        for j in np.flatnonzero(lab):
            p = {t: table[t][j] for t in table}
            if flip[j] == j or not lab[flip[j]]:
                p["inversion"] = 0.0
            if not ((near[:, j, 2] > 0).any() or (near[:, flip[j], 2] > 0).any()):
                p["swap"] = 0.0
            p["good"] = 1 - sum(table[t][j] for t in table)
            total = sum(p.values())
            for t in ERROR_TYPES:
                expected[t] += p[t] / total
        for t in ERROR_TYPES:
            made[t] += int((types == ERROR_TYPES.index(t)).sum())
    n = sum(made.values())
    assert n == round(sum(expected.values())) and n > 1000
    for t in ERROR_TYPES:
        share, want = made[t] / n, expected[t] / n
        # 4 binomial standard deviations, plus rare regions with no free point
        tol = 4 * np.sqrt(want * (1 - want) / n) + 0.005
        assert abs(share - want) < tol, (t, share, want)
    assert made["inversion"] > 0 and made["swap"] > 0 and made["miss"] > 0


@pytest.mark.parametrize("kind", ERROR_TYPES)
def test_each_error_type_lies_in_its_official_region(kind, synth_mini):
    """With every keypoint forced to one type, each drawn point lies where the official code draws
    it: in its ks range of its own joint (good, jitter), of the mirror joint (inversion), of a
    partner's same or mirror joint (swap), or in the ks 0.5-0.1 ring of some candidate and beyond
    ks 0.5 of all (miss); and nearer its source than every other candidate."""
    coco, spec, _ = load_ground_truth(DATASET)
    sig, flip = np.asarray(spec.oks_sigmas), np.asarray(spec.flip_indices)
    (lo, hi), source = KS_BOUNDS[kind]
    rng = np.random.default_rng(1)
    rates = {} if kind == "good" else {kind: 1.0}
    drawn = 0
    for joints, near, area in persons(coco):
        pose, types = synthesize_pose(joints, near, area, sig, flip, rng, rates)
        assert ((types == UNLABELLED) == (pose[:, 2] == 0)).all()
        assert (pose[joints[:, 2] == 0, 2] == 0).all()  # unlabelled joints stay empty
        for j in np.flatnonzero(types == ERROR_TYPES.index(kind)):
            drawn += 1
            xy, s = pose[j, :2], sig[j]
            own = ks_of(xy, joints[j, :2], area, s)
            partners = [q[i, :2] for q in near for i in {j, flip[j]} if q[i, 2] > 0]
            mirror = [joints[flip[j], :2]] if flip[j] != j and joints[flip[j], 2] > 0 else []
            if kind in ("good", "jitter"):
                assert lo - 1e-9 <= own <= hi + 1e-9, (kind, own, source)
            elif kind == "inversion":
                assert ks_of(xy, mirror[0], area, s) >= lo - 1e-9, source
            elif kind == "swap":
                assert max(ks_of(xy, q, area, s) for q in partners) >= lo - 1e-9, source
            else:
                cands = [joints[j, :2], *mirror, *partners]
                sims = np.array([ks_of(xy, c, area, s) for c in cands])
                assert (sims < hi + 1e-9).all() and (sims >= lo - 1e-9).any(), (sims, source)
    assert drawn > {"inversion": 300, "swap": 20}.get(kind, 1000), (kind, drawn)


def test_misses_stay_near_the_person(synth_mini):
    """The official misses lie in a ring of ks 0.5-0.1 around a candidate (the joint, its mirror
    or a partner's): measured, a median 0.25 sqrt(box area) from the own joint."""
    coco, spec, _ = load_ground_truth(DATASET)
    sig, flip = np.asarray(spec.oks_sigmas), np.asarray(spec.flip_indices)
    rng = np.random.default_rng(2)
    dists = []
    for joints, near, area in persons(coco):
        pose, types = synthesize_pose(joints, near, area, sig, flip, rng, {"miss": 1.0})
        sel = types == ERROR_TYPES.index("miss")
        dists.extend(np.hypot(*(pose[sel, :2] - joints[sel, :2]).T) / np.sqrt(area))
    assert 0.15 < np.median(dists) < 0.35 and len(dists) > 1000


def test_rates_are_checked():
    spec = keypoint_spec_of(DATASET)
    joints = np.c_[np.random.default_rng(0).uniform(0, 50, (17, 2)), np.ones(17)]
    args = (joints, np.zeros((0, 17, 3)), 100.0, spec.oks_sigmas, spec.flip_indices,
            np.random.default_rng(0))  # fmt: skip
    with pytest.raises(ValueError, match="summing to at most 1"):
        synthesize_pose(*args, {"jitter": 0.8, "miss": 0.5})
    with pytest.raises(ValueError, match="the types are"):
        synthesize_pose(*args, {"blur": 0.1})


# ----------------------------------------------------------------------------- the refiner
# The recipe's PoseFix keys on the small HRNet.
POSEFIX = ["MODEL.META_ARCHITECTURE", "PoseFixEstimator", "MODEL.TOPDOWN.POSE_NET", "PoseFixHRNet",
           "MODEL.TOPDOWN.CUE", "PoseCue", "MODEL.TOPDOWN.LOSS_NAME", "PoseFixLoss",
           "MODEL.TOPDOWN.CODEC.NAME", "SoftArgmaxCodec",
           "MODEL.TOPDOWN.HEAD.NAME", "SoftArgmaxHead", "TEST.TOPDOWN.HINT.SOURCE", "keypoints",
           "TEST.TOPDOWN.HINT.SCORE_THRESH", "0.0", "TEST.TOPDOWN.RESCORE", "False",
           "TEST.TOPDOWN.IOU_NMS_THRESH", "1.0", "TEST.TOPDOWN.OKS_NMS_THRESH", "0.9",
           "MODEL.HRNET.INIT", "kaiming", "MODEL.TOPDOWN.INPUT_SIZE", "(64, 96)",
           "MODEL.TOPDOWN.HEATMAP_SIZE", "(16, 24)",
           "MODEL.TOPDOWN.POSEFIX.INPUT_SIGMA", "2.625"]  # fmt: skip
PLAIN = ["INPUT.TOPDOWN.SCALE_FACTOR", "0.0", "INPUT.TOPDOWN.ROTATION_PROB", "0.0",
         "INPUT.TOPDOWN.HALF_BODY_PROB", "0.0", "INPUT.TOPDOWN.FLIP_PROB", "0.0"]  # fmt: skip


def test_pose_cue_renders_each_keypoint_as_the_hint_cue_does():
    """Channel k of the rendered pose equals the joint-hint cue (tested against OpenCV in
    test_hints.py) on keypoint k; a missing keypoint leaves its channel empty."""
    from pose_topdown.affine import box_to_center_size, crop_affine
    from pose_topdown.data.cues import JointHintCue
    from pose_topdown.posefix import PoseCue

    spec = keypoint_spec_of("coco_person_sample")
    cue = PoseCue(num_keypoints=17, sigma=3.0, oks_sigmas=spec.oks_sigmas,
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


def cue_centres(maps):
    """(K, 2) crop-pixel mean of each rendered Gaussian (NaN for an empty or cut channel)."""
    out = np.full((len(maps), 2), np.nan)
    ys, xs = np.mgrid[0 : maps.shape[1], 0 : maps.shape[2]]
    for k, m in enumerate(maps):
        v, u = np.unravel_index(m.argmax(), m.shape)
        if m.max() > 0 and 8 <= u < m.shape[1] - 8 and 8 <= v < m.shape[0] - 8:
            out[k] = (xs * m).sum() / m.sum(), (ys * m).sum() / m.sum()
    return out


@pytest.mark.parametrize("kind,flip", [("good", False), ("miss", False), ("swap", True)])
def test_training_input_poses_carry_the_drawn_errors(kind, flip):
    """In the training crops (flipped or not) the rendered input pose lies in its type's region
    (ks of the person's box area, published_posefix.KS_BOUNDS) of the joints computed here from
    the annotation through the crop affine: its own joint (good; beyond ks 0.5 of it: miss) or,
    for a swap, the
    overlapping person's same or mirror joint, mirrored with the crop as the official mapper
    mirrors every person (main/gen_batch.py:367-373)."""
    from detectron2.data import DatasetCatalog

    from pose_topdown.affine import apply_affine
    from pose_topdown.data import TopDownTrainMapper, person_dicts
    from topdown_testing import sample_cfg

    cfg = sample_cfg(*POSEFIX, *PLAIN, "INPUT.TOPDOWN.FLIP_PROB", "1.0" if flip else "0.0")
    spec = keypoint_spec_of("coco_person_sample")
    sig, fl = np.asarray(spec.oks_sigmas), np.asarray(spec.flip_indices)
    mapper = TopDownTrainMapper(cfg, is_train=True)
    mapper.cue.rates = {} if kind == "good" else {kind: 1.0}
    (lo, hi), _ = KS_BOUNDS[kind]
    np.random.seed(0)
    checked = 0
    for person in person_dicts(DatasetCatalog.get("coco_person_sample")):
        if kind == "swap" and not (person["other_ious"] >= 0.1).any():
            continue
        x = mapper(person)
        affine = x["crop_affine"].numpy()  # original image -> crop, the flip included
        scale2 = abs(np.linalg.det(affine[:, :2]))
        area = np.prod(person["bbox"][2:] - person["bbox"][:2]) * scale2
        def crop(kp):
            return apply_affine(kp[None, :, :2] - 0.5, affine[None])[0]
        own = crop(person["keypoints"])
        own = own[fl] if flip else own  # in a flipped crop, joint k is the mirror of k
        centres = cue_centres(x["cues"].numpy())
        for k in np.flatnonzero(np.isfinite(centres).all(1)):
            src = fl[k] if flip else k
            if person["keypoints"][src, 2] == 0:
                continue
            if kind == "swap":
                near = person["others"][person["other_ious"] >= 0.1]
                cands = [crop(q)[i] for q in near for i in {src, fl[src]} if q[i, 2] > 0]
                sim = max(ks_of(centres[k], c, area, sig[k]) for c in cands)
            else:
                sim = ks_of(centres[k], own[k], area, sig[k])
            # a miss lies beyond ks 0.5 of its own joint (its ring may be around another one)
            assert (kind == "miss" or lo - 0.02 <= sim) and sim <= hi + 0.02, (kind, k, sim)
            checked += 1
    assert checked >= 10, checked


def test_pose_fix_network_by_hand_and_its_config_errors():
    """PoseFixHRNet is HRNet with 17 more input channels at conv1 (64 x 17 x 3 x 3 weights); an
    HRNet state dict loads into every other layer. A PoseCue model without keypoint hints is
    refused at build time."""
    from detectron2.modeling import build_model

    from pose_topdown.modeling import PoseHighResolutionNet
    from pose_topdown.posefix import PoseFixHRNet
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


def test_an_hrnet_s_weights_load_into_the_refiner_conv1_image_channels_included(tmp_path):
    """Started from a pose network's weights (the zoo HRNet), the refiner takes them all, its
    conv1's image channels included, the pose channels keeping their initialisation: the
    official code's way with ImageNet weights (lib/tfflat/saver.py:51-56, 72-74)."""
    from multitask_pose.engine.checkpoint import SafeCheckpointer
    from pose_topdown.modeling import PoseHighResolutionNet
    from pose_topdown.posefix import PoseFixHRNet

    torch.manual_seed(0)
    hrnet = PoseHighResolutionNet(width=18)
    weights = {f"pose_net.{k}": v.half() for k, v in hrnet.state_dict().items()}  # as the zoo's
    torch.save({"model": weights}, tmp_path / "hrnet.pth")
    torch.manual_seed(1)
    model = torch.nn.Module()
    model.pose_net = PoseFixHRNet(width=18)
    built = model.pose_net.conv1.weight.detach().clone()
    checkpointer = SafeCheckpointer(model)
    checkpointer.load(str(tmp_path / "hrnet.pth"))
    conv1 = model.pose_net.conv1.weight
    assert torch.equal(conv1[:, :3], weights["pose_net.conv1.weight"].float())
    assert torch.equal(conv1[:, 3:], built[:, 3:])
    assert not checkpointer.incompatible_keys.missing_keys
    assert not checkpointer.incompatible_keys.incorrect_shapes
    for k, v in model.state_dict().items():
        if k != "pose_net.conv1.weight":
            assert torch.equal(v, weights[k].to(v.dtype)), k
    # its own checkpoint (17 + 3 channels) loads as it is
    own = {k: v + 1 if torch.is_floating_point(v) else v for k, v in model.state_dict().items()}
    torch.save({"model": own}, tmp_path / "own.pth")
    checkpointer.load(str(tmp_path / "own.pth"))
    assert torch.equal(model.pose_net.conv1.weight, own["pose_net.conv1.weight"])


@pytest.mark.slow
def test_a_trained_refiner_lowers_the_keypoint_error_of_a_results_file(tmp_path):
    """A small PoseFix refiner trained on the COCO sample's persons with synthesised errors (default
    rates, no augmentation, 300 Adam steps) then refines, through posefix_refine.py, a results
    file of the same persons with fresh errors: the mean keypoint error (in units of the person
    scale) improves (measured 0.52 -> 0.10, flip test on). A memorisation check on 12 persons,
    cropped at their boxes as in training: it shows the input pose, the crop and the training
    agree, not that the refiner generalises."""
    import json

    import torch
    from detectron2.data import DatasetCatalog
    from detectron2.modeling import build_model

    from pose_topdown import posefix_refine
    from pose_topdown.data import TopDownTrainMapper, person_dicts
    from topdown_testing import SAMPLE, sample_cfg

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
        xy = [synthesize_pose(g, gt[np.arange(len(gt)) != i],
                              np.prod(p["bbox"][2:] - p["bbox"][:2]), spec.oks_sigmas,
                              spec.flip_indices, rng, rates)[0][:, :2]
              for i, (g, p) in enumerate(zip(gt, mine))]  # fmt: skip
        for p, g, q in zip(mine, gt, xy):
            x0, y0, x1, y1 = p["bbox"]
            # A model's results place every joint (the refiner draws them all, whatever their
            # score): the joints not annotated sit at the box centre, scored low.
            drawn = np.isfinite(q).all(1)
            centre = [(x0 + x1) / 2 - 0.5, (y0 + y1) / 2 - 0.5]
            kp = np.c_[np.where(drawn[:, None], q, centre), np.where(drawn, 1.0, 0.01)]
            box = [round(float(v), 2) for v in (x0, y0, x1 - x0, y1 - y0)]
            entries.append({"image_id": d["image_id"], "category_id": 1, "bbox": box,
                            "score": 1.0, "keypoints": kp.ravel().tolist()})  # fmt: skip
            truth[(d["image_id"], tuple(box))] = (g, p["area"])
    given = tmp_path / "given.json"
    given.write_text(json.dumps(entries))
    assert posefix_refine.main(["--config-file", str(tmp_path / "refiner.yaml"),
                                "--weights", str(tmp_path / "refiner.pth"),
                                "--results", str(given), "--dataset", SAMPLE,
                                "--output", str(tmp_path / "out"),
                                # the crops it memorised: the persons' boxes (the official
                                # pose-extent crop moves and scales them, which a network that
                                # memorised 12 persons does not survive: measured 0.52 -> 1.1)
                                "MODEL.TOPDOWN.POSEFIX.TEST_CROP", "box"]) == 0  # fmt: skip
    refined = json.loads((tmp_path / "out" / "coco_instances_results.json").read_text())
    assert 0 < len(refined) <= len(entries)  # OKS-NMS 0.9 may merge two
    record = json.loads((tmp_path / "out" / "coco_instances_results.json.meta.json").read_text())
    assert (record["dataset"], record["producer"], record["score_scale"]) == (
        SAMPLE, "PoseFixEstimator / PoseFixHRNet", "person_score")  # fmt: skip
    assert record["refined"] == str(given)
    assert all(len({*r["keypoints"][2::3]}) == 1 for r in refined)  # the person's score, each

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

    from pose_topdown import posefix_refine
    from topdown_testing import sample_cfg

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


# ----------------------------------------------------------------------------- output and loss
def reference_soft_argmax(logits):
    """(N, K, h, w) -> (N, K, 2) cells, the official extract_coordinate (main/model.py:44-71)
    without its stride factor, in numpy."""
    z = np.asarray(logits, np.float64)
    p = np.exp(z - z.max((-2, -1), keepdims=True))
    p /= p.sum((-2, -1), keepdims=True)
    ys, xs = np.mgrid[0 : z.shape[-2], 0 : z.shape[-1]]
    return np.stack([(p * xs).sum((-2, -1)), (p * ys).sum((-2, -1))], -1)


def test_soft_argmax_codec_targets_and_decoding():
    """Encoding: the bilinear one-hot target of main/model.py:73-116 (a keypoint at crop pixel
    (10, 22), stride 4, cell (2.5, 5.5): a quarter on each of 4 cells), its cell coordinates, and
    weight 0 outside the crop (main/gen_batch.py:384). Decoding: the expectation under the softmax,
    not the argmax, times the stride (main/model.py:69, 183)."""
    from multitask_pose.codecs import SoftArgmaxCodec, build_codec
    from topdown_testing import sample_cfg

    codec = SoftArgmaxCodec((64, 96), (16, 24))
    kp = np.array([[[10.0, 22.0, 2], [-3.0, 10.0, 2], [30.0, 40.0, 0]]])
    t = codec.encode(kp)
    ref = np.zeros((24, 16))
    ref[5:7, 2:4] = 0.25
    np.testing.assert_allclose(t["heatmaps"][0, 0].numpy(), ref, atol=1e-6)
    np.testing.assert_allclose(t["coords"][0, 0].numpy(), [2.5, 5.5])
    assert t["target_weight"].tolist() == [[1.0, 0.0, 0.0]]
    assert float(t["heatmaps"][0, 1:].abs().sum()) == 0.0
    logits = torch.randn(2, 3, 24, 16) * 3
    coords, scores = codec.decode(logits)
    np.testing.assert_allclose(coords.numpy(), 4 * reference_soft_argmax(logits), atol=1e-4)
    peaks = logits.flatten(-2).argmax(-1)
    argmax_xy = torch.stack([peaks % 16, peaks // 16], -1).float() * 4
    assert (coords - argmax_xy).abs().max() > 1.0  # two-peaked random maps: not the argmax
    assert isinstance(build_codec("SoftArgmaxCodec", sample_cfg(*POSEFIX)), SoftArgmaxCodec)


def test_pose_fix_loss_is_cross_entropy_plus_l1_of_the_soft_argmax():
    """PoseFixLoss equals, computed here: mean over (N, K) of the weighted softmax cross-entropy
    plus mean over (N, K, 2) of the weighted L1 distance of the soft-argmax in cells
    (main/model.py:163-175); each term matters."""
    from multitask_pose.codecs import SoftArgmaxCodec
    from pose_topdown.posefix import PoseFixLoss

    codec = SoftArgmaxCodec((64, 96), (16, 24))
    rng = np.random.default_rng(0)
    kp = np.c_[rng.uniform(0, 60, (6, 1)), rng.uniform(0, 90, (6, 1)), [2, 2, 0, 2, 1, 2]]
    targets = codec.encode(kp.reshape(2, 3, 3))
    logits = torch.randn(2, 3, 24, 16, requires_grad=True)
    z = logits.detach().numpy().astype(np.float64)
    logp = z - z.max((-2, -1), keepdims=True)
    logp -= np.log(np.exp(logp).sum((-2, -1), keepdims=True))
    w = targets["target_weight"].numpy()
    ce = -(targets["heatmaps"].numpy() * logp).sum((-2, -1))
    l1 = np.abs(reference_soft_argmax(z) - targets["coords"].numpy()) * w[..., None]
    want = (ce * w).mean() + l1.mean()
    loss = PoseFixLoss()(logits, targets)
    assert abs(float(loss) - want) < 1e-4 * want
    assert abs(float(PoseFixLoss(coord_weight=0.0)(logits, targets)) - (ce * w).mean()) < 1e-4
    assert l1.mean() > 0.1 * want  # the L1 term is no rounding error
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_flip_test_averages_the_mirrored_coordinates():
    """PoseFixEstimator's flip test: the mirrored crop's coordinates mapped back (x -> W - 1 - x,
    left and right exchanged) and averaged with the crop's (main/test.py:90-97)."""
    from detectron2.modeling import build_model

    from topdown_testing import sample_cfg

    model = build_model(sample_cfg(*POSEFIX)).eval()
    fl = model.flip_indices.numpy()
    logits = torch.randn(4, 17, 24, 16) * 3
    coords, _ = model.decode(logits, 2)
    ref = 4 * reference_soft_argmax(logits)
    mirrored = ref[2:][:, fl]
    mirrored[..., 0] = 63 - mirrored[..., 0]
    np.testing.assert_allclose(coords.numpy(), 0.5 * (ref[:2] + mirrored), atol=1e-4)


def test_the_refiner_reads_its_input_pose():
    """Two input poses on the same crop give different maps, and moving one keypoint's Gaussian
    moves mostly that keypoint's map (the network sees the pose channels)."""
    from detectron2.modeling import build_model

    from topdown_testing import sample_cfg

    torch.manual_seed(0)
    model = build_model(sample_cfg(*POSEFIX)).eval()
    image = torch.randn(1, 3, 96, 64)
    box, identity = np.array([[0.0, 0, 63, 95]]), np.array([[[1.0, 0, 0], [0, 1.0, 0]]])
    rng = np.random.default_rng(0)
    pose = np.c_[rng.uniform([8, 8], [56, 88], (17, 2)), np.ones(17)]
    other = pose.copy()
    other[:, :2] = rng.uniform([8, 8], [56, 88], (17, 2))
    with torch.no_grad():
        a = model.pose_net(image, model.cue(box, identity, (64, 96), pose[None]))["heatmap"]
        b = model.pose_net(image, model.cue(box, identity, (64, 96), other[None]))["heatmap"]
    assert (a - b).abs().max() > 1e-3 * a.abs().max()


def test_published_settings_are_the_defaults_and_the_recipe():
    """Each official setting (published_posefix.SETTINGS, file:line of the official code) is the
    recipe's value; the PoseFix keys default to the official values (the sigma at 256x192)."""
    from pathlib import Path

    from pose_topdown import get_topdown_cfg

    recipe = get_topdown_cfg()
    recipe.merge_from_file(str(Path(__file__).resolve().parents[1] / "configs" / "Synthetic"
                               / "posefix_hrnet_w18_small_synth_basic.yaml"))  # fmt: skip
    defaults = get_topdown_cfg()

    def get(cfg, key):
        for part in key.split("."):
            cfg = cfg[part]
        return cfg

    for name, official, source, key, in_recipe in SETTINGS:
        assert get(recipe, key) == pytest.approx(in_recipe) if in_recipe is not None else (
            get(recipe, key) is None), (name, source)  # fmt: skip
        if key.startswith("MODEL.TOPDOWN.POSEFIX"):
            assert get(defaults, key) == official, (name, source)
    assert recipe.MODEL.META_ARCHITECTURE == "PoseFixEstimator"
    assert recipe.MODEL.TOPDOWN.POSE_NET == "PoseFixHRNet" and recipe.MODEL.TOPDOWN.CUE == "PoseCue"


def test_test_crop_is_the_input_pose_extent_and_oks_nms_merges_duplicates():
    """The crop box of each input pose is its extent x 1.2 (20 pixels for an empty extent;
    data/COCO/dataset.py:131-148), whatever the entry's box; two copies of one pose become one
    refined pose after OKS-NMS 0.9, with the entry's score on every keypoint (main/test.py:103)."""
    from pose_topdown.posefix import pose_extent_boxes
    from topdown_testing import sample_cfg, trained_predictor

    poses = torch.tensor([[[10.0, 20, 1], [30, 60, 1]], [[5, 5, 1], [5, 40, 1]]])
    poses[1, 0, 0] = float("nan")
    boxes = torch.zeros(2, 4)
    got = pose_extent_boxes(poses, boxes)
    np.testing.assert_allclose(got.numpy(), [[8, 16, 32, 64], [-7, 28, 17, 52]], atol=1e-5)
    predictor = trained_predictor(sample_cfg(*POSEFIX), {"loss_heatmap"})
    image = np.random.default_rng(0).integers(0, 255, (120, 90, 3)).astype(np.uint8)
    kp = np.c_[np.random.default_rng(1).uniform(20, 70, (17, 2)), np.ones(17)]
    crops = []  # the image -> crop affines the estimator cuts
    cut = predictor.model.crop
    predictor.model.crop = lambda im, affine: crops.append(affine) or cut(im, affine)
    out = predictor(image, boxes=[[0, 0, 89, 119], [30, 30, 40, 40]], keypoints=np.stack([kp, kp]),
                    scores=[0.8, 0.7])["instances"]  # fmt: skip
    assert len(out) == 1 and float(out.scores[0]) == pytest.approx(0.8)
    assert torch.allclose(out.pred_keypoints[0, :, 2], torch.full((17,), 0.8))
    # The pose keeps its entry's box; both crops are centred on the pose's extent (COCO's frame),
    # not on either box.
    assert out.pred_boxes.tensor[0].tolist() == [0, 0, 89, 119]
    from pose_topdown.affine import apply_affine

    centre = (kp[:, :2].min(0) + kp[:, :2].max(0)) / 2 - 0.5
    w, h = predictor.model.codec.input_size
    for affine in crops[0]:
        np.testing.assert_allclose(apply_affine(centre[None, None], affine[None])[0, 0],
                                   [w / 2, h / 2], atol=1e-3)  # fmt: skip


@pytest.mark.parametrize("flip", [False, True])
def test_unlabelled_joints_are_drawn_around_another_models_estimate(tmp_path, flip):
    """POSEFIX.TRAIN_ESTIMATES (main/gen_batch.py:76-78, lib/tfflat/base.py:321-324): each
    training person takes the pose of the results entry whose box overlaps it most, and its
    unlabelled joints are drawn around that pose (here all "good": within ks 0.85 of it, on the
    person's box area), mirrored with the crop; labelled joints keep the annotation. Without the
    file the unlabelled joints stay empty."""
    import json

    from detectron2.data import DatasetCatalog

    from pose_topdown.affine import apply_affine
    from pose_topdown.data import TopDownTrainMapper, person_dicts
    from topdown_testing import sample_cfg

    people = [p for p in person_dicts(DatasetCatalog.get("coco_person_sample"))
              if 3 <= (p["keypoints"][:, 2] == 0).sum()]  # fmt: skip
    person = people[0]
    kp = person["keypoints"]
    x0, y0, x1, y1 = person["bbox"]
    # The estimate: every joint at the box centre plus a joint-specific offset, so each unlabelled
    # joint has a place of its own; a decoy entry far off with a larger score but no overlap.
    rng = np.random.default_rng(0)
    est = np.c_[np.array([(x0 + x1) / 2, (y0 + y1) / 2]) + rng.uniform(-0.3, 0.3, (17, 2))
                * [x1 - x0, y1 - y0], np.full(17, 0.7)]  # fmt: skip
    entries = [{"image_id": person["image_id"], "category_id": 1, "score": s,
                "bbox": b, "keypoints": (e - [0.5, 0.5, 0]).ravel().tolist()}
               for s, b, e in [(0.9, [0.0, 0.0, 5.0, 5.0], est * [0, 0, 1]),
                               (0.5, [x0, y0, x1 - x0, y1 - y0], est)]]  # fmt: skip
    path = tmp_path / "train_results.json"
    path.write_text(json.dumps(entries))
    spec = keypoint_spec_of("coco_person_sample")
    sig, fl = np.asarray(spec.oks_sigmas), np.asarray(spec.flip_indices)
    for estimates in ("", str(path)):
        cfg = sample_cfg(*POSEFIX, *PLAIN, "INPUT.TOPDOWN.FLIP_PROB", "1.0" if flip else "0.0",
                         "MODEL.TOPDOWN.POSEFIX.TRAIN_ESTIMATES", estimates)  # fmt: skip
        mapper = TopDownTrainMapper(cfg, is_train=True)
        mapper.cue.rates = {}  # every drawn joint "good"
        np.random.seed(0)
        x = mapper(person)
        affine = x["crop_affine"].numpy()
        area = (x1 - x0) * (y1 - y0) * abs(np.linalg.det(affine[:, :2]))
        centres = cue_centres(x["cues"].numpy())
        checked = 0
        for k in range(17):
            src = fl[k] if flip else k  # in a flipped crop, channel k is the mirror joint's
            inside = np.isfinite(centres[k]).all()
            target = apply_affine(np.r_[kp[src, :2] if kp[src, 2] > 0 else est[src, :2]][None,
                                        None] - 0.5, affine[None])[0, 0]  # fmt: skip
            if kp[src, 2] == 0 and not estimates:
                assert x["cues"][k].max() == 0, k  # nothing to draw around
            elif inside:
                assert ks_of(centres[k], target, area, sig[k]) >= 0.85 - 0.02, (k, estimates)
                checked += kp[src, 2] == 0
        assert checked >= 3 if estimates else True  # unlabelled joints drawn and checked
    np.testing.assert_allclose(mapper.cue.estimate_of(person), est, atol=1e-3)
