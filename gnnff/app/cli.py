"""The ``gnnff`` command line. It only calls the public API.

Each subcommand lives in its own module of :mod:`gnnff.app.commands`; this module builds
the parser from them, calls the chosen subcommand's handler and turns errors into one
line.

Exit codes: 0 every molecule written; 1 some molecules failed (the others were
written); 2 nothing could be done (bad file, bad option, unknown model).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from gnnff._version import __version__
from gnnff.app.commands import COMMANDS
from gnnff.errors import GnnffError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The parser of the whole command line (the CLI reference is generated from it).

    Each subcommand's parser holds its handler as the default of ``handler``.
    """
    parser = argparse.ArgumentParser(
        prog="gnnff", description="Molecular-mechanics force fields for small molecules, as OpenMM Systems."
    )
    parser.add_argument("--version", action="version", version=f"gnnff {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_arguments(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except GnnffError as err:
        print("gnnff: error: " + " ".join(str(err).split()), file=sys.stderr)  # always one line
        return 2
    except KeyboardInterrupt:
        print("gnnff: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
