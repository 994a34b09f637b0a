"""The ``gnnff`` subcommands, one module each.

Each module has ``add_arguments(subparsers)``, which adds its subcommand with every
option and its help, and attaches its handler with ``set_defaults(handler=...)``: a
function of the parsed arguments that returns the exit code. The modules import only
light modules at the top (building the parser must stay fast); torch, OpenMM and the
network are imported inside the handlers.
"""

from __future__ import annotations

from gnnff.app.commands import data, evaluate, finetune, models, parametrize, scan, simulate, train

__all__ = ["COMMANDS"]

#: The subcommand modules, in the order ``gnnff --help`` lists them.
COMMANDS = (parametrize, models, train, evaluate, data, scan, finetune, simulate)
