"""QM reference data: readers, molecule-level splits, cached reference parameters, batches.

Two formats:

- SPICE-layout HDF5 (one group per molecule: ``smiles`` (mapped, explicit H),
  ``atomic_numbers``, ``conformations`` [bohr], ``dft_total_energy`` [hartree],
  optional ``dft_total_gradient`` [hartree/bohr]); a real SPICE file loads as it is.
- The QCArchive-exported multi-record SDF of the shared benchmark: conformers grouped
  by the ``SMILES QCArchive`` property, energies in kcal/mol (``Energy QCArchive``);
  every geometry is a QM minimum, so its reference forces are zero.

All arrays are converted at reading to OpenMM units (nm, kJ/mol, kJ/mol/nm).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from rdkit import Chem
from tqdm import tqdm

from gnnff.chem.features import atom_features
from gnnff.chem.molecule import mol_from_mapped_smiles, molecule_key, prepare
from gnnff.chem.topology import Topology, build_topology
from gnnff.errors import GnnffError, InputError
from gnnff.files import atomic_write_text
from gnnff.mm.energy import nonbonded_pairs
from gnnff.pool import Result, WorkerPool
from gnnff.schema import NONBONDED
from gnnff.units import ANGSTROM_TO_NM, BOHR_TO_NM, HARTREE_TO_KJ, KCAL_TO_KJ

__all__ = [
    "MoleculeData",
    "read_spice_hdf5",
    "read_qcarchive_sdf",
    "read_dataset",
    "DATA_FORMATS",
    "split_by_molecule",
    "drop_broken",
    "drop_high_energy",
    "drop_distorted",
    "ReferenceCache",
    "molecule_key",
    "record_signature",
    "qcarchive_groups",
]

#: Conformer sets whose QM energy spread exceeds this hold broken geometries.
MAX_ENERGY_SPREAD = 62.5 * KCAL_TO_KJ


@dataclass(frozen=True, eq=False)
class MoleculeData:
    """All conformations of one molecule with their QM energies and forces.

    Attributes
    ----------
    key
        Canonical isomeric SMILES without hydrogens: the unit of splitting.
    mol
        Prepared RDKit molecule; atom order is the data's atom order.
    positions
        ``(n_conf, n_atoms, 3)`` nm.
    energies
        ``(n_conf,)`` kJ/mol (absolute; only differences are used).
    forces
        ``(n_conf, n_atoms, 3)`` kJ/mol/nm.
    dataset
        Name of the data set it came from.
    """

    key: str
    mol: Chem.Mol
    positions: np.ndarray
    energies: np.ndarray
    forces: np.ndarray
    dataset: str
    topology: Topology = field(init=False)
    pairs: np.ndarray = field(init=False)
    _features: dict[str, np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        topology = build_topology(self.mol)
        object.__setattr__(self, "topology", topology)
        object.__setattr__(self, "_features", {})
        object.__setattr__(self, "pairs", np.concatenate([np.zeros((0, 2), dtype=np.int64),
                                                          *nonbonded_pairs(topology)]))

    def features(self, version: str = "v0") -> np.ndarray:
        """Atom features (:func:`gnnff.chem.features.atom_features`, feature set ``version``), computed once."""
        if version not in self._features:
            self._features[version] = atom_features(self.mol, version)
        return self._features[version]

    @property
    def n_conformations(self) -> int:
        return int(self.energies.shape[0])


def read_spice_hdf5(path: str | os.PathLike, *, dataset: str | None = None,
                    limit: int | None = None) -> list[MoleculeData]:
    """Read a SPICE-layout HDF5 file (hartree, bohr converted to kJ/mol, nm)."""
    import h5py

    path = Path(path)
    name = dataset or path.stem
    out: list[MoleculeData] = []
    with h5py.File(path, "r") as handle:
        for group_name in tqdm(list(handle)[:limit], desc=f"read {path.name}", unit="mol", disable=None):
            group = handle[group_name]
            label = f"{path.name}:{group_name}"
            smiles = group["smiles"][0]
            smiles = smiles.decode() if isinstance(smiles, bytes) else str(smiles)
            mol = prepare(mol_from_mapped_smiles(smiles, label), label=label)
            z = np.asarray(group["atomic_numbers"])
            if not np.array_equal(z, [a.GetAtomicNum() for a in mol.GetAtoms()]):
                raise InputError(f"{label}: atomic_numbers disagree with the mapped SMILES")
            positions = np.asarray(group["conformations"], dtype=float) * BOHR_TO_NM
            energies = np.asarray(group["dft_total_energy"], dtype=float) * HARTREE_TO_KJ
            if "dft_total_gradient" in group:
                forces = -np.asarray(group["dft_total_gradient"], dtype=float) * HARTREE_TO_KJ / BOHR_TO_NM
            else:
                forces = np.full_like(positions, np.nan)
            out.append(MoleculeData(molecule_key(mol), mol, positions, energies, forces, name))
    return out


def record_signature(mol: Chem.Mol) -> tuple:
    """Atom order and connection table of an SDF record.

    Records that share a ``SMILES QCArchive`` string can list their atoms in different
    orders (they come from different QCArchive data sets); only records with equal
    signatures may be grouped as conformers of one molecule.
    """
    n = mol.GetNumAtoms()
    atoms = tuple(mol.GetAtomWithIdx(i).GetAtomicNum() for i in range(n))
    bonds = sorted(tuple(sorted((mol.GetAtomWithIdx(i).GetIdx(), b.GetOtherAtomIdx(i))))
                   for i in range(n) for b in mol.GetAtomWithIdx(i).GetBonds())
    return atoms, tuple(bonds)


def qcarchive_groups(path: str | os.PathLike, limit: int | None = None) -> list[list[Chem.Mol]]:
    """Raw records of the QCArchive SDF, grouped into molecules by ``SMILES QCArchive``
    and connection table (:func:`record_signature`), in file order; first ``limit`` groups."""
    opener = gzip.open if str(path).endswith(".gz") else open
    groups: dict[tuple, list[Chem.Mol]] = {}
    with opener(path, "rb") as handle:
        for mol in Chem.ForwardSDMolSupplier(handle, removeHs=False, sanitize=False):
            if mol is None:
                continue
            group = (mol.GetProp("SMILES QCArchive"), record_signature(mol))
            if group not in groups:
                if limit is not None and len(groups) >= limit:
                    break
                groups[group] = []
            groups[group].append(mol)
    return list(groups.values())


def read_qcarchive_sdf(path: str | os.PathLike, *, dataset: str | None = None,
                       limit: int | None = None) -> list[MoleculeData]:
    """Read the QCArchive-exported SDF (QM minima; energies kcal/mol; forces zero)."""
    path = Path(path)
    name = dataset or path.name.split(".")[0]
    out = []
    for records in tqdm(qcarchive_groups(path, limit), desc=f"prepare {path.name}", unit="mol", disable=None):
        smiles = records[0].GetProp("SMILES QCArchive")
        mol = prepare(records[0], label=f"{path.name} {smiles}")
        positions = np.stack([r.GetConformer().GetPositions() for r in records]) * ANGSTROM_TO_NM
        energies = np.array([float(r.GetProp("Energy QCArchive")) for r in records]) * KCAL_TO_KJ
        out.append(MoleculeData(molecule_key(mol), mol, positions, energies, np.zeros_like(positions), name))
    return out


DATA_FORMATS = {"spice-hdf5": read_spice_hdf5, "qcarchive-sdf": read_qcarchive_sdf}


def read_dataset(path: str | os.PathLike, *, format: str | None = None, dataset: str | None = None,
                 limit: int | None = None) -> list[MoleculeData]:
    """Read a data set, format from ``format`` or the file name (.h5/.hdf5 vs .sdf[.gz])."""
    path = Path(path)
    if format is None:
        format = "spice-hdf5" if path.suffix in (".h5", ".hdf5") else "qcarchive-sdf"
    if format not in DATA_FORMATS:
        raise InputError(f"{path}: unknown data format '{format}'; known: {', '.join(DATA_FORMATS)}")
    if not path.is_file():
        raise InputError(f"{path}: no such data file")
    return DATA_FORMATS[format](path, dataset=dataset, limit=limit)


def drop_broken(data: Iterable[MoleculeData], max_spread: float = MAX_ENERGY_SPREAD) -> list[MoleculeData]:
    """Molecules whose conformer energy spread is at most ``max_spread`` kJ/mol."""
    return [d for d in data if np.ptp(d.energies) <= max_spread]


def drop_high_energy(data: Iterable[MoleculeData], max_above_minimum: float) -> list[MoleculeData]:
    """Keep conformations within ``max_above_minimum`` kJ/mol of each molecule's lowest."""
    out = []
    for d in data:
        keep = d.energies - d.energies.min() <= max_above_minimum
        if keep.all():
            out.append(d)
        elif keep.sum() >= 2:
            out.append(MoleculeData(d.key, d.mol, d.positions[keep], d.energies[keep], d.forces[keep], d.dataset))
    return out


