"""Parameter sources: the model registry, trained checkpoints and the classical Sage sources
(Sage 2.2 with AM1-BCC charges, Sage 2.3.0 with NAGL charges). Imports nn, mm, chem and the foundation.
"""

from gnnff._lazy import submodules

__getattr__ = submodules(__name__)
