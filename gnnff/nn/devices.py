"""Which torch device the network trains or runs on.

A device is named as torch names it: ``"cpu"``, ``"cuda"`` (this process's GPU: GPU
``rank`` in a data-parallel run, else GPU 0), ``"cuda:N"``, or ``"auto"`` (``"cuda"`` when
torch sees a GPU, else ``"cpu"``). Everything else in gnnff (RDKit, the topology, the
OpenMM export) stays on the CPU; only the network, its inputs and the training loss move.
"""

from __future__ import annotations

import torch

from gnnff.errors import InputError

__all__ = ["DEVICES", "parse_device", "resolve_device", "wants_gpu"]

#: The names :func:`resolve_device` takes (``cuda:N`` too).
DEVICES = ("cpu", "cuda", "auto")


def parse_device(name: str, *, field: str = "device") -> tuple[str, int | None]:
    """``(kind, index)`` of a device name: kind ``cpu``, ``cuda`` or ``auto``, index N of
    ``cuda:N`` (else None).

    Raises
    ------
    InputError
        ``name`` is not a device name.
    """
    kind, colon, index = str(name).strip().lower().partition(":")
    if kind not in DEVICES or (colon and (kind != "cuda" or not index.isdigit())):
        raise InputError(f"{field} '{name}': give cpu, cuda, cuda:N or auto")
    return kind, int(index) if index else None


def wants_gpu(name: str) -> bool:
    """Whether device ``name`` means a CUDA GPU here (``cuda``, ``cuda:N``, or ``auto`` where
    torch sees one); what it does not check is left to :func:`resolve_device`."""
    kind, _ = parse_device(name)
    return kind == "cuda" or (kind == "auto" and torch.cuda.is_available())


def resolve_device(name: str, *, rank: int = 0, processes: int = 1, field: str = "device") -> torch.device:
    """The torch device ``name`` stands for in process ``rank`` of ``processes``.

    Raises
    ------
    InputError
        ``name`` is not a device name; a GPU is asked for and torch sees none, or fewer
        GPUs than ``processes`` (each data-parallel process needs one of its own).
    """
    kind, index = parse_device(name, field=field)
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise InputError(f"{field} '{name}': torch {torch.__version__} sees no CUDA GPU on this machine "
                         f"(a CPU-only build, or no driver); use cpu or auto")
    count = torch.cuda.device_count()
    if index is not None:
        if processes > 1:
            raise InputError(f"{field} '{name}': a data-parallel run of {processes} processes gives each its own "
                             "GPU; give cuda (process k uses GPU k)")
        if index >= count:
            raise InputError(f"{field} '{name}': this machine has {count} GPU(s), numbered from 0")
        return torch.device("cuda", index)
    if processes > count:
        raise InputError(f"{field} '{name}' with {processes} processes: each needs a GPU of its own and this "
                         f"machine has {count}; use --nproc {count} or fewer")
    return torch.device("cuda", rank)
