"""detectron2's ``launch``, also on machines without CUDA.

detectron2 v0.6's launcher asserts CUDA, uses NCCL and calls ``torch.cuda.set_device``, and its
``create_ddp_model`` passes ``device_ids`` that ``DistributedDataParallel`` rejects for CPU modules
(upstream fixed the launcher after v0.6). With CUDA present, everything goes to detectron2
unchanged; without it, workers use the gloo backend and DDP gets no device ids, and a
:class:`~multitask_pose.engine.cli.UserError` in a worker (a refusal, a config error) reaches the
parent as that error, so the tool prints its one line instead of every worker's traceback.
"""
import logging
import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.engine import launch as d2_launch
from detectron2.engine.launch import _find_free_port
from detectron2.utils import comm
from torch.nn.parallel import DistributedDataParallel

from . import cli

__all__ = ["launch", "create_ddp_model", "DEFAULT_TIMEOUT"]

DEFAULT_TIMEOUT = timedelta(minutes=30)
logger = logging.getLogger(__name__)


def launch(main_func, num_gpus_per_machine, num_machines=1, machine_rank=0, dist_url=None,
           args=(), timeout=DEFAULT_TIMEOUT):
    """Same arguments as ``detectron2.engine.launch``; ``num_gpus_per_machine`` is the number of
    worker processes per machine (CPU processes when there is no CUDA)."""
    if torch.cuda.is_available():
        return d2_launch(main_func, num_gpus_per_machine, num_machines, machine_rank, dist_url,
                         args, timeout)  # fmt: skip
    world_size = num_machines * num_gpus_per_machine
    if world_size <= 1:
        return main_func(*args)
    if dist_url == "auto":
        if num_machines != 1:
            raise ValueError("dist_url=auto only works on one machine; pass tcp://HOST:PORT")
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    # The first worker's UserError message; the worker exits with EXIT_USER_ERROR after sending
    # it, and spawn then stops the other workers (which may wait for it in a collective).
    errors = mp.get_context("spawn").SimpleQueue()
    try:
        mp.spawn(
            _cpu_worker,
            nprocs=num_gpus_per_machine,
            args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args,
                  timeout, errors, cli.current_debug()),
            daemon=False,
        )  # fmt: skip
    except mp.ProcessExitedException as e:
        if e.exit_code == cli.EXIT_USER_ERROR and not errors.empty():
            raise cli.UserError(errors.get()) from None
        raise


def _cpu_worker(local_rank, main_func, world_size, procs_per_machine, machine_rank, dist_url, args,
                timeout, errors=None, debug=False):  # fmt: skip
    # Share the cores instead of every process claiming all of them (oversubscription made a
    # 2-process run on 2 cores several times slower).
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // procs_per_machine))
    global_rank = machine_rank * procs_per_machine + local_rank
    try:
        dist.init_process_group("gloo", init_method=dist_url, world_size=world_size,
                                rank=global_rank, timeout=timeout)
    except Exception:
        logger.error("Process group URL: %s", dist_url)
        raise
    # detectron2's comm helpers need the group of ranks on this machine.
    num_machines = world_size // procs_per_machine
    for i in range(num_machines):
        group = dist.new_group(list(range(i * procs_per_machine, (i + 1) * procs_per_machine)))
        if i == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group
    comm.synchronize()
    try:
        main_func(*args)
    except cli.UserError as e:
        if debug or errors is None:
            raise
        errors.put(cli.message(e))
        sys.exit(cli.EXIT_USER_ERROR)  # a SystemExit passes spawn's wrapper, which sends tracebacks
    finally:
        dist.destroy_process_group()


def create_ddp_model(model, *, fp16_compression=False, **kwargs):
    """detectron2's ``create_ddp_model`` without ``device_ids`` for a CPU model."""
    if comm.get_world_size() == 1:
        return model
    if next(model.parameters()).device.type == "cpu":
        return DistributedDataParallel(model, **kwargs)
    from detectron2.engine.defaults import create_ddp_model as d2_create_ddp_model

    return d2_create_ddp_model(model, fp16_compression=fp16_compression, **kwargs)
