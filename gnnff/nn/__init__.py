"""Stage 2, the network: message passing, one symmetric head per term of the schema, and
checkpoints (config + weights + domain). Imports chem and the foundation, never mm, train or app.
"""

from gnnff._lazy import submodules

__getattr__ = submodules(__name__)
