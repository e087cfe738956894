"""multitask_pose/engine/mixed_precision.py: SOLVER.AMP.ENABLED chooses the precision per device
(fp16 + grad scaler on CUDA, bf16 on a CPU with native bf16, fp32 with a warning otherwise), and
both stages' trainers train through it. This machine may lack native bf16: the bf16 runs here are
emulated (slow, but the same arithmetic), forced by patching the capability check."""

import logging
import re
from pathlib import Path

import pytest
import torch
from coco_testing import rcnn_sample_cfg, topdown_sample_cfg
from detectron2.engine import SimpleTrainer
from detectron2.utils.events import EventStorage

from multitask_pose.engine import MultiTaskTrainer, mixed_precision
from multitask_pose.engine.mixed_precision import (
    MixedPrecisionTrainer,
    cpu_has_native_bf16,
    training_precision,
)
from pose_topdown.engine import TopDownTrainer

LOGGER = "multitask_pose.engine.mixed_precision"


def _cpuinfo_flags():
    text = Path("/proc/cpuinfo").read_text()
    return set(re.search(r"^flags\s*:(.*)$", text, re.M).group(1).split())


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="reads Linux's /proc/cpuinfo")
def test_native_bf16_is_what_the_cpu_flags_say():
    flags = _cpuinfo_flags()
    assert cpu_has_native_bf16() == bool({"avx512_bf16", "amx_bf16", "amx_tile"} & flags)


def test_precision_per_device(monkeypatch, caplog):
    cfg = rcnn_sample_cfg()
    assert training_precision(cfg) is None  # off by default
    cfg.SOLVER.AMP.ENABLED = True
    cfg.MODEL.DEVICE = "cuda"
    assert training_precision(cfg) is torch.float16
    cfg.MODEL.DEVICE = "cpu"
    monkeypatch.setattr(mixed_precision, "cpu_has_native_bf16", lambda: True)
    assert training_precision(cfg) is torch.bfloat16
    monkeypatch.setattr(mixed_precision, "cpu_has_native_bf16", lambda: False)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert training_precision(cfg) is None
    assert [r.getMessage() for r in caplog.records if r.name == LOGGER] == [
        "SOLVER.AMP.ENABLED: this CPU has no native bf16 (AVX-512 BF16 or AMX), where bf16 runs"
        " slower than fp32: training in fp32"
    ]


def _trainer(trainer_cls, cfg, tmp_path):
    cfg.merge_from_list(["OUTPUT_DIR", str(tmp_path), "SOLVER.AMP.ENABLED", "True",
                         "SOLVER.IMS_PER_BATCH", "2", "MODEL.DEVICE", "cpu",
                         "DATALOADER.NUM_WORKERS", "0"])  # fmt: skip
    return trainer_cls(cfg)


def _first_conv_dtypes(model):
    """The output dtypes of the model's first Conv2d, recorded on every forward."""
    seen = []
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    return seen


@pytest.mark.parametrize(
    "trainer_cls,cfg_fn",
    [(MultiTaskTrainer, rcnn_sample_cfg), (TopDownTrainer, topdown_sample_cfg)],
    ids=["rcnn", "topdown"],
)
def test_both_stages_train_in_bf16_on_a_bf16_cpu(trainer_cls, cfg_fn, tmp_path, monkeypatch):
    monkeypatch.setattr(mixed_precision, "cpu_has_native_bf16", lambda: True)
    trainer = _trainer(trainer_cls, cfg_fn(), tmp_path)
    loop = trainer._trainer
    assert isinstance(loop, MixedPrecisionTrainer)
    assert (loop.dtype, loop.device_type, loop.grad_scaler) == (torch.bfloat16, "cpu", None)
    dtypes = _first_conv_dtypes(trainer.model)
    before = [p.detach().clone() for p in trainer.model.parameters() if p.requires_grad]
    with EventStorage(0) as storage:
        loop.iter = 0
        loop.run_step()
        loss = storage.history("total_loss").latest()
    assert dtypes == [torch.bfloat16]  # the forward ran under bf16 autocast
    assert torch.isfinite(torch.tensor(loss))
    after = [p for p in trainer.model.parameters() if p.requires_grad]
    assert all(p.dtype == torch.float32 for p in after)  # weights stay fp32
    assert any(not torch.equal(a, b) for a, b in zip(after, before))  # and the step moved them


def test_fp32_fallback_without_native_bf16(tmp_path, monkeypatch):
    monkeypatch.setattr(mixed_precision, "cpu_has_native_bf16", lambda: False)
    trainer = _trainer(MultiTaskTrainer, rcnn_sample_cfg(), tmp_path)
    assert type(trainer._trainer) is SimpleTrainer


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 1)

    def forward(self, batch):
        x, y = batch
        return {"loss_mse": ((self.fc(x).float() - y) ** 2).mean()}


def _batches():
    g = torch.Generator().manual_seed(0)
    while True:
        x = torch.randn(16, 8, generator=g)
        yield x, x.sum(1, keepdim=True)


def test_fp16_scales_the_loss_and_keeps_the_scaler_in_checkpoints(caplog):
    """The fp16 path (CUDA's) on the CPU, which autocasts fp16 too: the grad scaler scales the
    backward, steps, and its state goes into the trainer's checkpoint."""
    torch.manual_seed(0)
    model = _Tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loop = MixedPrecisionTrainer(model, _batches(), opt, torch.float16, "cpu")
    scaled = []
    scale = loop.grad_scaler.scale
    loop.grad_scaler.scale = lambda loss: scaled.append(scale(loss)) or scaled[-1]
    with EventStorage(0) as storage:
        for loop.iter in range(30):
            loop.run_step()
        first, last = storage.history("total_loss").values()[0][0], storage.history(
            "total_loss").latest()  # fmt: skip
    assert len(scaled) == 30 and scaled[0].item() > 1000  # scaled by the initial 2**16
    assert last < 0.5 * first  # it learns through the scaler
    state = loop.state_dict()
    assert state["grad_scaler"]["scale"] == loop.grad_scaler.get_scale()
    again = MixedPrecisionTrainer(_Tiny(), _batches(), opt, torch.float16, "cpu")
    again.load_state_dict(state)
    assert again.grad_scaler.get_scale() == loop.grad_scaler.get_scale()
    # a checkpoint of an fp32 or bf16 run has no scaler: the scale starts afresh, said once
    fresh = MixedPrecisionTrainer(_Tiny(), _batches(), opt, torch.float16, "cpu")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        fresh.load_state_dict({k: v for k, v in state.items() if k != "grad_scaler"})
    assert "the checkpoint has no grad scaler state" in caplog.text
    bf16 = MixedPrecisionTrainer(_Tiny(), _batches(), opt, torch.bfloat16, "cpu")
    assert "grad_scaler" not in bf16.state_dict()
    bf16.load_state_dict(state)  # a scaler's state is ignored where there is no scaler
