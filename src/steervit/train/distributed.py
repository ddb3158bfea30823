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


def current() -> DistInfo:
    """The started process group's rank and size; a world of one when none is started."""
    if not dist.is_initialized():
        return DistInfo()
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def contiguous_share(count: int, info: DistInfo) -> range:
    """This rank's block of `count` items: rank r takes items count*r//W up to count*(r+1)//W.

    The blocks are contiguous, in rank order and differ in size by at most one, so the ranks'
    results concatenated in rank order are in the 1-process order."""
    return range(count * info.rank // info.world_size, count * (info.rank + 1) // info.world_size)


def all_gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's rows (dim 0; the counts may differ, even be 0) concatenated in rank order, on every
    rank; the tensor itself in a world of one. A rank with no rows may pass `torch.empty(0)`."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return tensor
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    shape = torch.zeros(8, dtype=torch.long, device=device)  # rows, ndim, then up to 6 trailing sizes
    if tensor.shape[0]:
        shape[0], shape[1] = tensor.shape[0], tensor.ndim
        shape[2:1 + tensor.ndim] = torch.tensor(tensor.shape[1:])
    shapes = [torch.zeros_like(shape) for _ in range(dist.get_world_size())]
    dist.all_gather(shapes, shape)
    rows = [int(s[0]) for s in shapes]
    known = next((s for s in shapes if s[0] > 0), None)
    if known is None:
        return tensor
    trailing = [int(v) for v in known[2:1 + int(known[1])]]
    padded = torch.zeros(max(rows), *trailing, dtype=tensor.dtype, device=device)
    if rows[dist.get_rank()]:
        padded[:rows[dist.get_rank()]] = tensor
    parts = [torch.empty_like(padded) for _ in rows]
    dist.all_gather(parts, padded)
    return torch.cat([part[:n] for part, n in zip(parts, rows)]).to(tensor.device)
