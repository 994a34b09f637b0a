"""Bespoke fine-tuning: a base model's valence terms tuned on torsion drives of a series.

``gnnff finetune ligands.sdf -o series.pt`` does, for every ligand:

1. **Labels** (resumable, one file per scan under ``WORK/labels/``): a constrained torsion
   drive (:mod:`gnnff.train.scan`) of each rotatable bond that matters
   (:func:`~gnnff.train.scan.rotatable_torsions`: central and ring-substituent torsions,
   one per symmetry-unique bond) with the labeler, the labeler's energies and forces at
   each optimised point, and ``samples`` off-equilibrium geometries per fitted point
   (Gaussian displacements of every atom) with their energies and forces.
2. **Split**: every ``hold_out``-th grid point of each scan (starting at the second) is
   held out; the others and their samples are fitted. With ``hold_out_scans``, a
   molecule's last scan (when it has two or more) is held out whole.
3. **Fit**: only the heads of the valence terms (bonds, angles, proper and improper
   torsions, Urey-Bradley when the model has it) are trained; the message-passing trunk
   and the nonbonded head stay frozen, so charges and Lennard-Jones are the base model's
   for every molecule (condensed-phase behaviour does not move). Loss, full batch, Adam:
   ``w_P MSE(E_MM(relaxed) - E_ref)_scan + w_E MSE(E - <E>_mol) + w_F MSE(F)
   + sum_p w_p ((p - p_base) / scale_p)^2 / n_mol`` (kcal/mol, kcal/mol/A). The first term is
   the profile the report measures: each fitted grid point minimised with the current
   parameters (dihedral restrained), its MM energy against the labeler's, both relative
   to the scan's mean; geometries refreshed every ``relax_every`` steps (ForceBalance's
   treatment of optimised-geometry targets). The next two are the labeler's energies and
   forces at its own geometries and samples. The last pulls toward the base model's own
   parameters of the series (bond/angle force constants as log ratios, lengths in
   0.002 nm, angles in 2 degrees, torsion barriers in kcal/mol), per molecule, with
   weight ``pull`` on the proper torsions about the driven bonds (what the scans inform)
   and ``anchor`` on every other valence parameter (what they do not: ring torsions,
   bonds and angles stay where the base model, trained on DFT, put them).
4. **Checkpoint**: the base checkpoint's network and domain with the tuned heads, plus a
   ``finetune`` record (base model, labeler, molecules, scans, settings, metrics). Loading
   it (:class:`gnnff.sources.gnn.GNNSource`) warns for a molecule whose Morgan
   fingerprint is less similar than ``similarity`` (Tanimoto) to every series molecule.
5. **Report** (``WORK/report/``): one PNG per scan (labeler, base, tuned; held-out points
   marked), ``scans.csv`` (RMSE of the base and tuned profiles on fitted and held-out
   points), ``summary.json`` (the same, the timing split, the failures).

Profiles compare as in ``gnnff scan``: each force field's System minimised with the
dihedral constrained at the labeler's geometries, each profile relative to its minimum.

One module per job: :mod:`.settings` (the run's choices), :mod:`.labels` (select the
torsions, label them, in worker processes), :mod:`.targets` (what the fit sees),
:mod:`.fitting` (:func:`fit`, with its pull to the base model), :mod:`.evaluate` (profiles of the
base and tuned models), :mod:`.report` (plots, tables, summary) and :mod:`.pipeline`
(:func:`finetune`, which runs them in turn).
"""

from __future__ import annotations

from gnnff.train.finetune.fitting import PULL_SCALES, fit, valence_heads
from gnnff.train.finetune.labels import (PRUNE_RMS, ConformerLabels, ScanLabels, conformer_path, embedded_conformers,
                                         label_conformers, label_molecule, labelled)
from gnnff.train.finetune.pipeline import finetune
from gnnff.train.finetune.settings import DEFAULT_ENERGIES, TUNES, FinetuneSettings
from gnnff.train.finetune.targets import Profile, driven_corrections, driven_rows, fitted_scans

__all__ = ["FinetuneSettings", "TUNES", "DEFAULT_ENERGIES", "ScanLabels", "ConformerLabels", "Profile", "driven_rows",
           "driven_corrections", "finetune", "fitted_scans", "label_molecule", "label_conformers",
           "embedded_conformers", "fit", "valence_heads", "PULL_SCALES", "PRUNE_RMS", "conformer_path", "labelled"]
