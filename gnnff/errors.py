"""One exception hierarchy for gnnff.

Every message is one line that names the input (file, record, molecule), the atom
when there is one, and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "GnnffError",
    "InputError",
    "ChemistryError",
    "ParametrizationError",
    "ModelError",
    "SimulationError",
    "first_line",
]


def first_line(err: BaseException) -> str:
    """The first line of an exception's message, or its type name when the message is
    empty: how a foreign library's error is quoted inside one of gnnff's one-line messages."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class GnnffError(Exception):
    """Base class of every error gnnff raises on purpose."""


class InputError(GnnffError):
    """A file or object could not be read as a molecule (format, I/O, syntax)."""


class ChemistryError(GnnffError):
    """The molecule was read but is outside what gnnff handles (radical, element, hydrogens)."""


class ParametrizationError(GnnffError):
    """A parameter source could not assign parameters to a molecule."""


class ModelError(GnnffError):
    """An unknown model name or an unusable model file."""


class SimulationError(GnnffError):
    """A simulation could not be set up or became unstable (NaN, a bond pulled apart)."""
