"""Balanced keypoint loss weights against a hand computation."""

import pytest
import torch

from multitask_pose.shared import keypoint_type_weights


def test_weights_by_hand():
    labelled = torch.tensor(
        [[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.bool
    )
    # Counts 4, 2, 1, 0 of 7 labelled: shares 4/7, 2/7, 1/7; reciprocals 7/4, 7/2, 7 with mean
    # 49/12; divided by it: 3/7, 6/7, 12/7. The absent type gets 0.
    expected = torch.tensor([3 / 7, 6 / 7, 12 / 7, 0.0])
    assert torch.allclose(keypoint_type_weights(labelled), expected)


def test_uniform_and_empty():
    assert torch.allclose(keypoint_type_weights(torch.ones(3, 5)), torch.ones(5))
    assert torch.equal(keypoint_type_weights(torch.zeros(2, 3, dtype=torch.bool)), torch.zeros(3))
    with pytest.raises(ValueError, match="N, K"):
        keypoint_type_weights(torch.ones(4))
