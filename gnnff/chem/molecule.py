"""Molecule input: files, SMILES, RDKit and OpenFF molecules -> one prepared RDKit ``Mol``.

Everything that enters gnnff passes through :func:`prepare`, the one place where
the molecule is sanitized, aromaticity and stereochemistry are perceived, hydrogens
are checked or added, and unsupported chemistry (radicals, dummy atoms) is refused.
The returned molecule is a new object; inputs are never modified.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import AllChem

from gnnff.chem._molfiles import (
    SUPPORTED_SUFFIXES,
    Block,
    Unparsable,
    blocks_of,
    count_records,
    find_record,
    parse_smiles,
    record_titles,
    selection_of,
    split_selector,
    suffix_of,
)
from gnnff.errors import ChemistryError, GnnffError, InputError, ParametrizationError, first_line
from gnnff.units import ANGSTROM_TO_NM

__all__ = [
    "SUPPORTED_SUFFIXES",
    "Record",
    "read_records",
    "count_records",
    "record_titles",
    "split_selector",
    "smiles_label",
    "load_molecule",
    "looks_like_path",
    "prepare",
    "positions_nm",
    "with_conformer",
    "name_of",
    "net_charge",
    "components",
    "check_elements",
    "plain_smiles",
]

#: Above this many atoms (proteins, polymers) :func:`prepare` keeps the input's stereo
#: tags instead of perceiving stereochemistry: RDKit's perception ranks atoms over the
#: whole molecule, quadratic in its size (about 30 s for a 100,000-atom peptide, more than
#: the rest of parametrization), and no force-field parameter depends on it.
STEREO_PERCEPTION_MAX_ATOMS = 5000

#: Above this many atoms :func:`prepare` turns aromatic bonds into a Kekulé form one
#: aromatic system at a time before sanitizing: RDKit's Kekulize of a whole molecule costs
#: time proportional to its size for every aromatic system in it, quadratic for a protein
#: (3.7 s of a 100,000-atom peptide read from a sequence or a mol2 file; 0.65 s this way,
#: the same bonds). Below it a molecule is sanitized as given.
KEKULIZE_BY_SYSTEM_MIN_ATOMS = 5000


@dataclass(frozen=True)
class Record:
    """One molecule of an input, or the reason it could not be read.

    Attributes
    ----------
    index
        1-based position of the record in its input.
    label
        How messages name it, e.g. ``"mols.sdf record 3 ('aspirin')"``.
    mol
        The prepared molecule (see :func:`prepare`), or None if ``error`` is set.
    error
        The error met while reading or preparing the record.
    title
        The record's own name: its SD title line, MOL2 molecule name or SMILES-file
        name column; empty when it has none.
    """

    index: int
    label: str
    mol: Chem.Mol | None = None
    error: GnnffError | None = None
    title: str = ""


#: Suffixes that make a string a file name rather than a SMILES (read or refused by name).
_FILE_LIKE_SUFFIXES = frozenset(SUPPORTED_SUFFIXES) | {
    ".pdb", ".xyz", ".cif", ".mmcif", ".txt", ".csv", ".gz", ".json", ".xml", ".mae", ".sd",
}


def looks_like_path(text: str) -> bool:
    """Whether ``text`` names a file rather than a SMILES string.

    A file: it exists, has a molecule-file suffix, selects a record of one
    (``ligands.sdf:3``, :func:`split_selector`), starts like a path (``/``, ``./``,
    ``../``, ``~``), or lies in an existing folder. ``/`` alone does not make a path:
    SMILES use it for double-bond stereo (``C/C=C/C``).
    """
    if not text.strip():
        return False
    path = Path(text)
    try:
        if path.exists() or suffix_of(path) in _FILE_LIKE_SUFFIXES or split_selector(text)[1] is not None:
            return True
        if text.startswith(("/", "./", "../", "~", ".\\", "..\\")):
            return True
        return os.sep in text and path.parent.is_dir()
    except (OSError, ValueError):  # a long SMILES is "too long" for a file name; NUL bytes
        return False


def smiles_label(smiles: str, name: str | None = None) -> str:
    """How messages name a SMILES string given as input: ``name`` if given, else
    ``SMILES 'CCO'``."""
    return name if name and name != smiles else f"SMILES '{smiles}'"


def _record_label(path: Path, index: int, name: str) -> str:
    label = f"{path.name} record {index}"
    return f"{label} ('{name}')" if name else label


def _record(path: Path, index: int, block: Block) -> Record:
    """The :class:`Record` of ``block``: parsed and prepared, or with the error met."""
    label = _record_label(path, index, block.shown or block.title)
    try:
        try:
            mol = block.parse()
        except Unparsable as err:
            raise InputError(f"{label}: {err}") from None
        return Record(index, label, mol=prepare(mol, label=label), title=block.title)
    except GnnffError as err:
        return Record(index, label, error=err, title=block.title)


def read_records(path: str | os.PathLike, *, record: int | str | None = None) -> Iterator[Record]:
    """Read every molecule of a file, lazily, one :class:`Record` each.

    The file is streamed: one record's text is in memory at a time, so a library of
    millions of molecules can be read. A record that cannot be read or prepared is
    yielded with its ``error`` set, so a batch can go on past it. Problems with the file
    as a whole (missing, unreadable, unsupported format, no molecule in it) raise
    :class:`InputError`.

    Parameters
    ----------
    path
        The file; ``FILE:N`` or ``FILE:NAME`` reads only the record it selects
        (:func:`split_selector`).
    record
        Read only this record: its 1-based number (int) or its title (str). A number
        past the end, a title no record or several records have, is an InputError
        listing the file's records.
    """
    path, record = selection_of(path, record)
    if record is not None:
        yield _record(path, *find_record(path, record))
        return
    for index, block in enumerate(blocks_of(path), start=1):
        yield _record(path, index, block)


def load_molecule(molecule: Any, *, name: str | None = None, record: int | str | None = None) -> Chem.Mol:
    """Turn any supported input into one prepared RDKit molecule.

    Parameters
    ----------
    molecule
        An RDKit ``Mol``, an OpenFF ``Molecule``, a path to a molecule file (see
        :data:`SUPPORTED_SUFFIXES`) holding one molecule or with a record selected
        (``ligands.sdf:3``, ``ligands.sdf:lig_1``: :func:`split_selector`), or a SMILES
        string.
    name
        Name used in messages and stored as the molecule's ``_Name``.
    record
        For a file of several molecules: the one to read, by 1-based record number
        (int) or title (str; :attr:`Record.title`).

    Raises
    ------
    InputError
        The input cannot be read, or a file holds several molecules and none is
        selected (the message says how to pick one and lists the first records).
    ChemistryError
        As :func:`prepare`.
    """
    is_text = isinstance(molecule, (str, os.PathLike))
    if record is not None and not (is_text and looks_like_path(os.fspath(molecule))):
        what = smiles_label(os.fspath(molecule), name) if is_text else f"the {type(molecule).__name__}"
        raise InputError(f"{what}: record={record!r} selects a record of a molecule file, and this input is "
                         "not one; leave record out")
    if isinstance(molecule, Chem.Mol):
        label = name or (molecule.GetProp("_Name") if molecule.HasProp("_Name") else "") or "molecule"
        return prepare(molecule, label=label)
    if type(molecule).__module__.startswith("openff.toolkit"):
        label = name or getattr(molecule, "name", "") or "molecule"
        try:
            rdmol = molecule.to_rdkit()
        except Exception as err:  # the toolkit raises many types; report them as one
            raise InputError(f"{label}: cannot convert the OpenFF Molecule to RDKit ({first_line(err)}); "
                             "pass it as an RDKit Mol or a molecule file instead") from None
        return prepare(rdmol, label=label)
    if is_text:
        text = os.fspath(molecule)
        if not text.strip():
            raise InputError("empty input: give a molecule file or a SMILES string")
        if looks_like_path(text):
            path, selected = selection_of(text, record)
            found = _record(path, *find_record(path, selected))
            if found.error is not None:
                raise found.error
            if name:
                found.mol.SetProp("_Name", name)
            return found.mol
        label = smiles_label(text, name)
        try:
            return prepare(parse_smiles(text, name or text, quote=label != smiles_label(text)), label=label)
        except Unparsable as err:
            raise InputError(f"{label}: {err}") from None
    raise InputError(
        f"input of type {type(molecule).__name__}: gnnff cannot read a molecule from it; pass an RDKit Mol, "
        "an OpenFF Molecule, a SMILES string or a file path"
    )


def prepare(mol: Chem.Mol, *, label: str) -> Chem.Mol:
    """Sanitize and check a molecule; return a new, prepared copy.

    Aromaticity (RDKit model) and stereochemistry (from 3D coordinates when there
    are some; not above :data:`STEREO_PERCEPTION_MAX_ATOMS` atoms) are perceived here
    and nowhere else. Hydrogens: a molecule without 3D
    coordinates gets its implicit hydrogens made explicit; a 3D molecule must list
    all of them.

    Raises
    ------
    ChemistryError
        Sanitization fails, a radical, a dummy atom, or missing hydrogens in 3D.
    """
    mol = Chem.Mol(mol)
    if mol.GetNumAtoms() == 0:
        raise ChemistryError(f"{label}: the molecule has no atoms; give a molecule with at least one atom")
    if mol.GetNumAtoms() > KEKULIZE_BY_SYSTEM_MIN_ATOMS:
        mol = _kekulized_by_system(mol)
    try:
        with rdBase.BlockLogs():
            Chem.SanitizeMol(mol)
    except Exception as err:  # RDKit raises several sanitization exception types
        raise ChemistryError(f"{label}: RDKit cannot sanitize the molecule ({first_line(err)}); "
                             "fix the bond orders, charges or hydrogens of the atoms it names") from None
    atoms = [mol.GetAtomWithIdx(i) for i in range(mol.GetNumAtoms())]  # O(1) index access
    for atom in atoms:
        where = f"{label}: atom {atom.GetIdx()} ({atom.GetSymbol()})"
        if atom.GetAtomicNum() == 0:
            raise ChemistryError(f"{where} is a dummy atom; replace it by a real element")
        if atom.GetNumRadicalElectrons():
            raise ChemistryError(
                f"{where} has {atom.GetNumRadicalElectrons()} unpaired electron(s); "
                "radicals are not supported, add the missing hydrogens or charge"
            )
    has_3d = mol.GetNumConformers() > 0 and mol.GetConformer().Is3D() and not _all_at_one_point(mol)
    # hydrogens counted on an atom but not present as atoms: implicit ones and bracket
    # counts such as [NH4+] (RDKit calls those explicit, though no H atom exists)
    missing = [a for a in atoms if a.GetTotalNumHs(includeNeighbors=False) > 0]
    if missing and has_3d:
        atom = missing[0]
        raise ChemistryError(
            f"{label}: atom {atom.GetIdx()} ({atom.GetSymbol()}) lacks {atom.GetTotalNumHs(includeNeighbors=False)} "
            f"hydrogen(s) ({len(missing)} atoms do); a 3D input must list every hydrogen, "
            "add them with coordinates (e.g. RDKit AddHs(addCoords=True))"
        )
    if not has_3d:
        mol.RemoveAllConformers()
        if missing:
            mol = Chem.AddHs(mol)
    if mol.GetNumAtoms() <= STEREO_PERCEPTION_MAX_ATOMS:  # larger: the input's tags are kept
        if has_3d:
            Chem.AssignStereochemistryFrom3D(mol)
        else:
            Chem.AssignStereochemistry(mol, cleanIt=True, force=True)
    if not mol.HasProp("_Name") or not mol.GetProp("_Name").strip():
        mol.SetProp("_Name", label)
    return mol


def _aromatic_systems(mol: Chem.Mol) -> list[list[int]]:
    """Atom indices (sorted) of each connected system of aromatic bonds (none: empty)."""
    from gnnff.chem.features import bond_components

    aromatic = [bond for i in range(mol.GetNumAtoms()) for bond in mol.GetAtomWithIdx(i).GetBonds()
                if bond.GetOtherAtomIdx(i) > i and bond.GetBondType() == Chem.BondType.AROMATIC]
    return [sorted({i for b in group for i in (b.GetBeginAtomIdx(), b.GetEndAtomIdx())})
            for group in bond_components(mol.GetNumAtoms(), aromatic)]


def _kekulized_by_system(mol: Chem.Mol) -> Chem.Mol:
    """``mol`` with its aromatic bonds in a Kekulé form, found for each aromatic system on
    a small molecule of that system and its neighbours (bond types, charges and hydrogen
    counts as in ``mol``), aromatic flags cleared; sanitizing it then re-perceives
    aromaticity as for ``mol``. Returns ``mol`` itself when it has no aromatic bond or a
    system cannot be kekulized (sanitizing ``mol`` then reports it)."""
    try:
        mol.UpdatePropertyCache(strict=False)
        systems = _aromatic_systems(mol)
        if not systems:
            return mol
        out = Chem.RWMol(mol)
        for system in systems:
            inside = set(system)
            shell = sorted({n.GetIdx() for i in system for n in mol.GetAtomWithIdx(i).GetNeighbors()} - inside)
            index = {a: k for k, a in enumerate(system + shell)}
            part = Chem.RWMol()
            for a in system + shell:
                source = mol.GetAtomWithIdx(a)
                atom = Chem.Atom(source.GetAtomicNum())
                atom.SetFormalCharge(source.GetFormalCharge())
                atom.SetNoImplicit(True)
                if a in inside:  # the neighbours only hold their bonds to the system
                    atom.SetNumExplicitHs(source.GetTotalNumHs(includeNeighbors=False))
                    atom.SetNumRadicalElectrons(source.GetNumRadicalElectrons())
                    atom.SetIsAromatic(source.GetIsAromatic())
                part.AddAtom(atom)
            pairs = []
            for a in system:
                for bond in mol.GetAtomWithIdx(a).GetBonds():
                    b = bond.GetOtherAtomIdx(a)
                    if b in inside and b < a:
                        continue
                    part.AddBond(index[a], index[b], bond.GetBondType())
                    part.GetBondBetweenAtoms(index[a], index[b]).SetIsAromatic(
                        bond.GetBondType() == Chem.BondType.AROMATIC)
                    pairs.append((a, b))
            part.UpdatePropertyCache(strict=False)
            with rdBase.BlockLogs():
                Chem.Kekulize(part, clearAromaticFlags=True)
            for a, b in pairs:  # bonds by their atoms: RDKit's GetBondWithIdx is O(n)
                bond = out.GetBondBetweenAtoms(a, b)
                bond.SetBondType(part.GetBondBetweenAtoms(index[a], index[b]).GetBondType())
                bond.SetIsAromatic(False)
            for a in system:
                out.GetAtomWithIdx(a).SetIsAromatic(False)
        return out.GetMol()
    except Exception:  # noqa: BLE001 - RDKit raises several types; the whole-molecule sanitization reports it
        return mol


def _all_at_one_point(mol: Chem.Mol) -> bool:
    """Whether every atom of the first conformer sits at one point: exporters write such
    placeholder coordinates (all zero) when a record has none; they are read as no coordinates."""
    positions = mol.GetConformer().GetPositions()
    return len(positions) > 1 and bool(np.all(np.ptp(positions, axis=0) < 1e-6))


def components(mol: Chem.Mol) -> list[tuple[np.ndarray, Chem.Mol]]:
    """Connected components (salt ions, solvent, co-crystal partners) of a prepared molecule.

    Returns
    -------
    list of (indices, component)
        ``indices``: ``(n,)`` atom indices of the component in ``mol``, ascending;
        ``component``: a new prepared molecule of those atoms in that order, with
        ``mol``'s conformers and name. A connected molecule gives one entry.
    """
    groups = [np.array(sorted(group), dtype=np.int64) for group in Chem.GetMolFrags(mol)]
    if len(groups) == 1:
        return [(groups[0], Chem.Mol(mol))]
    name = mol.GetProp("_Name") if mol.HasProp("_Name") else ""
    parts, mapping = [], []
    with rdBase.BlockLogs():
        pieces = Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=True, fragsMolAtomMapping=mapping)
    for piece, order in zip(pieces, mapping):
        order = np.asarray(order, dtype=np.int64)
        if np.any(np.diff(order) < 0):  # keep the input's atom order inside the component
            rank = np.argsort(order)
            piece, order = Chem.RenumberAtoms(piece, rank.tolist()), order[rank]
        piece.SetProp("_Name", name)
        parts.append((order, piece))
    return sorted(parts, key=lambda part: int(part[0][0]))


def name_of(mol: Chem.Mol, default: str = "molecule") -> str:
    """The molecule's name (``_Name``: SD title, MOL2 name, SMILES file column), or
    ``default`` when it has none or an empty one."""
    return (mol.GetProp("_Name") if mol.HasProp("_Name") else "") or default


def net_charge(mol: Chem.Mol) -> int:
    """Net charge of a molecule: the sum of its formal charges."""
    return sum(mol.GetAtomWithIdx(i).GetFormalCharge() for i in range(mol.GetNumAtoms()))


def positions_nm(mol: Chem.Mol) -> np.ndarray:
    """Coordinates of every conformer, shape ``(n_conformers, n_atoms, 3)``, in nm."""
    if mol.GetNumConformers() == 0:
        return np.zeros((0, mol.GetNumAtoms(), 3))
    return np.stack([c.GetPositions() for c in mol.GetConformers()]) * ANGSTROM_TO_NM


def with_conformer(mol: Chem.Mol, *, seed: int = 0xF00D) -> Chem.Mol:
    """Return a copy that has at least one 3D conformer (ETKDG embedding if needed)."""
    if mol.GetNumConformers() > 0 and mol.GetConformer().Is3D():
        return Chem.Mol(mol)
    out = Chem.Mol(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    if AllChem.EmbedMolecule(out, params) != 0:
        params.useRandomCoords = True
        if AllChem.EmbedMolecule(out, params) != 0:
            name = mol.GetProp("_Name") if mol.HasProp("_Name") else "molecule"
            raise ChemistryError(f"{name}: RDKit could not embed a 3D conformer; supply 3D coordinates")
    return out


def check_elements(mol: Chem.Mol, allowed: frozenset[int], *, label: str, owner: str,
                   ions_only: frozenset[int] = frozenset(), shipped: frozenset[int] | None = None) -> None:
    """Raise ParametrizationError naming the first atom whose element ``owner`` does not cover
    (the message lists the elements, those of ``ions_only`` apart: covered as monatomic ions only).
    ``shipped``: the elements that some model shipped with gnnff covers; for an element outside
    it the advice is to leave the molecule out or train a model, not to pick another model."""
    table = Chem.GetPeriodicTable()
    for i in range(mol.GetNumAtoms()):
        atom = mol.GetAtomWithIdx(i)
        if atom.GetAtomicNum() not in allowed:
            known = " ".join(table.GetElementSymbol(z) for z in sorted(allowed - ions_only))
            if allowed & ions_only:
                ions = " ".join(table.GetElementSymbol(z) for z in sorted(allowed & ions_only))
                known += f" ({ions} as monatomic ions)"
            if shipped is not None and atom.GetAtomicNum() not in shipped:
                advice = (f"no model shipped with gnnff covers {atom.GetSymbol()}: leave the molecule out, or "
                          f"train a model on data with {atom.GetSymbol()} (`gnnff train`)")
            else:
                advice = (f"leave the molecule out or use a model that covers {atom.GetSymbol()} "
                          "(`gnnff models` lists each model's elements)")
            raise ParametrizationError(
                f"{label}: atom {i} ({atom.GetSymbol()}) is an element {owner} does not cover; "
                f"supported: {known}; {advice}"
            )


def molecule_key(mol: Chem.Mol) -> str:
    """Canonical isomeric SMILES without hydrogens: the identity used for data splits and
    label files."""
    return Chem.MolToSmiles(Chem.RemoveHs(mol, sanitize=False), isomericSmiles=True)


def plain_smiles(smiles: str) -> str | None:
    """Canonical SMILES without hydrogens, stereochemistry or atom maps (None if RDKit
    cannot read it): one molecule's identity however it is written or mapped, the key by
    which benchmark molecules are held out of training sets."""
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None
    for atom in mol.GetAtoms():
        atom.SetAtomMapNum(0)
    return Chem.MolToSmiles(Chem.RemoveHs(mol), isomericSmiles=False)


def mapped_smiles(mol: Chem.Mol) -> str:
    """SMILES with every atom (hydrogens included) mapped to its index + 1: the molecule
    and its atom order in one string."""
    copy = Chem.Mol(mol)
    for atom in copy.GetAtoms():
        atom.SetAtomMapNum(atom.GetIdx() + 1)
    return Chem.MolToSmiles(copy, isomericSmiles=True, allHsExplicit=True)


def mol_from_mapped_smiles(smiles: str, label: str) -> Chem.Mol:
    """The molecule of a SMILES whose atoms are all mapped 1..N, in map-number order, maps
    cleared (not prepared)."""
    params = Chem.SmilesParserParams()
    params.removeHs = False
    mol = Chem.MolFromSmiles(smiles, params)
    if mol is None:
        raise InputError(f"{label}: RDKit cannot parse SMILES '{smiles}'; check its syntax")
    maps = [a.GetAtomMapNum() for a in mol.GetAtoms()]
    if sorted(maps) != list(range(1, mol.GetNumAtoms() + 1)):
        raise InputError(f"{label}: SMILES '{smiles}' does not map every atom 1..N; "
                         "map each atom to give the atom order")
    order = [maps.index(i + 1) for i in range(mol.GetNumAtoms())]
    mol = Chem.RenumberAtoms(mol, order)
    for atom in mol.GetAtoms():
        atom.SetAtomMapNum(0)
    return mol
