"""SynthPeople: a synthetic multi-person COCO-keypoints dataset, rendered from 3D
stick-and-volume figures.

Why it exists: the project needs training/evaluation data that a from-scratch Keypoint/Mask R-CNN
can learn on a CPU in minutes, without downloading COCO, yet that keeps the properties that make
person keypoint estimation what it is:

* **Anatomy.** Each person is a 3D figure with human proportions (fractions of body height after
  Drillis & Contini) and joint limits: shoulders move in a cone (elevation / plane of elevation),
  elbows and knees are hinges that bend one way (0-150 deg), hips flex/abduct/rotate within limits,
  the spine bends and twists, the head turns (yaw/pitch/roll) on the neck. Poses come from a small
  mixture (standing, walking, running, gesturing, sitting/squatting, bending) and impossible ones
  (a hand inside the chest, crossed legs through each other) are rejected.
* **Volume and depth.** The figure is a torso of elliptical cross-sections, a head ellipsoid, a
  neck, limbs as tapered capsules of realistic width, hands, feet, ears, a nose and optional long
  hair. It is turned by a yaw about the vertical axis (plus small camera pitch / body roll),
  projected orthographically and rasterised with a per-pixel depth buffer, so self-occlusion is
  real.
* **Left/right by facing only.** Nothing is glued to one side: left and right limbs share colours.
  What tells the sides apart is what does on real people and survives a mirror flip: a face
  (eyes, brows, mouth, a protruding nose) on the front of the head and hair on the back, ears on
  the sides, and front-only clothing marks (neckline, collar, buttons, a chest print).
* **Honest labels.** Persons are painted back-to-front into a person-id buffer; a keypoint is
  ``v=2`` only if the pixel at it shows this person's body part that the joint belongs to, at
  (about) the joint's depth; otherwise it is ``v=1`` (hidden by another person, a distractor or the
  person's own body / head). Face points on the far side of the head are ``v=1``. Points outside the
  image are ``v=0`` with ``x=y=0``. The mask is the person's visible pixels (COCO RLE), ``area`` its
  pixel count and ``bbox`` the tight box of the mask and the labelled keypoints.
* **Clutter.** Textured backgrounds (gradients, low-frequency noise, stripes, floors, blobs) and
  distractor shapes (rectangles, discs, poles, polygons, limb-like bars) in front of and behind the
  people; sizes from ~30 px tall to close-ups truncated by the border; a crowded variant and a
  basic one (1-4 people, most 80-300 px tall, mild clutter) that a from-scratch model learns fast.

Everything is deterministic: image ``i`` of seed ``s`` is drawn from
``np.random.default_rng(np.random.SeedSequence(s, spawn_key=(i,)))``, independent of other images.

Coordinates: keypoints are written like COCO's, in pixel-index coordinates (pixel ``j`` spans
``[j, j+1)`` in detectron2's continuous coordinates, which add 0.5 on load); boxes are continuous
``[x, y, w, h]``.

Modules: ``body`` (body parts, builds, posed figures, pose sampling, collision rejection),
``raster`` (the per-person depth-buffered canvas and its primitives), ``appearance`` (colours,
clothes), ``person`` (a placed figure: rasterise, colour, keypoints), ``scene`` (background,
distractors), ``generator`` (``SynthPeople``), ``splits`` (registered splits, their cache and the
command line ``python -m multitask_pose.data.synth_people``), ``stats`` (split statistics and the
leg/trunk proportions checked against COCO's annotators; ``tools/synth_people_stats.py``).
"""
from .generator import GENERATOR_VERSION, SynthPeople
from .splits import (
    INCONSISTENT_FRACTION,
    SPLITS,
    SynthSplit,
    ensure_aic_split,
    ensure_split,
    main,
    make_inconsistent,
    split_dir,
    view_dicts,
)

__all__ = [
    "GENERATOR_VERSION",
    "INCONSISTENT_FRACTION",
    "ensure_aic_split",
    "make_inconsistent",
    "view_dicts",
    "SynthSplit",
    "SPLITS",
    "SynthPeople",
    "split_dir",
    "ensure_split",
    "main",
]
