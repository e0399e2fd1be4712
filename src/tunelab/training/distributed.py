"""Data-parallel training across processes, through Accelerate.

Processes are started by an existing launcher, never by us: ``accelerate launch -m tunelab
train ...``, ``torchrun -m tunelab train ...``, or ``tunelab train --num-processes N`` (which
runs torchrun). Each process trains on its share of every optimizer step's batch; Accelerate
wraps the model in DistributedDataParallel (gloo on a CPU, NCCL on GPUs), which averages the
gradients. Evaluation is split across processes and the predictions gathered, so every process
takes the same early-stopping decision; only the main process writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Dist:
    world: int = 1
    rank: int = 0
    accelerator: Any = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        """Where this process trains: its GPU under a launcher, the GPU if there is one,
        else the CPU."""
        if self.accelerator is not None:
            return self.accelerator.device
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model to run forward/backward through (DDP across processes)."""
        if self.world == 1:
            return model
        return self.accelerator.prepare_model(model)

    def all_sum(self, value: float) -> float:
        if self.world == 1:
            return value
        t = torch.tensor([float(value)], dtype=torch.float64)
        torch.distributed.all_reduce(t)
        return float(t.item())

    def gather(self, obj: Any) -> list[Any]:
        """``obj`` from every process, in rank order."""
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out


def setup() -> Dist:
    """Join the process group a launcher prepared (WORLD_SIZE > 1), or run alone."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Dist()
    from accelerate import Accelerator

    acc = Accelerator(cpu=not torch.cuda.is_available())
    return Dist(acc.num_processes, acc.process_index, acc)


def shard(n: int, dist: Dist) -> list[int]:
    """The indices of ``n`` items this process handles (round robin)."""
    return list(range(dist.rank, n, dist.world))


def unshard(parts: list[list], n: int) -> list:
    """Undo ``shard``: per-process lists (rank order) back into one list of ``n`` items."""
    out: list = [None] * n
    for rank, part in enumerate(parts):
        for j, item in enumerate(part):
            out[rank + j * len(parts)] = item
    return out
