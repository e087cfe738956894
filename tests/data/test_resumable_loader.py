"""The resumable loader's stream order: every epoch a fresh permutation of the dataset (as
detectron2's TrainingSampler draws one per pass), for one dataset and for each dataset of a
mixed stream, and each block of a mixed stream its own order."""

import numpy as np

from multitask_pose.data.joint_training import check_ratios
from multitask_pose.data.resumable_loader import MIX_BLOCK, PositionedDataset


def _epochs(order, n, count):
    return [order[e * n : (e + 1) * n] for e in range(count)]


def test_each_epoch_of_one_dataset_is_a_new_permutation():
    n = 20
    ds = PositionedDataset([{"i": i} for i in range(n)], dict, seed=3)
    epochs = _epochs([ds.index(p) for p in range(5 * n)], n, 5)
    for e in epochs:
        assert sorted(e) == list(range(n))
    # Five permutations of 20 items: all different (a repeat has probability ~1e-17).
    assert len({tuple(e) for e in epochs}) == 5
    unshuffled = PositionedDataset([{"i": i} for i in range(n)], dict, seed=3, shuffle=False)
    assert [unshuffled.index(p) for p in range(2 * n)] == list(range(n)) * 2


def test_each_epoch_of_a_mixed_dataset_and_each_block_is_a_new_order():
    sizes = [30, 40]
    dicts = [{"part": p, "i": i} for p, n in enumerate(sizes) for i in range(n)]
    ds = PositionedDataset(
        dicts, dict, seed=3, part_sizes=sizes, ratios=check_ratios([1, 1], "ab")
    )
    idx = np.array([ds.index(p) for p in range(3 * MIX_BLOCK)])
    part = np.array([dicts[i]["part"] for i in idx])
    for p, n in enumerate(sizes):
        own = idx[part == p].tolist()
        epochs = _epochs(own, n, len(own) // n)
        assert all(sorted(e) == list(range(sum(sizes[:p]), sum(sizes[: p + 1]))) for e in epochs)
        assert len({tuple(e) for e in epochs}) == len(epochs) > 20
    blocks = [tuple(part[b * MIX_BLOCK : (b + 1) * MIX_BLOCK]) for b in range(3)]
    assert len(set(blocks)) == 3
