"""Stage 1, chemistry: reading molecules (files, SMILES, RDKit, OpenFF), preparing them, their
topology (every term's atom tuples) and the network's atom features. Imports only the foundation
modules (schema, units, errors).
"""

from gnnff._lazy import submodules

__getattr__ = submodules(__name__)
