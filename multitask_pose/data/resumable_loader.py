"""A training loader whose every batch is a function of (SEED, rank, iteration), so that a run
killed and resumed from a checkpoint trains on exactly the batches, augmented exactly the same
way, that an uninterrupted run sees (``tests/reliability/test_fault_injection.py``).

detectron2's ``TrainingSampler`` restarts its shuffled stream from the beginning on ``--resume``
and the loader workers draw augmentations from process-global generators, so a resumed run sees
other images, augmented otherwise, than the run it continues. Here:

- The stream is one endless sequence of positions; rank r of W takes positions r, r + W, ...
  Position p is dataset index ``perm_e[p mod N]`` of epoch ``e = p // N``, whose permutation is
  drawn from a generator seeded by (SEED, e): any position is found without replaying the
  stream (``PositionedDataset``).
- With several datasets mixed by ratios (``DATASETS.TRAIN_RATIOS``, ``joint_training.py``),
  each block of ``MIX_BLOCK`` positions holds each dataset's exact quota in an order shuffled by
  (SEED, block); a dataset's k-th sample is its own stream's position k (its epochs' permutations
  seeded by (SEED, dataset, epoch)). Again a function of p alone.
- The mapper of position p runs with Python's, numpy's and torch's generators seeded from
  (SEED, p) and restored afterwards: its random augmentation depends on p alone, not on the
  worker, the number of workers or what the worker did before.
- Aspect-ratio grouping (``DATALOADER.ASPECT_RATIO_GROUPING``) holds samples back until a batch
  of one orientation fills; on resume, the samples that were waiting at that iteration are found
  by replaying the orientations of the stream (integers, no images), mapped again and put back
  first (``resume_point``), so the groups continue as they were.
- The model's own randomness (proposal sampling, dropout) is reseeded from (SEED, rank,
  iteration) before every step by ``IterationSeed`` (``multitask_pose.engine.trainer``).
- Without grouping, a worker sends each batch with its same-shape tensor fields stacked
  (``stack_batch``), one shared-memory tensor per field instead of one per sample, and the
  main process hands the trainer the usual list of dicts holding views of them
  (``unstack_batch``): the top-down recipes' 32 crops and targets per batch waited 6-7% of each
  iteration for the per-tensor transfers.
"""

import hashlib
import itertools
import operator
import random
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from detectron2.data.common import DatasetFromList
from detectron2.utils import comm
from torch.utils import data as torchdata

from .joint_training import block_quota

__all__ = [
    "MIX_BLOCK",
    "PositionedDataset",
    "ResumableTrainLoader",
    "mix_seed",
    "resume_point",
    "stack_batch",
    "unstack_batch",
]


class _StackedBatch:
    """A batch as a worker sends it: ``fields[key]`` is one stacked tensor (every sample's value
    a tensor of one shape and dtype), a nested ``_StackedBatch`` (every sample's value a dict
    with the same keys, e.g. the top-down targets) or the list of the samples' values."""

    def __init__(self, size: int, fields: dict):
        self.size, self.fields = size, fields


def stack_batch(dicts: List[dict]):
    """The worker side of the transfer: a list of dicts with the same keys becomes a
    :class:`_StackedBatch`; other lists (different keys) stay as they are."""
    if not dicts or not all(isinstance(d, dict) for d in dicts):
        return dicts
    keys = list(dicts[0])
    if any(list(d) != keys for d in dicts):
        return dicts
    fields = {}
    for k in keys:
        vals = [d[k] for d in dicts]
        first = vals[0]
        if isinstance(first, torch.Tensor) and all(
            isinstance(v, torch.Tensor) and v.shape == first.shape and v.dtype == first.dtype
            for v in vals
        ):
            fields[k] = torch.stack(vals)
        elif isinstance(first, dict):
            fields[k] = stack_batch(vals)  # a nested _StackedBatch, or the list as it is
        else:
            fields[k] = vals
    return _StackedBatch(len(dicts), fields)


def unstack_batch(batch) -> List[dict]:
    """The main-process side: the list of dicts again, tensors as views of the stacked ones."""
    if not isinstance(batch, _StackedBatch):
        return batch
    fields = {k: unstack_batch(v) for k, v in batch.fields.items()}
    return [{k: v[i] for k, v in fields.items()} for i in range(batch.size)]


