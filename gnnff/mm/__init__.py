"""Stage 3, molecular mechanics: the differentiable energy of every term and the export to
standard OpenMM forces (System and its XML). Imports chem and the foundation, never nn.
"""

from gnnff._lazy import submodules

__getattr__ = submodules(__name__)
