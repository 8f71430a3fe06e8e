"""DistributedDataParallel plumbing of training: joining torchrun's process group and the collectives
the loop needs. With one process (no torchrun) every helper is a no-op."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from fastnst.runtime import resolve_device


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup_distributed(device_name: str) -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun set up (gloo on CPU, nccl on CUDA), or run as a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_name)
    if world_size <= 1:
        return DistInfo(), device
    import torch.distributed as dist

    info = DistInfo(rank=int(os.environ["RANK"]), world_size=world_size,
                    local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return info, device


def teardown_distributed(info: DistInfo) -> None:
    if info.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def mean_over_processes(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """All-reduce ``values`` to their mean over processes (in place; returned for chaining)."""
    if info.enabled:
        import torch.distributed as dist

        dist.all_reduce(values)
        values /= info.world_size
    return values


def min_over_processes(n: int, info: DistInfo, device: torch.device) -> int:
    """The smallest ``n`` over processes (e.g. a batch size: a DDP step needs every process to have data)."""
    if not info.enabled:
        return n
    import torch.distributed as dist

    t = torch.tensor([n], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())
