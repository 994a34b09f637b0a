"""Training and evaluation: configs, data readers, reference labelers and labels, data
generation, the training loop (single process or data-parallel), evaluation and the
benchmark protocol. Imports sources, nn, mm, chem and the foundation.
"""

from gnnff._lazy import submodules

__getattr__ = submodules(__name__)
