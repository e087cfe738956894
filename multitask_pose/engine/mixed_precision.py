"""Mixed-precision training (``SOLVER.AMP.ENABLED``) for both stages, on CUDA and on CPUs.

detectron2 v0.6's ``AMPTrainer`` runs only on CUDA (it asserts so) and only in fp16 with a grad
scaler. :class:`MixedPrecisionTrainer` subclasses it to choose the precision per device, once,
and say which:

- CUDA: fp16 autocast with a grad scaler (detectron2's behaviour);
- a CPU with native bf16 (AVX-512 BF16 or AMX): bf16 autocast, no scaler (bf16 has fp32's
  exponent range, so gradients do not underflow);
- a CPU without it: fp32, with a one-line warning: emulated bf16 is slower than fp32, and a
  silent slowdown is worse than no speed-up.

The precision is a property of the run (:func:`training_precision`), logged once when the
trainer is built. A checkpoint written with a grad scaler resumes without one and the other way
round: the scaler's state is kept when both sides have it and restarts otherwise.
"""

import logging
import time
from typing import Optional

import torch
from detectron2.engine import AMPTrainer, SimpleTrainer

logger = logging.getLogger(__name__)

__all__ = ["MixedPrecisionTrainer", "cpu_has_native_bf16", "training_precision"]


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX tiles), as PyTorch's cpuinfo
    reads it. (Private helpers of ``torch.cpu``, present since torch 2.1; absent means no.)"""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def training_precision(cfg) -> Optional[torch.dtype]:
    """The autocast dtype of a run: None without SOLVER.AMP.ENABLED or on a CPU without native
    bf16 (then with a warning), ``torch.float16`` on CUDA, ``torch.bfloat16`` on a bf16 CPU."""
    if not cfg.SOLVER.AMP.ENABLED:
        return None
    if cfg.MODEL.DEVICE.startswith("cuda"):
        return torch.float16
    if cpu_has_native_bf16():
        return torch.bfloat16
    logger.warning(
        "SOLVER.AMP.ENABLED: this CPU has no native bf16 (AVX-512 BF16 or AMX), where bf16 runs"
        " slower than fp32: training in fp32"
    )
    return None


class MixedPrecisionTrainer(AMPTrainer):
    """detectron2's ``AMPTrainer`` for a given autocast ``dtype`` on the model's device: fp16
    with a grad scaler (CUDA, as detectron2's), bf16 without one (CPUs with native bf16)."""

    def __init__(self, model, data_loader, optimizer, dtype: torch.dtype, device_type: str):
        scaler = torch.amp.GradScaler(device_type) if dtype == torch.float16 else None
        # AMPTrainer builds a CUDA scaler when given None: hand it a disabled one, then drop it.
        super().__init__(model, data_loader, optimizer,
                         grad_scaler=scaler or torch.amp.GradScaler(device_type, enabled=False))
        self.grad_scaler = scaler
        self.dtype, self.device_type = dtype, device_type
        logger.info(
            "mixed precision: %s autocast on %s, %s", str(dtype).replace("torch.", ""),
            device_type, "with a grad scaler" if scaler else "no grad scaler",
        )  # fmt: skip

    def run_step(self):
        """``AMPTrainer.run_step`` on any device: the forward under autocast, the losses summed
        in fp32, the backward and step through the scaler when there is one."""
        assert self.model.training, "[MixedPrecisionTrainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start

        with torch.autocast(self.device_type, dtype=self.dtype):
            loss_dict = self.model(data)
        if isinstance(loss_dict, torch.Tensor):
            loss_dict = {"total_loss": loss_dict}
        losses = sum(v.float() for v in loss_dict.values())

        self.optimizer.zero_grad()
        if self.grad_scaler is None:
            losses.backward()
        else:
            self.grad_scaler.scale(losses).backward()
        self._write_metrics(loss_dict, data_time)
        if self.grad_scaler is None:
            self.optimizer.step()
        else:
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()

    def state_dict(self):
        ret = super(AMPTrainer, self).state_dict()
        if self.grad_scaler is not None:
            ret["grad_scaler"] = self.grad_scaler.state_dict()
        return ret

    def load_state_dict(self, state_dict):
        super(AMPTrainer, self).load_state_dict(state_dict)
        if self.grad_scaler is not None:
            if "grad_scaler" in state_dict:
                self.grad_scaler.load_state_dict(state_dict["grad_scaler"])
            else:
                logger.info("the checkpoint has no grad scaler state: the scale starts afresh")


def build_train_loop(cfg):
    """The factory ``DefaultTrainer`` calls in place of ``AMPTrainer`` when SOLVER.AMP.ENABLED:
    :class:`MixedPrecisionTrainer` at :func:`training_precision`, or detectron2's
    ``SimpleTrainer`` when that is fp32."""
    dtype = training_precision(cfg)
    device_type = "cuda" if cfg.MODEL.DEVICE.startswith("cuda") else "cpu"

    def build(model, data_loader, optimizer):
        if dtype is None:
            return SimpleTrainer(model, data_loader, optimizer)
        return MixedPrecisionTrainer(model, data_loader, optimizer, dtype, device_type)

    return build
