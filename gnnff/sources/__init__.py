"""Parameter sources: the model registry, trained checkpoints and the classical Sage source
(with its AM1-BCC charges). Imports nn, mm, chem and the foundation.
"""

from gnnff._lazy import submodules

__getattr__ = submodules(__name__)
