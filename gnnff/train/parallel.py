"""Data-parallel training over processes with ``torch.distributed``.

``gnnff train config.yaml --nproc N`` (or ``torchrun --nproc-per-node N -m gnnff train
config.yaml``) runs N processes that share every optimisation step: each global batch of
``optim.batch_molecules`` molecules is cut into N shards (molecule ``i`` to rank
``i mod N``), each rank computes its shard's share of the batch loss, and
``DistributedDataParallel`` sums the gradients before one identical Adam step on every
rank. The loss of each term is normalised by the global batch's counts (conformations,
force components, torsion constants, charges), all-reduced before the loss is formed, so
N processes follow the same trajectory as one process with the same global batch (to
float rounding; tested).

Processes talk through gloo; training on GPUs (``optim.device: cuda``) adds NCCL for the
CUDA tensors (one process group with both backends): rank k trains on GPU k (the local
rank under torchrun) and DistributedDataParallel all-reduces the gradients over NCCL; the
loss counts and metrics (a few floats) go over gloo either way. Rank 0 writes every file (checkpoints,
metrics, splits); the others read what it wrote (stage 1, reference-charge caches) after
a barrier. Each rank uses ``optim.threads // N`` torch threads (at least one).
"""

from __future__ import annotations

import datetime
import os
import pickle
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from gnnff.errors import GnnffError

__all__ = ["World", "SINGLE", "backend", "from_environment", "launch"]

#: How long a rank waits for the others (stage 1 runs on rank 0 while they wait).
TIMEOUT = datetime.timedelta(hours=12)


@dataclass(frozen=True)
class World:
    """This process's rank among ``size`` training processes."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """Whether this process writes files and progress."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum over the ranks (float64)."""
        if self.size == 1:
            return [float(v) for v in values]
        tensor = torch.tensor([float(v) for v in values], dtype=torch.float64)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def wrap(self, network: torch.nn.Module, device: torch.device | None = None) -> torch.nn.Module:
        """``network`` (on ``device``) inside ``DistributedDataParallel`` (itself on one process)."""
        if self.size == 1:
            return network
        # every head runs on every shard (a term without rows still touches its weights), and a
        # frozen nonbonded network has no trainable parameters: none is unused
        if device is not None and device.type == "cuda":
            return torch.nn.parallel.DistributedDataParallel(network, device_ids=[device.index])
        return torch.nn.parallel.DistributedDataParallel(network)

    def shard(self, items: Sequence[Any]) -> list[Any]:
        """This rank's part of a global batch: every ``size``-th item from ``rank``."""
        return list(items[self.rank::self.size])


SINGLE = World()


def backend(gpu: bool = False) -> str:
    """gloo; for training on GPUs, NCCL for the CUDA tensors beside it. CPU training on a
    machine with GPUs keeps to gloo alone (an NCCL group would claim a GPU per rank)."""
    return "cpu:gloo,cuda:nccl" if gpu else "gloo"


def _init(rank: int, size: int, address: str, port: int, gpu: bool) -> World:
    dist.init_process_group(backend(gpu), init_method=f"tcp://{address}:{port}", rank=rank, world_size=size,
                            timeout=TIMEOUT)
    return World(rank, size)


def from_environment(gpu: bool = False) -> World | None:
    """The World of a process started by ``torchrun`` (``WORLD_SIZE`` > 1), its process
    group initialised (``gpu``: NCCL beside gloo); None outside torchrun."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return None
    if not dist.is_initialized():
        dist.init_process_group(backend(gpu), timeout=TIMEOUT)
    return World(dist.get_rank(), dist.get_world_size())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _exit_with(parent: int, every: float = 1.0) -> None:
    """End this process when ``parent`` is gone (a launcher killed without its ranks would
    leave them training, or waiting in a collective, forever)."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="gnnff-parent-watch").start()


def _entry(rank: int, size: int, port: int, parent: int, errors: str, gpu: bool, fn: Callable[..., Any],
           args: tuple) -> None:
    _exit_with(parent)
    world = _init(rank, size, "127.0.0.1", port, gpu)
    try:
        fn(*args, world=world)
    except GnnffError as err:  # handed to the launcher as it is (a one-line message there)
        with open(Path(errors) / f"rank{rank}.pickle", "wb") as handle:
            pickle.dump(err, handle)
        raise
    finally:
        dist.destroy_process_group()


def launch(fn: Callable[..., Any], nproc: int, *args: Any, gpu: bool = False) -> None:
    """Run ``fn(*args, world=World(rank, nproc))`` in ``nproc`` new processes on this
    machine and wait for them (``gpu``: their group has NCCL beside gloo). A
    :class:`gnnff.errors.GnnffError` in a rank is raised here as it is; other failures as
    torch's ``ProcessRaisedException``."""
    if nproc < 1:
        raise ValueError(f"--nproc must be at least 1, not {nproc}")
    with tempfile.TemporaryDirectory(prefix="gnnff-ranks-") as errors:
        try:
            torch.multiprocessing.spawn(_entry, args=(nproc, _free_port(), os.getpid(), errors, gpu, fn, args),
                                        nprocs=nproc, join=True)
        except Exception:
            for path in sorted(Path(errors).glob("rank*.pickle")):
                with open(path, "rb") as handle:
                    raise pickle.load(handle) from None
            raise
