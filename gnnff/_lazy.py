"""Submodules imported on first attribute access (PEP 562), for the stage packages."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from types import ModuleType


def submodules(package: str) -> Callable[[str], ModuleType]:
    """A module ``__getattr__`` for ``package``: ``package.<name>`` imports the submodule
    ``name`` (so ``gnnff.chem.molecule`` works after a bare ``import gnnff``); other names
    are an AttributeError, a missing dependency of an existing submodule is raised as is."""

    def __getattr__(name: str) -> ModuleType:
        if not name.startswith("_"):
            try:
                return import_module(f"{package}.{name}")
            except ModuleNotFoundError as err:
                if err.name != f"{package}.{name}":
                    raise
        raise AttributeError(f"module '{package}' has no attribute '{name}'")

    return __getattr__
