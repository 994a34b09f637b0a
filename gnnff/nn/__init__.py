"""Stage 2, the network: message passing, one symmetric head per term of the schema, and
checkpoints (config + weights + domain). Imports chem and the foundation, never mm, train or app.
"""