def drop_distorted(data: Iterable[MoleculeData], bond_factor: float = 1.3, min_contact: float = 0.1
                   ) -> list[MoleculeData]:
    """Keep conformations whose geometry agrees with the bond graph.

    A conformation is dropped when a bond is longer than ``bond_factor`` times the sum
    of covalent radii, or two atoms that are not 1-2 or 1-3 neighbours come closer
    than ``min_contact`` nm (e.g. a proton that moved to another atom during the QM
    optimisation of a charged molecule).
    """
    table = Chem.GetPeriodicTable()
    out = []
    for d in data:
        top = d.topology
        radii = np.array([table.GetRcovalent(int(z)) for z in top.atomic_numbers]) * 0.1  # A -> nm
        x = d.positions
        keep = np.ones(d.n_conformations, dtype=bool)
        if len(top.bonds):
            length = np.linalg.norm(x[:, top.bonds[:, 0]] - x[:, top.bonds[:, 1]], axis=-1)
            keep &= (length <= bond_factor * (radii[top.bonds[:, 0]] + radii[top.bonds[:, 1]])).all(1)
        pairs = np.concatenate([d.pairs, top.pairs_14])
        if len(pairs):
            contact = np.linalg.norm(x[:, pairs[:, 0]] - x[:, pairs[:, 1]], axis=-1)
            keep &= (contact >= min_contact).all(1)
        if keep.all():
            out.append(d)
        elif keep.sum() >= 2:
            out.append(MoleculeData(d.key, d.mol, d.positions[keep], d.energies[keep], d.forces[keep], d.dataset))
    return out