def mix_seed(*parts) -> int:
    """A 63-bit seed from integers (a hash: nearby inputs give unrelated seeds)."""
    digest = hashlib.blake2b(repr(tuple(int(p) for p in parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


MIX_BLOCK = 1000  # positions per block of exact per-dataset quotas (mixed datasets)


class PositionedDataset(torchdata.Dataset):
    """Stream position -> mapped dataset dict, deterministic in (seed, position) (module doc).

    Args:
        dicts: the dataset dicts (detectron2 format); with ``part_sizes``, the datasets' dicts
            concatenated.
        mapper: dict -> training sample (e.g. detectron2's DatasetMapper); None results are
            replaced by the next index's sample, deterministically. A dict sample gets its
            position as "stream_position" (what the resume tests compare).
        seed: the run's seed.
        shuffle: shuffle each epoch (else the dataset order, repeated).
        part_sizes, ratios: the number of dicts of each dataset and the share of the stream
            each gets (normalised weights, ``joint_training.check_ratios``); None: one dataset.
    """

    def __init__(
        self,
        dicts: Sequence[dict],
        mapper: Callable,
        seed: int,
        shuffle: bool = True,
        part_sizes: Optional[Sequence[int]] = None,
        ratios: Optional[Sequence[float]] = None,
    ):
        if not len(dicts):
            raise ValueError("PositionedDataset: the dataset is empty")
        self.dataset = DatasetFromList(list(dicts), copy=False, serialize=True)
        self.mapper, self.seed, self.shuffle = mapper, int(seed), shuffle
        self.num = len(dicts)
        # Orientation of every image (what aspect-ratio grouping sorts by): width > height.
        self.landscape = np.array(
            [d.get("width", 0) > d.get("height", 0) for d in dicts], dtype=bool
        )
        self._epoch, self._perm = None, None
        self.parts = None
        if (part_sizes is None) != (ratios is None):
            raise ValueError("PositionedDataset: give part_sizes and ratios together")
        if part_sizes is not None:
            sizes = np.asarray(part_sizes, dtype=np.int64)
            if len(sizes) != len(ratios) or sizes.sum() != self.num or (sizes <= 0).any():
                raise ValueError(
                    f"PositionedDataset: part sizes {tuple(sizes)} (for {len(ratios)} ratios)"
                    f" must be positive and sum to the {self.num} dicts"
                )
            self.parts = sizes
            self.offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
            self.quota = block_quota(np.asarray(ratios, dtype=np.float64), MIX_BLOCK)
            self._block, self._part_perms = None, {}

    def _mix_block(self, block: int):
        """(dataset of each position of ``block``, its count among the block's earlier ones)."""
        if block != self._block:
            which = np.repeat(np.arange(len(self.quota)), self.quota)
            g = torch.Generator().manual_seed(mix_seed(self.seed, block, 1))
            which = which[torch.randperm(MIX_BLOCK, generator=g).numpy()]
            rank = np.empty(MIX_BLOCK, dtype=np.int64)
            for d in range(len(self.quota)):
                rank[which == d] = np.arange(self.quota[d])
            self._block, self._which, self._rank = block, which, rank
        return self._which, self._rank

    def _part_index(self, part: int, k: int) -> int:
        """Index (into the concatenation) of dataset ``part``'s k-th sample."""
        epoch, i = divmod(k, int(self.parts[part]))
        if self.shuffle:
            if self._part_perms.get(part, (None,))[0] != epoch:
                g = torch.Generator().manual_seed(mix_seed(self.seed, part, epoch, 2))
                perm = torch.randperm(int(self.parts[part]), generator=g).numpy()
                self._part_perms[part] = (epoch, perm)
            i = int(self._part_perms[part][1][i])
        return int(self.offsets[part]) + i

    def index(self, position: int) -> int:
        if self.parts is not None:
            block, r = divmod(int(position), MIX_BLOCK)
            which, rank = self._mix_block(block)
            part = int(which[r])
            return self._part_index(part, block * int(self.quota[part]) + int(rank[r]))
        epoch, i = divmod(int(position), self.num)
        if not self.shuffle:
            return i
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(mix_seed(self.seed, epoch))
            self._perm, self._epoch = torch.randperm(self.num, generator=g).numpy(), epoch
        return int(self._perm[i])

    def part_of(self, index: int) -> int:
        """Which dataset an index of the concatenation belongs to (0 for one dataset)."""
        if self.parts is None:
            return 0
        return int(np.searchsorted(self.offsets, index, side="right") - 1)

    def __len__(self):  # positions are endless; this is the dataset's size
        return self.num

    def __getitem__(self, position: int):
        idx = self.index(position)
        # None from the mapper: the next dicts of the same dataset, in order.
        part = self.part_of(idx)
        start, size = (0, self.num) if self.parts is None else (
            int(self.offsets[part]), int(self.parts[part]))  # fmt: skip
        for attempt in range(size):
            states = random.getstate(), np.random.get_state(), torch.get_rng_state()
            s = mix_seed(self.seed, position, attempt)
            random.seed(s)
            np.random.seed(s % 2**32)
            torch.manual_seed(s)
            try:
                out = self.mapper(self.dataset[start + (idx - start + attempt) % size])
            finally:
                random.setstate(states[0])
                np.random.set_state(states[1])
                torch.set_rng_state(states[2])
            if out is not None:
                if isinstance(out, dict):
                    out["stream_position"] = int(position)
                return out
        raise RuntimeError(f"the mapper returned None for every image of dataset {part}")


class _PositionSampler(torchdata.Sampler):
    """This rank's positions: ``replay`` first, then ``next``, ``next + W``, ... (endless)."""

    def __init__(self, rank: int, world: int):
        self.rank, self.world = rank, world
        self.replay: List[int] = []
        self.next = rank

    def __iter__(self):
        yield from self.replay
        yield from itertools.count(self.next, self.world)


def resume_point(
    landscape_of: Callable[[int], bool],
    batches_done: int,
    batch_size: int,
    rank: int,
    world: int,
    grouping: bool,
) -> Tuple[List[int], int]:
    """Where this rank's stream stands after ``batches_done`` batches: (positions waiting in the
    orientation groups, in stream order; the next position to take). Without grouping nothing
    waits: the next position is ``rank + batches_done * batch_size * world``."""
    if not grouping:
        return [], rank + batches_done * batch_size * world
    buckets: List[List[int]] = [[], []]
    position, emitted = rank, 0
    while emitted < batches_done:
        bucket = buckets[0 if landscape_of(position) else 1]
        bucket.append(position)
        position += world
        if len(bucket) == batch_size:
            bucket.clear()
            emitted += 1
    return sorted(buckets[0] + buckets[1]), position


class ResumableTrainLoader:
    """Iterable of training batches (lists of mapped dicts) of this rank, resumable at any
    iteration with :meth:`start_at` before iterating (module docstring).

    Args:
        dataset: a :class:`PositionedDataset`.
        total_batch_size: SOLVER.IMS_PER_BATCH (over all ranks).
        aspect_ratio_grouping, num_workers: as detectron2's ``build_detection_train_loader``.
    """

    def __init__(self, dataset, total_batch_size, aspect_ratio_grouping=True, num_workers=0):
        world, rank = comm.get_world_size(), comm.get_rank()
        if total_batch_size <= 0 or total_batch_size % world:
            raise ValueError(
                f"SOLVER.IMS_PER_BATCH {total_batch_size} must be a positive multiple of the "
                f"number of processes ({world})"
            )
        self.dataset, self.grouping = dataset, aspect_ratio_grouping
        self.batch_size, self.num_workers = total_batch_size // world, num_workers
        self.sampler = _PositionSampler(rank, world)
        self._started = False

    def start_at(self, iteration: int):
        """Continue as if ``iteration`` batches had been taken already (before iterating)."""
        if self._started:
            raise RuntimeError("ResumableTrainLoader.start_at after iteration began")
        replay, nxt = resume_point(
            lambda p: bool(self.dataset.landscape[self.dataset.index(p)]),
            iteration,
            self.batch_size,
            self.sampler.rank,
            self.sampler.world,
            self.grouping,
        )
        self.sampler.replay, self.sampler.next = replay, nxt

    def __iter__(self):
        # A generator: nothing starts (no worker, no position read) until the first batch is
        # asked for, so detectron2's trainer may call iter() before resume_or_load sets the start.
        from detectron2.data.build import trivial_batch_collator
        from detectron2.data.common import AspectRatioGroupedDataset, ToIterableDataset

        self._started = True
        items = ToIterableDataset(self.dataset, self.sampler)
        # The DataLoader draws its workers' base seed when its iterator starts: from a generator
        # of its own, not the global one, which the model's step uses after IterationSeed.
        common = dict(
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(
                mix_seed(self.dataset.seed, self.sampler.rank, 7)
            ),
        )
        if self.grouping:
            loader = torchdata.DataLoader(items, collate_fn=operator.itemgetter(0), **common)
            # detectron2's grouping, made here so its groups start empty (what start_at assumes).
            yield from AspectRatioGroupedDataset(loader, self.batch_size)
        else:
            loader = torchdata.DataLoader(
                items,
                batch_size=self.batch_size,
                drop_last=True,
                collate_fn=stack_batch if self.num_workers else trivial_batch_collator,
                **common,
            )
            yield from map(unstack_batch, loader)
