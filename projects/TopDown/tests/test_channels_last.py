"""MODEL.TOPDOWN.CHANNELS_LAST: the pose network in channels-last memory (its convolutions'
weights and activations) trains and predicts as the contiguous one: the same losses and
gradients from the same weights and batch, within float rounding."""

import numpy as np
import torch
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from torch import nn

from pose_topdown.data import TopDownTrainMapper, person_dicts
from topdown_testing import SAMPLE, sample_cfg


def _models():
    models = {}
    for channels_last in (False, True):
        torch.manual_seed(0)
        cfg = sample_cfg("MODEL.TOPDOWN.CHANNELS_LAST", channels_last)
        models[channels_last] = build_model(cfg)
    return models


def test_the_channels_last_network_trains_as_the_contiguous_one():
    models = _models()
    convs = [m for m in models[True].pose_net.modules()
             if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1)]  # fmt: skip
    assert convs and all(
        c.weight.is_contiguous(memory_format=torch.channels_last) and not c.weight.is_contiguous()
        for c in convs
    )
    seen = []
    convs[-1].register_forward_hook(
        lambda m, i, out: seen.append(out.is_contiguous(memory_format=torch.channels_last))
    )
    np.random.seed(0)
    mapper = TopDownTrainMapper(sample_cfg(), is_train=True)
    batch = [mapper(p) for p in person_dicts(DatasetCatalog.get(SAMPLE))[:4]]
    losses, grads = {}, {}
    for channels_last, model in models.items():
        out = model(batch)
        total = sum(out.values())
        total.backward()
        losses[channels_last] = {k: float(v) for k, v in out.items()}
        grads[channels_last] = {n: p.grad for n, p in model.named_parameters()
                                if p.grad is not None}  # fmt: skip
    assert seen == [True]  # the activations are channels-last too
    assert losses[True].keys() == losses[False].keys()
    for k, v in losses[False].items():
        assert abs(losses[True][k] - v) <= 1e-5 * max(1.0, abs(v)), k
    assert grads[True].keys() == grads[False].keys()
    # summation order differs between the layouts and train-mode BatchNorm on 4 crops amplifies
    # it in gradients that are sums of cancelling terms (a BatchNorm bias's: about 1e-6), so
    # compare the whole gradient: the same direction and length
    flat = {cl: torch.cat([g[n].flatten() for n in sorted(g)]) for cl, g in grads.items()}
    cosine = torch.nn.functional.cosine_similarity(flat[True], flat[False], dim=0)
    assert cosine > 0.9999, float(cosine)
    assert abs(flat[True].norm() / flat[False].norm() - 1) < 5e-3  # measured 1.5e-3
