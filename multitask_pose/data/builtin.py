"""The built-in datasets, registered on ``import multitask_pose`` (as detectron2's
``data/datasets/builtin.py``): the real samples shipped with the repository, every SynthPeople
split (generated on first use), and the OKS sigmas detectron2's COCO keypoint splits lack."""

import os

from detectron2.data import DatasetCatalog, MetadataCatalog

from .datasets import register_coco_person
from .keypoints import AIC_PERSON, COCO_PERSON
from .paths import samples_root, synth_cache_root
from .synth_people import SPLITS, ensure_aic_split, ensure_split, split_dir, view_dicts

__all__ = ["register_builtin"]


def _register_synth_people() -> None:
    root = str(synth_cache_root())
    for name, split in SPLITS.items():
        out = split_dir(name, root)
        images = os.path.join(out, "images")
        if split.layout == "aic":  # generated, published in AIC's raw format, converted back
            register_coco_person(
                name, os.path.join(out, "aic_converted.json"), images, AIC_PERSON,
                prepare=lambda name=name: ensure_aic_split(name, root),
            )  # fmt: skip
            continue
        register_coco_person(
            name, os.path.join(out, "annotations.json"), images,
            prepare=lambda name=name: ensure_split(name, root),
            transform=(lambda dicts, split=split: view_dicts(dicts, split)) if split.view else None,
        )  # fmt: skip


def register_builtin() -> None:
    """Register the built-in datasets (called on ``import multitask_pose``)."""
    coco = samples_root() / "coco"
    register_coco_person(
        "coco_person_sample",
        str(coco / "test_coco.json"),
        str(coco),
        # Real person detections on the same images (person AP 56.4 detector), a box source.
        detections_file=str(coco / "test_coco_det_AP_H_56.json"),
    )
    # 3 real AI Challenger images with 9 persons in its own 14-keypoint layout (MMPose's COCO-
    # style copy of the release's annotations; PROVENANCE.md there): for tests.
    aic = samples_root() / "aic"
    register_coco_person("aic_person_sample", str(aic / "test_aic.json"), str(aic), AIC_PERSON)
    _register_synth_people()
    # detectron2 registers the COCO keypoint splits with names, flip map and skeleton but without
    # the OKS sigmas; complete them so every keypoint dataset has one metadata source.
    for name in DatasetCatalog.list():
        meta = MetadataCatalog.get(name)
        if (
            name.startswith("keypoints_coco_")
            and tuple(meta.get("keypoint_names", ())) == COCO_PERSON.keypoint_names
        ):
            meta.set(keypoint_oks_sigmas=list(COCO_PERSON.oks_sigmas))
