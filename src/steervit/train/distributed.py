"""Process-group plumbing for multi-GPU / multi-node training under `torchrun`.

`torchrun` sets RANK, WORLD_SIZE and LOCAL_RANK; `setup()` reads them and starts the process group
(NCCL on GPUs, gloo on CPU). Without them everything is a world of one and every helper is a no-op,
so the trainer has a single code path. Only rank 0 writes files (checkpoints, logs, exports).

    torchrun --nproc_per_node=4 -m steervit.train --config paper ...                 # one node
    torchrun --nnodes=2 --nproc_per_node=4 --rdzv_backend=c10d \
        --rdzv_endpoint=HOST:29500 --rdzv_id=RUN -m steervit.train --config paper ...  # on every node

More in docs/training.md ("Distributed training").
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
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


def from_env() -> DistInfo:
    return DistInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                    int(os.environ.get("LOCAL_RANK", 0)))


def setup(device: str = "auto") -> DistInfo:
    """Join the process group torchrun describes (if any); pins this process to its GPU."""
    info = from_env()
    if not info.enabled or dist.is_initialized():
        return info
    use_cuda = torch.cuda.is_available() and (device == "auto" or device.startswith("cuda"))
    if use_cuda:
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return info


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def resolve_device(name: str, info: DistInfo) -> torch.device:
    """`auto` = this rank's GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device(f"cuda:{info.local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device={name} asked for, but CUDA is not available here")
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{info.local_rank}")
    return device


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, in place (and returned); identity in a world of one."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def sum_floats(values: list[float], device: torch.device) -> list[float]:
    """Sum a few Python numbers over ranks with one collective (float64 keeps counts exact)."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    return all_reduce_sum(t).tolist()


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
