"""PoseFix's settings as its official code has them (github.com/mks0601/PoseFix_RELEASE, read at
its default branch; file:line of each). ``test_posefix.py`` compares them with the code's
defaults and the recipe ``configs/Synthetic/posefix_hrnet_w18_small_synth_basic.yaml``."""

# Per-joint error probabilities, COCO keypoint order (main/gen_batch.py).
_NOSE, _EYES_EARS, _ARMS = [0], [1, 2, 3, 4], [5, 6, 7, 8, 9, 10]


def _joints(values):
    """{joint indices: p} -> 17 values."""
    out = [None] * 17
    for joints, p in values.items():
        for j in joints:
            out[j] = p
    assert None not in out
    return out


ERROR_TABLES = {
    # (type, condition): (17 probabilities, source)
    ("jitter", "<=10 labelled"): (
        _joints({(0, 13, 14, 15, 16): 0.15, tuple(range(1, 11)): 0.20, (11, 12): 0.25}),
        "main/gen_batch.py:124-130",
    ),
    ("jitter", ">10 labelled"): (
        _joints({(0, 13, 14, 15, 16): 0.10, tuple(range(1, 11)): 0.15, (11, 12): 0.20}),
        "main/gen_batch.py:131-137",
    ),
    ("miss", "<=5 labelled"): (
        _joints({(0, 1, 2, 3, 4): 0.15, (5, 6, 15, 16): 0.20, tuple(range(7, 15)): 0.25}),
        "main/gen_batch.py:159-165",
    ),
    ("miss", "<=10 labelled"): (
        _joints({(0, 1, 2, 3, 4): 0.10, (5, 6, 15, 16): 0.13, tuple(range(7, 15)): 0.15}),
        "main/gen_batch.py:166-172",
    ),
    ("miss", ">10 labelled"): (
        _joints({(0, 1, 2, 3, 4): 0.02, (5, 6, 15, 16): 0.05, tuple(range(7, 15)): 0.10}),
        "main/gen_batch.py:173-179",
    ),
    ("inversion", "any"): (
        _joints({(0, 1, 2, 3, 4): 0.01, tuple(range(5, 11)): 0.03, tuple(range(11, 17)): 0.06}),
        "main/gen_batch.py:214-219",
    ),
    ("swap", "crowded"): (
        _joints({(0, 1, 2, 3, 4): 0.02, tuple(range(5, 11)): 0.15, tuple(range(11, 17)): 0.10}),
        "main/gen_batch.py:243-249",
    ),
    ("swap", "not crowded"): (
        _joints({(0, 1, 2, 3, 4): 0.01, tuple(range(5, 11)): 0.06, tuple(range(11, 17)): 0.03}),
        "main/gen_batch.py:250-256",
    ),
}

# The ks bounds of each error type's region (main/gen_batch.py:70-72 and where each is drawn).
KS_BOUNDS = {
    "good": ((0.85, 1.0), "main/gen_batch.py:289: r in [0, d(ks 0.85)] around the joint"),
    "jitter": ((0.5, 0.85), "main/gen_batch.py:139: r in [d(ks 0.85), d(ks 0.5)]"),
    "inversion": ((0.5, 1.0), "main/gen_batch.py:222: r in [0, d(ks 0.5)] around the mirror"),
    "swap": ((0.5, 1.0), "main/gen_batch.py:264: r in [0, d(ks 0.5)] around a partner's joint"),
    "miss": ((0.1, 0.5), "main/gen_batch.py:184: r in [d(ks 0.5), d(ks 0.1)] around a candidate"),
}

# (setting, official value, source, config key or None, value the recipe must have).
SETTINGS = [
    ("swap partners: box IoU at least", 0.1, "lib/tfflat/base.py:332",
     "MODEL.TOPDOWN.POSEFIX.SWAP_MIN_IOU", 0.1),
    ("input pose sigma, crop pixels at 256x192", 7.0, "main/config.py:29-30",
     "MODEL.TOPDOWN.POSEFIX.INPUT_SIGMA", 7.0 * 96 / 256),
    ("input pose peak, image pixel values", 255.0, "main/model.py:135",
     "MODEL.TOPDOWN.POSEFIX.INPUT_PEAK", 255.0),
    ("L1 coordinate loss weight (cross-entropy 1)", 1.0, "main/model.py:175",
     "MODEL.TOPDOWN.POSEFIX.COORD_LOSS_WEIGHT", 1.0),
    ("test crop: the input pose's extent x 1.2", "pose", "data/COCO/dataset.py:131-148",
     "MODEL.TOPDOWN.POSEFIX.TEST_CROP", "pose"),
    ("loss: softmax cross-entropy + L1 of soft-argmax", "PoseFixLoss", "main/model.py:156-175",
     "MODEL.TOPDOWN.LOSS_NAME", "PoseFixLoss"),
    ("output: soft-argmax of the maps", "SoftArgmaxCodec", "main/model.py:44-71, 183",
     "MODEL.TOPDOWN.CODEC.NAME", "SoftArgmaxCodec"),
    ("head: soft-argmax decoding, flip test averaging coordinates", "SoftArgmaxHead",
     "main/model.py:44-71, main/test.py:79-97", "MODEL.TOPDOWN.HEAD.NAME", "SoftArgmaxHead"),
    ("OKS-NMS threshold", 0.9, "main/config.py:49, main/test.py:149",
     "TEST.TOPDOWN.OKS_NMS_THRESH", 0.9),
    ("OKS-NMS counts all keypoints", None, "main/test.py:149 (no in_vis_thre)",
     "TEST.TOPDOWN.OKS_NMS_VIS_THRESH", None),
    ("no box NMS", 1.0, "main/test.py:142-152 (only OKS-NMS)",
     "TEST.TOPDOWN.IOU_NMS_THRESH", 1.0),
    ("pose score: the input's score", False, "main/test.py:103, 161",
     "TEST.TOPDOWN.RESCORE", False),
    ("every input keypoint drawn at test", 0.0, "main/gen_batch.py:444",
     "TEST.TOPDOWN.HINT.SCORE_THRESH", 0.0),
    ("flip test", True, "main/config.py:48", "TEST.TOPDOWN.FLIP_TEST", True),
    ("crop padding", 1.25, "main/gen_batch.py:353", "INPUT.TOPDOWN.PADDING", 1.25),
    ("scale factor", 0.3, "main/config.py:44", "INPUT.TOPDOWN.SCALE_FACTOR", 0.3),
    ("rotation factor", 40.0, "main/config.py:45", "INPUT.TOPDOWN.ROTATION_FACTOR", 40.0),
    ("rotation probability", 0.6, "main/gen_batch.py:365-366", "INPUT.TOPDOWN.ROTATION_PROB", 0.6),
    ("flip probability", 0.5, "main/gen_batch.py:367", "INPUT.TOPDOWN.FLIP_PROB", 0.5),
    ("no half-body crops", 0.0, "main/gen_batch.py:356-373 (none)",
     "INPUT.TOPDOWN.HALF_BODY_PROB", 0.0),
]  # fmt: skip
# The official settings the recipe does not take, and why: its 140-epoch Adam schedule at lr 5e-4
# (main/config.py:36-41) and ResNet-152 backbone (main/config.py:23) give way to the synthetic
# CPU recipe's HRNet-W18-small and schedule; the unlabelled joints drawn around another model's
# estimate on the training set (main/gen_batch.py:76-78) stay empty (no such estimate here).
