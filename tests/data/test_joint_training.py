"""Joint training (multitask_pose/data/joint_training.py): datasets mixed by DATASETS.TRAIN_RATIOS
in the resumable loader, layouts mapped into the model's, and no loss on the joints a dataset
does not label (gradient checks on both stages), on the real COCO and AI Challenger samples."""

import collections
import itertools

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, DatasetMapper, get_detection_dataset_dicts
from detectron2.utils.events import EventStorage

from multitask_pose.config import get_multitask_cfg
from multitask_pose.data import AIC_PERSON, COCO_PERSON, register_coco_person
from multitask_pose.data.build import build_resumable_train_loader, training_parts
from multitask_pose.data.joint_training import block_quota, check_ratios
from multitask_pose.data.keypoints import KeypointSpec
from multitask_pose.data.paths import samples_root
from multitask_pose.data.resumable_loader import MIX_BLOCK, PositionedDataset
from multitask_pose.engine.trainer import MultiTaskTrainer

AIC_NAME = "aic_person_sample"  # the real AI Challenger sample, its own 14-joint layout (built in)
COCO = {n: i for i, n in enumerate(COCO_PERSON.keypoint_names)}
FACE = [COCO[n] for n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear")]
LIMBS = [i for i in range(17) if i not in FACE]


@pytest.fixture(scope="module", autouse=True)
def no_shared_layout():
    no_shared = KeypointSpec(
        name="no_shared", keypoint_names=("a", "b"), flip_map=(), connection_rules=(),
        oks_sigmas=(0.1, 0.1),
    )  # fmt: skip
    if "joint_test_no_shared" not in DatasetCatalog.list():
        coco = samples_root() / "coco"
        # Any file: the layout check refuses the dataset before its dicts are read.
        register_coco_person("joint_test_no_shared", str(coco / "test_coco.json"), str(coco),
                             spec=no_shared)  # fmt: skip


def _cfg(*opts):
    cfg = get_multitask_cfg()
    cfg.merge_from_file("configs/Synthetic/multitask_rcnn_R_18_FPN_synth_basic.yaml")
    cfg.merge_from_list(
        ["DATASETS.TRAIN", f"('coco_person_sample', '{AIC_NAME}')", "DATALOADER.NUM_WORKERS",
         "0", "OUTPUT_DIR", "", "MODEL.DEVICE", "cpu", *opts]
    )  # fmt: skip
    return cfg


def _load(name):
    return get_detection_dataset_dicts([name], filter_empty=False)


# --------------------------------------------------------------------------- the sampler


def test_block_quotas_are_exact_and_refuse_a_starved_dataset():
    assert block_quota(np.array([0.5, 0.3, 0.2]), 1000).tolist() == [500, 300, 200]
    q = block_quota(np.array([1, 1, 1]) / 3, 1000)
    assert q.sum() == 1000 and set(q.tolist()) == {333, 334}
    with pytest.raises(ValueError, match="gets no sample"):
        block_quota(np.array([0.9999, 0.0001]), 1000)


def test_measured_ratios_match_the_configured_ones_whatever_the_sizes():
    sizes, weights = [3, 50, 7], [5, 3, 2]
    dicts = [{"part": p, "i": i} for p, n in enumerate(sizes) for i in range(n)]
    ds = PositionedDataset(dicts, dict, seed=7, part_sizes=sizes,
                           ratios=check_ratios(weights, "abc"))  # fmt: skip
    idx = np.array([ds.index(p) for p in range(10 * MIX_BLOCK)])
    part = np.array([dicts[i]["part"] for i in idx])
    assert np.bincount(part).tolist() == [5000, 3000, 2000]
    # Every block holds the quotas exactly, in a shuffled order (not runs of one dataset).
    for b in range(10):
        blk = part[b * MIX_BLOCK : (b + 1) * MIX_BLOCK]
        assert np.bincount(blk).tolist() == [500, 300, 200]
        assert (np.diff(blk) != 0).sum() > 300
    # Within a dataset, each of its epochs visits every sample once: the 3-image dataset's
    # 5000 draws are 1666 or 1667 of each, the 50-image one's first 50 draws are a permutation.
    assert sorted(collections.Counter(idx[part == 0]).values()) == [1666, 1667, 1667]
    assert sorted(idx[part == 1][:50] - 3) == list(range(50))
    # A function of the position alone: a fresh dataset (a resumed run) agrees out of order.
    again = PositionedDataset(dicts, dict, seed=7, part_sizes=sizes,
                              ratios=check_ratios(weights, "abc"))  # fmt: skip
    for p in (9999, 0, 4321, 1000, 999):
        assert again.index(p) == idx[p]
    other = PositionedDataset(dicts, dict, seed=8, part_sizes=sizes,
                              ratios=check_ratios(weights, "abc"))  # fmt: skip
    assert [other.index(p) for p in range(100)] != idx[:100].tolist()


def test_the_trainers_loader_draws_by_the_configured_ratios_and_resumes_exactly():
    cfg = _cfg("DATASETS.TRAIN_RATIOS", "(0.7, 0.3)", "SOLVER.IMS_PER_BATCH", "8",
               "DATALOADER.ASPECT_RATIO_GROUPING", "False")  # fmt: skip
    parts = [[{"src": "a", "i": i} for i in range(4)], [{"src": "b", "i": i} for i in range(97)]]
    mapper = lambda d: {"src": d["src"], "i": d["i"]}  # noqa: E731
    loader = build_resumable_train_loader(cfg, parts, mapper)
    batches = list(itertools.islice(iter(loader), 250))  # 2000 samples: two blocks
    srcs = collections.Counter(x["src"] for b in batches for x in b)
    assert (srcs["a"], srcs["b"]) == (1400, 600)
    resumed = build_resumable_train_loader(cfg, parts, mapper)
    resumed.start_at(123)
    assert [[x["i"] for x in b] for b in itertools.islice(iter(resumed), 5)] == [
        [x["i"] for x in b] for b in batches[123:128]
    ]


def test_bad_ratio_lists_fail_at_start_with_the_reason():
    with pytest.raises(ValueError, match="3 values for the 2 datasets"):
        MultiTaskTrainer.build_train_loader(_cfg("DATASETS.TRAIN_RATIOS", "(1, 1, 1)"))
    with pytest.raises(ValueError, match="finite positive"):
        MultiTaskTrainer.build_train_loader(_cfg("DATASETS.TRAIN_RATIOS", "(1, 0)"))
    with pytest.raises(ValueError, match="needs DATALOADER.EXACT_RESUME"):
        MultiTaskTrainer.build_train_loader(
            _cfg("DATASETS.TRAIN_RATIOS", "(1, 2)", "DATALOADER.EXACT_RESUME", "False")
        )


def test_a_dataset_that_shares_no_joint_with_the_model_is_refused_by_name():
    cfg = _cfg("DATASETS.TRAIN", "('coco_person_sample', 'joint_test_no_shared')")
    with pytest.raises(ValueError, match="'joint_test_no_shared' cannot be mapped.*share no"):
        MultiTaskTrainer.build_train_loader(cfg)


# --------------------------------------------------------------------------- the mapping


def test_aic_annotations_land_on_coco_joints_by_name():
    parts = training_parts(_cfg(), _load, True)
    coco, aic = parts
    assert len(coco) == 4 and len(aic) == 3
    # Annotation 4 of the AIC sample (image 1), by hand from its file: right shoulder (313, 201)
    # visible, right elbow (312, 313) occluded, left knee unlabelled; its head top and neck
    # have no COCO joint and are dropped. detectron2's loader adds 0.5 to coordinates.
    ann = next(a for d in aic for a in d["annotations"] if a["id"] == 4)
    kp = np.array(ann["keypoints"]).reshape(17, 3)
    assert kp[COCO["right_shoulder"]].tolist() == [313.5, 201.5, 2]
    assert kp[COCO["right_elbow"]].tolist() == [312.5, 313.5, 1]
    assert kp[COCO["left_wrist"]].tolist() == [459.5, 269.5, 2]
    assert kp[COCO["left_knee"], 2] == 0
    assert (kp[FACE] == 0).all()
    # The COCO dataset is the model's layout: untouched.
    assert (
        coco[0]["annotations"][0]["keypoints"]
        == _load("coco_person_sample")[0]["annotations"][0]["keypoints"]
    )


# --------------------------------------------------------------------------- the losses


def _grad_of(module, run):
    """The gradient reaching ``module``'s output when ``run()``'s losses are back-propagated."""
    grads = []

    def hook(module, inputs, out):
        out.register_hook(lambda g: grads.append(g.detach().clone()))

    handle = module.register_forward_hook(hook)
    try:
        with EventStorage():  # the R-CNN logs training statistics
            losses = run()
        sum(losses.values()).backward()
    finally:
        handle.remove()
    assert len(grads) == 1
    return grads[0]


def _assert_only_labelled_joints_learn(grad, channels_per_joint=1):
    per_joint = grad.abs().reshape(grad.shape[0], 17, channels_per_joint, -1).sum(dim=(0, 2, 3))
    assert (per_joint[FACE] == 0).all(), per_joint
    assert (per_joint[LIMBS] > 0).sum() >= 10, per_joint


@pytest.mark.parametrize("head", ["KRCNNConvDeconvUpsampleHead", "KeypointOffsetHead"])
def test_rcnn_unlabelled_joints_of_a_mapped_dataset_get_no_gradient(head):
    """detectron2's keypoint head and ours (balanced loss, offsets), on the mask R-CNN: the AIC
    images have no masks either, and train no mask."""
    from detectron2.modeling import build_model

    torch.manual_seed(0)
    cfg = _cfg("MODEL.ROI_KEYPOINT_HEAD.NAME", head, "MODEL.ROI_KEYPOINT_HEAD.BALANCED_LOSS",
               "True", "MODEL.MASK_ON", "True")  # fmt: skip
    aic = training_parts(cfg, _load, True)[1]
    first = cfg.clone()
    first.DATASETS.TRAIN = ("coco_person_sample",)
    batch = [DatasetMapper(first, is_train=True)(d) for d in aic]
    model = build_model(cfg)
    model.train()
    kp_head = model.roi_heads.keypoint_head
    _assert_only_labelled_joints_learn(_grad_of(kp_head.score_lowres, lambda: model(batch)))
    if head == "KeypointOffsetHead":  # the offsets too, 2 channels per joint
        model.zero_grad()
        _assert_only_labelled_joints_learn(_grad_of(kp_head.offset_lowres, lambda: model(batch)), 2)
    with EventStorage():
        losses = model(batch)
    assert losses["loss_mask"].item() == 0 and losses["loss_keypoint"].item() > 0


def test_topdown_unlabelled_joints_of_a_mapped_dataset_get_no_gradient():
    from detectron2.modeling import build_model

    from pose_topdown import get_topdown_cfg
    from pose_topdown.data.mapper import TopDownTrainMapper, person_dicts

    torch.manual_seed(0)
    cfg = get_topdown_cfg()
    cfg.merge_from_file("projects/TopDown/configs/Synthetic/hrnet_w18_small_synth.yaml")
    cfg.merge_from_list(["DATASETS.TRAIN", f"('coco_person_sample', '{AIC_NAME}')",
                         "DATASETS.TEST", "('coco_person_sample',)",
                         "MODEL.DEVICE", "cpu"])  # fmt: skip
    aic = training_parts(cfg, _load, True)[1]
    persons = person_dicts(aic, 1, False)
    model = build_model(cfg)
    model.train()
    mapper = TopDownTrainMapper(cfg, is_train=True, codec=model.codec)
    batch = [mapper(p) for p in persons]
    grad = _grad_of(model.pose_net.final_layer, lambda: model(batch))
    _assert_only_labelled_joints_learn(grad)


# --------------------------------------------------------------------------- by config alone


def test_datasets_register_from_the_config_and_join_training(tmp_path):
    """DATASETS.REGISTER_COCO registers the AIC sample for a run without a script; the mapped
    second dataset passes the keypoint-count check (only the first and the test sets must
    match the head); bad entries are named."""
    from detectron2.data import MetadataCatalog

    from multitask_pose.engine.setup import check_datasets

    aic = samples_root() / "aic"
    entry = f"(('joint_test_cfg_aic', '{aic / 'test_aic.json'}', '{aic}', 'aic'),)"
    cfg = _cfg("DATASETS.REGISTER_COCO", entry,
               "DATASETS.TRAIN", "('coco_person_sample', 'joint_test_cfg_aic')")  # fmt: skip
    check_datasets(cfg)
    check_datasets(cfg)  # the same entry again: already registered, left as it is
    assert MetadataCatalog.get("joint_test_cfg_aic").keypoint_names == list(
        AIC_PERSON.keypoint_names
    )
    assert len(training_parts(cfg, _load, True)[1]) == 3
    # A 14-keypoint dataset first (the model's layout) does not fit a 17-keypoint head.
    first = _cfg("DATASETS.TRAIN", "('joint_test_cfg_aic', 'coco_person_sample')")
    with pytest.raises(ValueError, match="NUM_KEYPOINTS is 17 but dataset 'joint_test_cfg_aic'"):
        check_datasets(first)
    bad = {
        "(('x', 'y'),)": "expected \\(name, json_file, image_root\\)",
        f"(('x', '{aic / 'test_aic.json'}', '{aic}', 'mpii'),)": "layout 'mpii' is not one of",
        f"(('x', '{tmp_path / 'none.json'}', '{aic}'),)": "no file",
        f"(('joint_test_cfg_aic', '{aic / 'test_aic.json'}', '{aic}', 'coco'),)": "already",
    }
    for value, message in bad.items():
        with pytest.raises(ValueError, match=message):
            check_datasets(_cfg("DATASETS.REGISTER_COCO", value))


def test_rcnn_trains_on_a_mix_through_the_trainers_loader():
    """MultiTaskTrainer's own loader over COCO + AIC at 1:1: batches hold both datasets' images,
    the AIC ones with no face keypoint and no mask, and the model's losses on them are finite."""
    from detectron2.modeling import build_model

    cfg = _cfg("DATASETS.TRAIN_RATIOS", "(1, 1)", "SOLVER.IMS_PER_BATCH", "2",
               "DATALOADER.ASPECT_RATIO_GROUPING", "False", "SEED", "3")  # fmt: skip
    it = iter(MultiTaskTrainer.build_train_loader(cfg))
    batches = [next(it) for _ in range(4)]
    samples = [x for b in batches for x in b]
    aic = [x for x in samples if "/aic/" in x["file_name"]]
    assert 0 < len(aic) < len(samples)
    for x in aic:
        kp = x["instances"].gt_keypoints.tensor
        assert kp.shape[1:] == (17, 3) and (kp[:, FACE, 2] == 0).all()
        assert not x["instances"].has("gt_masks")
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    with EventStorage():
        for batch in batches:
            losses = model(batch)
            assert all(torch.isfinite(v) for v in losses.values()), losses
