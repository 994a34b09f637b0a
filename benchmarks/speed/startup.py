"""Start-up cost: ``import gnnff`` and the light ``gnnff`` commands, and which heavy libraries they load.

    python benchmarks/speed/startup.py [--repeat 5]

Every row is a fresh process (median wall time of ``--repeat`` runs). For each, the
same command is run once more under ``python -X importtime`` to list which of torch,
openmm, rdkit and openff it imported. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HEAVY = ("torch", "openmm", "rdkit", "openff")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", f"import sys; from gnnff.app.cli import main; sys.exit(main({list(args)!r}))"]


def wall(command: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def heavy_imports(command: list[str]) -> tuple[list[str], float]:
    """(heavy top-level packages imported, cumulative import time of everything in s) of a Python command."""
    assert command[0] == sys.executable
    result = subprocess.run([sys.executable, "-X", "importtime", *command[1:]], check=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    names, total_us = set(), 0
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        if not cumulative.strip().isdigit():
            continue
        names.add(name.strip())
        if not name.startswith("  "):  # a top-level import: its cumulative time counts once
            total_us += int(cumulative)
    loaded = sorted({h for h in HEAVY for name in names if name == h or name.startswith(h + ".")})
    return loaded, total_us / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    exe = shutil.which("gnnff") or shutil.which("gnnff", path=str(Path(sys.executable).parent))
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; median of {args.repeat} fresh processes")
    rows = [
        ("python -c pass (interpreter alone)", [sys.executable, "-c", "pass"], None),
        ("python -c 'import gnnff'", [sys.executable, "-c", "import gnnff"], None),
        ("python -c 'import gnnff; gnnff.parametrize'", [sys.executable, "-c", "import gnnff; gnnff.parametrize"],
         None),
        ("gnnff --version", [exe, "--version"], _cli("--version")),
        ("gnnff --help", [exe, "--help"], _cli("--help")),
        ("gnnff models", [exe, "models"], _cli("models")),
        ("gnnff parametrize --help", [exe, "parametrize", "--help"], _cli("parametrize", "--help")),
    ]
    print(f"{'command':46s} {'wall s':>7s} {'imports s':>9s}  heavy libraries imported")
    for label, command, python_form in rows:
        seconds = wall(command, args.repeat)
        loaded, importing = heavy_imports(python_form or command)
        print(f"{label:46s} {seconds:7.2f} {importing:9.2f}  {', '.join(loaded) or '-'}")


if __name__ == "__main__":
    main()
