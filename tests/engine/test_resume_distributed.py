"""Two CPU processes train through detectron2-style launch. (A killed run's resume:
tests/reliability/test_fault_injection.py.)"""

import subprocess
import sys

import torch

from conftest import RECIPE, TRAIN_OPTS

# train_net's body with one more hook: after training, every rank saves whether its model was
# wrapped in DistributedDataParallel, the world size and its parameters.
DDP_SCRIPT = """
import torch
from detectron2.engine import HookBase, default_argument_parser
from detectron2.utils import comm
from torch.nn.parallel import DistributedDataParallel

import multitask_pose  # noqa: F401
from multitask_pose.engine import MultiTaskTrainer, launch, train_net_main


class DumpRank(HookBase):
    def after_train(self):
        model = self.trainer.model
        inner = model.module if isinstance(model, DistributedDataParallel) else model
        params = {k: v.detach().clone() for k, v in inner.named_parameters()}
        torch.save({"ddp": isinstance(model, DistributedDataParallel),
                    "world": comm.get_world_size(), "params": params},
                   f"{self.trainer.cfg.OUTPUT_DIR}/rank{comm.get_rank()}.pt")


class Trainer(MultiTaskTrainer):
    def build_hooks(self):
        return super().build_hooks() + [DumpRank()]


def main(args):
    return train_net_main(args, Trainer)


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))
"""


def test_two_cpu_processes_train_one_model(synth_mini, tmp_path):
    """`--num-gpus 2` on the CPU: two gloo processes, each holding the model wrapped in
    DistributedDataParallel; they average gradients, so after training both ranks hold exactly
    the same parameters (each rank's BatchNorm statistics are its own, as in detectron2), and
    they equal the saved model_final.pth."""
    opts = TRAIN_OPTS + ["SOLVER.MAX_ITER", "3", "SOLVER.IMS_PER_BATCH", "4",
                         "OUTPUT_DIR", str(tmp_path)]
    script = tmp_path / "train_net_ddp.py"
    script.write_text(DDP_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), "--num-gpus", "2", "--config-file", str(RECIPE), *opts],
        cwd=tmp_path, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-6000:]
    log = (tmp_path / "log.txt").read_text()
    assert "Rank of current process: 0. World size: 2" in log
    assert (tmp_path / "log.txt.rank1").exists()
    assert "train_net synth_people_mini_val" in proc.stdout
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    assert all(r["ddp"] and r["world"] == 2 for r in ranks)
    final = torch.load(tmp_path / "model_final.pth", weights_only=False)["model"]
    assert ranks[0]["params"].keys() == ranks[1]["params"].keys()
    for k, v in ranks[0]["params"].items():
        assert torch.equal(v, ranks[1]["params"][k]), k
        assert torch.equal(v, torch.as_tensor(final[k])), k
