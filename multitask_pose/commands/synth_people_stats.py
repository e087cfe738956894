"""The code of ``tools/synth_people_stats.py``, whose docstring is its help text."""
from __future__ import annotations

import json
import os
import sys
import time

from multitask_pose.data.paths import samples_root, synth_cache_root
from multitask_pose.data.synth_people import SPLITS, ensure_split
from multitask_pose.data.synth_people.stats import limb_fractions, split_statistics
from multitask_pose.engine.cli import argument_parser, entry_point


def _load(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"cannot read COCO annotations {path}: {e}") from None


def build_parser(doc=None):
    """The tool's options; ``doc``: the help's description (the script's docstring)."""
    ap = argument_parser(doc and doc.split("\n\n")[0])
    ap.add_argument("--splits", nargs="*", default=None,
                    help="SynthPeople splits (default: the COCO-layout ones)")
    ap.add_argument("--json", nargs="*", default=(), help="extra COCO keypoint files")
    ap.add_argument("--anatomy", action="store_true",
                    help="also print leg/trunk proportions against the real COCO sample")
    return ap


@entry_point("synth_people_stats")
def main(argv=None, parser=None) -> int:
    """The tool (``parser``: the script's, for its help)."""
    ap = parser or build_parser()
    args = ap.parse_args(argv)
    # (the study splits are another layout or hide their annotations: not in the default table)
    default = [n for n, s in SPLITS.items() if s.layout == "coco" and not s.view]
    splits = default if args.splits is None else args.splits
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        ap.error(f"unknown splits {unknown}; known: {sorted(SPLITS)}")
    t0 = time.perf_counter()
    named = []
    for s in splits:
        json_path, _ = ensure_split(s, str(synth_cache_root()))
        named.append((s, _load(json_path)))
    named += [(os.path.basename(p), _load(p)) for p in args.json]

    print("| split | images | persons/image (min-max) | height px p10 / p50 / p90 | "
          "80-300 px | labelled kp | visible kp | hidden (v=1) of labelled | "
          "rarest kp type labelled | overlapped persons (IoU>=0.1) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, data in named:
        st = split_statistics(data)
        print(f"| {name} | {st['images']:.0f} | {st['persons_per_image_mean']:.2f} "
              f"({st['persons_per_image_min']:.0f}-{st['persons_per_image_max']:.0f}) | "
              f"{st['height_p10']:.0f} / {st['height_p50']:.0f} / {st['height_p90']:.0f} | "
              f"{st['height_80_300']:.0%} | {st['labelled']:.0%} | {st['visible']:.0%} | "
              f"{st['hidden']:.0%} | {st['min_type_labelled']:.0%} | {st['overlapped']:.0%} |")
    if args.anatomy:
        coco = _load(str(samples_root() / "coco" / "test_coco.json"))
        print("\nLeg and trunk proportions (medians over upright, fully labelled sides; fractions "
              "of shoulder-hip-knee-ankle):\n")
        print("| data | sides | shoulder-hip | hip-knee | knee-ankle |")
        print("|---|---|---|---|---|")
        for name, data in [("coco_person_sample (real)", coco)] + named:
            lf = limb_fractions(data)
            print(f"| {name} | {lf['legs']:.0f} | {lf['shoulder_hip']:.3f} | "
                  f"{lf['hip_knee']:.3f} | {lf['knee_ankle']:.3f} |")
    print(f"synth_people_stats: {len(named)} datasets in {time.perf_counter() - t0:.0f} s",
          file=sys.stderr)
    return 0
