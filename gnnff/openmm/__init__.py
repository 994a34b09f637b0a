"""gnnff inside the OpenMM application layer: System building (topologies, ffxml residue
templates), a template generator for ``openmm.app.ForceField`` and its on-disk cache.

- :mod:`gnnff.openmm.templates`: :func:`to_openmm_topology`, :func:`atom_names`,
  :func:`ffxml` (one residue template per parametrized molecule);
- :mod:`gnnff.openmm.generator`: :class:`GNNFFTemplateGenerator`, also one of
  openmmforcefields' ``SmallMoleculeTemplateGenerator`` s when that package is installed,
  so ``SystemGenerator(small_molecule_forcefield="gnnff-industry-v0")`` finds it once
  ``gnnff.openmm`` is imported;
- :mod:`gnnff.openmm.cache`: the folder or JSON cache of templates and
  :func:`model_fingerprint`, what identifies a model in its keys.

This package sits below the applications (:mod:`gnnff.app`, :mod:`gnnff.condensed`) and
imports none of them. Its modules import the OpenMM library as ``openmm`` (absolute
imports), never this package.

>>> from openmm import app
>>> generator = GNNFFTemplateGenerator(molecules="ligand.sdf")  # doctest: +SKIP
>>> forcefield = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")  # doctest: +SKIP
>>> forcefield.registerTemplateGenerator(generator.generator)  # doctest: +SKIP
"""

from __future__ import annotations

from gnnff.chem.molecule import molecule_key
from gnnff.openmm.cache import model_fingerprint, open_cache
from gnnff.openmm.generator import GNNFFTemplateGenerator
from gnnff.openmm.templates import FFXML_VERSION, atom_names, ffxml, to_openmm_topology

__all__ = [
    "FFXML_VERSION",
    "GNNFFTemplateGenerator",
    "atom_names",
    "ffxml",
    "model_fingerprint",
    "molecule_key",
    "open_cache",
    "to_openmm_topology",
]
