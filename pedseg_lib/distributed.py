"""The few collective operations the engine needs, each a no-op in a single process.

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; :func:`init` then joins the process
group (NCCL on GPUs, gloo on CPUs). Rank 0 is the main process: it alone prints and writes files.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as td
from torch import nn
from torch.utils.data import Dataset, DistributedSampler, Subset

from pedseg_lib.config import DEVICES
from pedseg_lib.errors import ConfigError

_OWNED = False  # True when init() created the process group (so cleanup() destroys it)


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return td.is_available() and td.is_initialized() and td.get_world_size() > 1


def rank() -> int:
    return td.get_rank() if is_distributed() else 0


def world_size() -> int:
    return td.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main() -> bool:
    """True on rank 0 (and always in a single process)."""
    return rank() == 0


def resolve_device(name: str = "auto") -> torch.device:
    """The device a model runs on: the one rule for ``device=`` in configs, ``--device`` and the profiles.

    Args:
        name: ``auto`` (this process's CUDA GPU when one is visible, else the CPU), ``cuda`` or ``cpu``.

    Returns:
        ``cuda:<local rank>`` or ``cpu``.

    Raises:
        ConfigError: an unknown name, or ``cuda`` when no CUDA GPU is visible.
    """
    if name not in DEVICES:
        raise ConfigError(f"device {name!r} is not a device: use one of {', '.join(DEVICES)}.")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' asked for, but no CUDA GPU is visible: use device auto or cpu.")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank())


def init() -> None:
    """Join the process group when launched by ``torchrun`` with more than one process."""
    global _OWNED
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1 or td.is_initialized():
        return
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    td.init_process_group(backend)
    _OWNED = True


def cleanup() -> None:
    """Wait for every process, then leave the process group (if :func:`init` joined it)."""
    global _OWNED
    if _OWNED and td.is_initialized():
        td.barrier()
        td.destroy_process_group()
        _OWNED = False


def barrier() -> None:
    if is_distributed():
        td.barrier()


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``model`` when distributed, else ``model`` itself."""
    if not is_distributed():
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def sampler(dataset: Dataset, seed: int) -> DistributedSampler | None:
    """A shuffling DistributedSampler (call ``set_epoch`` every epoch), or None in one process."""
    if not is_distributed():
        return None
    return DistributedSampler(dataset, shuffle=True, seed=seed)


def shard(dataset: Dataset) -> Dataset:
    """This process's share of ``dataset`` (every ``world_size``-th item, no padding or repeats)."""
    if not is_distributed():
        return dataset
    return Subset(dataset, list(range(rank(), len(dataset), world_size())))


def sum_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of ``tensor`` over processes (a CPU float64 tensor in, out)."""
    if not is_distributed():
        return tensor
    tensor = tensor.clone()
    if td.get_backend() == "nccl":
        tensor = tensor.cuda()
    td.all_reduce(tensor)
    return tensor.cpu()


def mean_dict(values: dict[str, torch.Tensor]) -> dict[str, float]:
    """Scalars averaged over processes, as Python floats."""
    stacked = torch.stack([v.detach().float().reshape(()) for v in values.values()]).to(torch.float64).cpu()
    stacked = sum_tensor(stacked) / world_size()
    return dict(zip(values, stacked.tolist(), strict=True))


def gather_dicts(part: dict) -> dict:
    """The union of every process's dict, on every process."""
    if not is_distributed():
        return part
    parts: list[Any] = [None] * world_size()
    td.all_gather_object(parts, part)
    merged: dict = {}
    for item in parts:
        merged.update(item)
    return merged


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every process."""
    if not is_distributed():
        return obj
    box = [obj]
    td.broadcast_object_list(box, src=0)
    return box[0]
