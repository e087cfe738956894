"""``python -m multitask_pose.data.synth_people``: generate a split (see ``splits.main``)."""
import sys

from .splits import main

if __name__ == "__main__":
    sys.exit(main())
