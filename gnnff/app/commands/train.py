"""``gnnff train``: train a model from a YAML config, in one process, in ``--nproc``
processes, or as one rank under torchrun."""

from __future__ import annotations

import argparse

from gnnff.errors import InputError

__all__ = ["add_arguments", "handle"]


def add_arguments(subparsers) -> None:
    """Add ``train`` to ``subparsers``."""
    t = subparsers.add_parser("train", help="train a model from a YAML config",
                              description="Train a gnnff model; outputs go to the config's 'output' folder.")
    t.add_argument("config", metavar="CONFIG.yaml",
                   help="training configuration: data files, split, network, loss, optimiser and the output "
                        "folder (configs/ has an example)")
    t.add_argument("--resume", action="store_true", help="continue from OUTPUT/last.pt if it exists")
    t.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="data-parallel training in N processes on this machine (torch.distributed, gloo): "
                        "each step's batch is shared out, optim.threads split between them (default: 1; "
                        "under torchrun its processes are used instead)")
    t.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Train; print the epochs run and the best model's path (on the main rank)."""
    from gnnff.train.config import load_config
    from gnnff.train.parallel import from_environment
    from gnnff.train.training import train, train_parallel, trains_on_gpu

    config = load_config(args.config)
    world = from_environment(gpu=trains_on_gpu(config))
    if world is not None:  # started by torchrun: this process is one rank
        result = train(config, resume=args.resume, world=world)
        if not world.main:
            return 0
    elif args.nproc < 1:
        raise InputError(f"--nproc {args.nproc}: give a number of processes, 1 or more")
    elif args.nproc > 1:
        result = train_parallel(config, args.nproc, resume=args.resume)
    else:
        result = train(config, resume=args.resume)
    print(f"trained {result['epochs']} epoch(s); best model: {result['model']}")
    return 0
