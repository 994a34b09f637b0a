"""Condensed-phase and charge benchmarks: the instruments that judge nonbonded parameters.

- :mod:`gnnff.condensed.common`: the force fields compared (a gnnff model, Sage 2.2 +
  AM1-BCC with cached reference charges), ffxml-based ``openmm.app.ForceField`` set-up,
  per-molecule result files (resume), bootstrap statistics against experiment.
- :mod:`gnnff.condensed.charges`: partial charges against AM1-BCC (and OpenFF NAGL):
  errors, slope, dipoles, GB (OBC2) polarization energies, equivalent-atom spread.
- :mod:`gnnff.condensed.hydration`: absolute hydration free energies by alchemical
  decoupling in TIP3P with PME (openmmtools alchemical factory + replica exchange, MBAR).
- :mod:`gnnff.condensed.liquids`: neat-liquid densities (packmol box, NPT in OpenMM,
  statistical inefficiency from pymbar).

The scripts ``benchmarks/condensed/charges.py``, ``benchmarks/condensed/hydration.py`` and
``benchmarks/condensed/liquids.py`` drive them. Heavy optional engines (openmmtools, pymbar,
packmol, NAGL) are imported inside the functions that need them, with a message naming
the extra to install (``pip install gnnff[bench]``).
"""