def split_by_molecule(data: Sequence[MoleculeData], fractions: Sequence[float], seed: int
                      ) -> list[list[MoleculeData]]:
    """Split by unique molecule key, reproducibly from ``seed``.

    ``fractions`` (summing to 1) give the share of unique molecules per part.
    """
    keys = sorted({d.key for d in data})
    order = np.random.default_rng(seed).permutation(len(keys))
    bounds = np.round(np.cumsum(fractions) * len(keys)).astype(int)
    part_of = {}
    for rank, k in enumerate(order):
        part_of[keys[k]] = int(np.searchsorted(bounds, rank, side="right"))
    parts: list[list[MoleculeData]] = [[] for _ in fractions]
    for d in data:
        parts[min(part_of[d.key], len(parts) - 1)].append(d)
    return parts


def _mol_id(mol: Chem.Mol) -> str:
    """Identity of a molecule *and* its atom order (mapped SMILES), hashed."""
    copy = Chem.Mol(mol)
    for atom in copy.GetAtoms():
        atom.SetAtomMapNum(atom.GetIdx() + 1)
    return hashlib.sha1(Chem.MolToSmiles(copy).encode()).hexdigest()


def _reference_nonbonded(task: tuple[str, bytes]) -> dict[str, list[float]]:
    """Sage LJ and reference charges of one pickled molecule ({} where Sage fails)."""
    from gnnff.sources.classical import SageSource

    charges, pickled = task
    mol = Chem.Mol(pickled)
    try:
        p = SageSource(charges=charges).parameters(mol, build_topology(mol)).nonbonded
    except GnnffError:
        return {}
    return {f.name: getattr(p, f.name).tolist() for f in NONBONDED.fields()}


def _reference_value(result: Result) -> dict[str, list[float]]:
    """The value of one :func:`_reference_nonbonded` task; an unexpected error stops the run, by molecule."""
    if result.ok:
        return result.value
    smiles = Chem.MolToSmiles(Chem.Mol(result.item[1]))
    raise GnnffError(f"{smiles}: reference charges and Sage Lennard-Jones failed unexpectedly ({result.failure}); "
                     "please report it with this molecule as a gnnff bug")


class ReferenceCache:
    """Reference charges and Lennard-Jones parameters (Sage) per molecule, on disk.

    Computed once per (molecule, atom order, charge method) and kept in a JSON file
    written atomically.
    """

    def __init__(self, path: str | os.PathLike | None, charges: str) -> None:
        self.path = Path(path) if path else None
        self.charges = charges
        self._store: dict[str, dict[str, list[float]]] = {}
        if self.path is not None and self.path.is_file():
            self._store = json.loads(self.path.read_text())

    def get(self, data: Sequence[MoleculeData], workers: int = 1) -> list[dict[str, np.ndarray] | None]:
        """Per molecule: nonbonded field name -> ``(n_atoms,)`` array; None where Sage fails.

        Missing entries are computed in ``workers`` processes and saved.
        """
        keys = [f"{self.charges}:{_mol_id(d.mol)}" for d in data]
        todo = {k: d.mol.ToBinary(Chem.PropertyPickleOptions.AllProps)
                for k, d in zip(keys, data) if k not in self._store}
        if todo:
            tasks = [(self.charges, pickled) for pickled in todo.values()]
            progress = dict(total=len(tasks), desc=f"reference charges ({self.charges}) + Sage LJ",
                            unit="mol", disable=None)
            with WorkerPool(workers if len(tasks) > 1 else 1) as pool:
                values = [_reference_value(result)
                          for result in tqdm(pool.imap(_reference_nonbonded, tasks, chunksize=4), **progress)]
            self._store.update(zip(todo, values))
        out = [{name: np.asarray(v) for name, v in self._store[k].items()} if self._store[k] else None
               for k in keys]
        dirty = bool(todo)
        if dirty and self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps(self._store))
        return out
