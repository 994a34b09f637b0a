"""Select the held-out torsion drives of ``benchmarks/data/torsion-drives-v1.json``.

    python benchmarks/gas_phase/make_torsion_drives.py [--check]

Molecules come from two experimental data sets gnnff never trains on: FreeSolv
(``freesolv-dev.csv``) and the components of Sage's physical-property set
(``sage-physprop-train-v1.csv``). The held-out rule (:func:`held_out`), written down:

1. Every molecule of every training source is reduced to its neutral parent (largest
   fragment, uncharged; RDKit ``ChargeParent``) and written as canonical isomeric SMILES.
   Training sources: the whole shared industry set (``industry-benchmark-dev.sdf.gz``, all
   of it, not just a training split), the SPICE lists (``spice-pubchem-sets1-6.smi.gz``,
   ``spice-des-monomers.smi``, ``spice-dipeptides.smi``), every ``recipes/*/*.smi`` and the
   molecules of ``recipes/v1/labels.jsonl.gz``.
2. A candidate is held out when its neutral parent is none of those SMILES AND its Morgan
   fingerprint (radius 2, 2,048 bits, :func:`gnnff.chem.similarity.fingerprint`) has a
   Tanimoto similarity below 0.9 to every training molecule's.

Drives: the torsions of :func:`gnnff.train.scan.rotatable_torsions` (heavy-atom rotatable
bonds; methyl, hydroxyl and amine end rotors are not driven) less CF3-like rotors
(:func:`symmetric_rotor`), each classed by the
chemistry of its central bond (:data:`BOND_CLASSES`, first match wins). Chosen
deterministically: candidates are ordered by a hash of their SMILES, then taken round-robin
over the bond classes (drug-like classes first), one drive per molecule, until each group
is full:

- ``dft``: neutral molecules of H C N O F S Cl with at most 12 heavy atoms; geometries
  from ANI-2x, energies B3LYP-D3BJ/DZVP single points (level
  ``B3LYP-D3BJ/DZVP//ANI-2x``);
- ``ani-1ccx``: neutral H C N O molecules;
- ``ani-2x``: neutral molecules with S, F or Cl (and H C N O).

Writes the drive file and ``torsion-drives-v1-heldout.smi`` (the held-out molecules'
canonical SMILES, for training-data builders to exclude). ``--check`` recomputes the
selection and fails when the committed file differs.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import json
import sys
from pathlib import Path

from rdkit import Chem, DataStructs, RDLogger
from rdkit.Chem.MolStandardize import rdMolStandardize

from gnnff.chem.similarity import fingerprint

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "benchmarks" / "data" / "torsion-drives-v1.json"
HELD_OUT = ROOT / "benchmarks" / "data" / "torsion-drives-v1-heldout.smi"
SIMILARITY_LIMIT = 0.9
DFT_MAX_HEAVY = 12
MAX_HEAVY = 24
MAX_ROTATABLE = 6
#: chosen molecules are this dissimilar to each other (Morgan-2 Tanimoto below it)
DIVERSITY_LIMIT = 0.4
#: drives per group (the benchmark's level labels follow LEVELS)
TARGETS = {"dft": 12, "ani-1ccx": 20, "ani-2x": 16}
LEVELS = {"dft": "B3LYP-D3BJ/DZVP//ANI-2x", "ani-1ccx": "ANI-1ccx", "ani-2x": "ANI-2x"}
ANI1CCX = {1, 6, 7, 8}
ANI2X = {1, 6, 7, 8, 9, 16, 17}

#: Central-bond classes, as SMARTS whose atoms mapped 1 and 2 are the central bond's (either
#: direction), in priority order: drug-like classes first.
BOND_CLASSES = (
    ("amide", "[CX3:1](=O)-[NX3:2]"),
    ("sulfonyl", "[SX4:1](=O)(=O)-[*:2]"),
    ("ester", "[CX3:1](=O)-[OX2:2]"),
    ("biaryl", "[a:1]-[a:2]"),
    ("aryl-ether", "[a:1]-[OX2:2]"),
    ("aryl-nitro", "[a:1]-[NX3:2](=O)~O"),
    ("aniline", "[a:1]-[NX3:2]"),
    ("aryl-thioether", "[a:1]-[SX2:2]"),
    ("aryl-carbonyl", "[a:1]-[CX3:2]=O"),
    ("conjugated", "[*:1](=*)-[*:2]=*"),
    ("aryl-alkyl", "[a:1]-[CX4:2]"),
    ("ether", "[CX4:1]-[OX2:2]"),
    ("amine", "[CX4:1]-[NX3;!$(N=O):2]"),
    ("thioether", "[CX4:1]-[SX2:2]"),
    ("carbonyl-alkyl", "[CX3:1](=O)-[CX4:2]"),
    ("alkyl", "[CX4:1]-[CX4:2]"),
)


def neutral_parent(mol: Chem.Mol) -> Chem.Mol:
    """Largest fragment, uncharged where possible (RDKit ChargeParent); the molecule itself
    where the standardiser cannot kekulize it."""
    try:
        return rdMolStandardize.ChargeParent(mol)
    except Chem.rdchem.MolSanitizeException:
        return mol


def parent_key(smiles: str) -> tuple[str, object] | None:
    """Canonical isomeric SMILES of the neutral parent and its fingerprint; None if unreadable."""
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None
    for atom in mol.GetAtoms():
        atom.SetAtomMapNum(0)
    parent = neutral_parent(mol)
    return Chem.MolToSmiles(parent), fingerprint(parent)


def _industry_smiles(path: Path) -> set[str]:
    found, take = set(), False
    with gzip.open(path, "rt") as handle:
        for line in handle:
            if take:
                found.add(line.strip())
                take = False
            take = line.startswith(">") and "<SMILES QCArchive>" in line
    return found


def _smi_lines(path: Path) -> set[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        return {line.split()[0] for line in handle if line.strip() and not line.startswith("#")}


def training_smiles() -> dict[str, set[str]]:
    """Raw SMILES of every training source, by source name."""
    sources = {"industry-benchmark-dev": _industry_smiles(SHARED / "industry-benchmark-dev.sdf.gz")}
    for name in ("spice-pubchem-sets1-6.smi.gz", "spice-des-monomers.smi", "spice-dipeptides.smi"):
        sources[name] = _smi_lines(SHARED / name)
    for path in sorted((ROOT / "recipes").glob("*/*.smi")):
        sources[str(path.relative_to(ROOT))] = _smi_lines(path)
    labels = ROOT / "recipes" / "v1" / "labels.jsonl.gz"
    with gzip.open(labels, "rt") as handle:
        sources[str(labels.relative_to(ROOT))] = {json.loads(line)["input"] for line in handle}
    return sources


class TrainingSet:
    """Neutral-parent SMILES and fingerprints of the training molecules."""

    def __init__(self, sources: dict[str, set[str]]) -> None:
        keys = {}
        for smiles in set().union(*sources.values()):
            key = parent_key(smiles)
            if key is not None:
                keys.setdefault(key[0], key[1])
        self.smiles = set(keys)
        self.fingerprints = list(keys.values())

    def nearest(self, fp) -> float:
        return max(DataStructs.BulkTanimotoSimilarity(fp, self.fingerprints))


def held_out(smiles: str, training: TrainingSet) -> tuple[bool, float]:
    """Whether ``smiles`` passes the held-out rule, and its nearest training similarity."""
    key = parent_key(smiles)
    if key is None:
        return False, 1.0
    if key[0] in training.smiles:
        return False, 1.0
    nearest = training.nearest(key[1])
    return nearest < SIMILARITY_LIMIT, nearest


def candidate_smiles() -> list[tuple[str, str, str]]:
    """(SMILES, source, name) of FreeSolv and the physical-property components, first seen first."""
    out, seen = [], set()
    with open(SHARED / "freesolv-dev.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            out.append((row["smiles"], f"freesolv-dev:{row['id']}", row["name"]))
    with open(SHARED / "sage-physprop-train-v1.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            for column in ("Component 1", "Component 2"):
                if row[column]:
                    out.append((row[column], "sage-physprop-train-v1", row[column]))
    unique = []
    for smiles, source, name in out:
        key = parent_key(smiles)
        if key is not None and key[0] not in seen:
            seen.add(key[0])
            unique.append((smiles, source, name))
    return unique


def bond_class(mol: Chem.Mol, torsion: tuple[int, ...]) -> str:
    """The first of :data:`BOND_CLASSES` matching the torsion's central bond; "other" for none."""
    central = {tuple(torsion[1:3]), tuple(torsion[2:0:-1])}
    for name, smarts in BOND_CLASSES:
        pattern = Chem.MolFromSmarts(smarts)
        ends = [a.GetIdx() for a in pattern.GetAtoms() if a.GetAtomMapNum() in (1, 2)]
        for match in mol.GetSubstructMatches(pattern, uniquify=False):
            if (match[ends[0]], match[ends[1]]) in central:
                return name
    return "other"


def symmetric_rotor(mol: Chem.Mol, torsion: tuple[int, ...]) -> bool:
    """Whether either central atom is an sp3 atom whose other neighbours are all terminal
    atoms of one element (CF3, CCl3: a methyl-like rotor that moves only its end atoms)."""
    j, k = torsion[1], torsion[2]
    for centre, other in ((j, k), (k, j)):
        atom = mol.GetAtomWithIdx(centre)
        ends = [n for n in atom.GetNeighbors() if n.GetIdx() != other]
        if (atom.GetHybridization() == Chem.HybridizationType.SP3 and all(n.GetDegree() == 1 for n in ends)
                and len({n.GetAtomicNum() for n in ends}) == 1):
            return True
    return False


def group_of(mol: Chem.Mol) -> list[str]:
    """The groups a molecule may serve, by its elements and size (empty: none)."""
    if Chem.GetFormalCharge(mol) != 0 or any(a.GetNumRadicalElectrons() for a in mol.GetAtoms()):
        return []
    elements = {a.GetAtomicNum() for a in mol.GetAtoms()}
    heavy = mol.GetNumHeavyAtoms()
    groups = []
    if elements <= ANI2X and heavy <= DFT_MAX_HEAVY:
        groups.append("dft")
    if elements <= ANI1CCX:
        groups.append("ani-1ccx")
    elif elements <= ANI2X:
        groups.append("ani-2x")
    return groups


def mapped_smiles(mol: Chem.Mol) -> str:
    """SMILES with every atom (hydrogens explicit) mapped to its index + 1: the atom order of the drive."""
    copy = Chem.Mol(mol)
    for atom in copy.GetAtoms():
        atom.SetAtomMapNum(atom.GetIdx() + 1)
    return Chem.MolToSmiles(copy)


def candidates(training: TrainingSet) -> list[dict]:
    """Eligible molecules with their drivable torsions, in hash order."""
    from gnnff.train.scan import rotatable_torsions

    out = []
    for smiles, source, name in candidate_smiles():
        ok, nearest = held_out(smiles, training)
        if not ok:
            continue
        mol = Chem.AddHs(neutral_parent(Chem.MolFromSmiles(smiles)))
        groups = group_of(mol)
        torsions = [t for t in rotatable_torsions(mol) if not symmetric_rotor(mol, t)]
        if not groups or not torsions or mol.GetNumHeavyAtoms() > MAX_HEAVY or len(torsions) > MAX_ROTATABLE:
            continue
        out.append({"smiles": Chem.MolToSmiles(Chem.RemoveHs(mol)), "mol": mol, "source": source, "name": name,
                    "groups": groups, "nearest_training_tanimoto": round(nearest, 3),
                    "torsions": [(t, bond_class(mol, t)) for t in torsions]})
    return sorted(out, key=lambda c: hashlib.sha256(c["smiles"].encode()).hexdigest())


def select(pool: list[dict]) -> list[dict]:
    """Round-robin over bond classes, one drive per molecule, groups filled in :data:`TARGETS`
    order; a molecule with Tanimoto >= :data:`DIVERSITY_LIMIT` to one already chosen is passed over."""
    chosen, fingerprints = [], []

    def fits(c: dict, group: str) -> bool:
        if group not in c["groups"] or any(d["smiles"] == c["smiles"] for d in chosen):
            return False
        fp = fingerprint(c["mol"])
        return not fingerprints or max(DataStructs.BulkTanimotoSimilarity(fp, fingerprints)) < DIVERSITY_LIMIT

    for group, target in TARGETS.items():
        taken = 0
        while taken < target:
            progress = False
            for name in [name for name, _ in BOND_CLASSES] + ["other"]:
                pick = next(((c, t) for c in pool if fits(c, group) for t, cls in c["torsions"] if cls == name), None)
                if pick is None or taken == target:
                    continue
                c, torsion = pick
                fingerprints.append(fingerprint(c["mol"]))
                chosen.append(_drive(c, torsion, name, group, len(chosen) + 1))
                taken, progress = taken + 1, True
            if not progress:
                raise SystemExit(f"group {group}: only {taken} drives found, {target} wanted")
    return chosen


def _drive(c: dict, torsion: tuple[int, ...], cls: str, group: str, number: int) -> dict:
    return {"id": f"td{number:03d}", "smiles": c["smiles"], "mapped_smiles": mapped_smiles(c["mol"]),
            "torsion": list(torsion), "bond_class": cls, "group": group, "level": LEVELS[group],
            "geometry_labeler": "ani-1ccx" if group == "ani-1ccx" else "ani-2x",
            "energy_labeler": "b3lyp-d3bj" if group == "dft" else ("ani-1ccx" if group == "ani-1ccx" else "ani-2x"),
            "source": c["source"], "name": c["name"], "heavy_atoms": c["mol"].GetNumHeavyAtoms(),
            "nearest_training_tanimoto": c["nearest_training_tanimoto"]}


def build() -> dict:
    """The selection document (what the drive file holds)."""
    sources = training_smiles()
    training = TrainingSet(sources)
    drives = select(candidates(training))
    return {"version": "torsion-drives-v1",
            "rule": (f"held out: neutral parent's canonical isomeric SMILES in no training source and Morgan-2 "
                     f"(2048 bits) Tanimoto < {SIMILARITY_LIMIT} to every training molecule"),
            "training_sources": {name: len(smiles) for name, smiles in sorted(sources.items())},
            "training_molecules": len(training.smiles),
            "levels": LEVELS, "step_deg": 15.0, "drives": drives}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail when the committed selection differs")
    parser.add_argument("-o", "--output", type=Path, default=OUT)
    args = parser.parse_args(argv)
    RDLogger.DisableLog("rdApp.*")
    document = build()
    text = json.dumps(document, indent=1) + "\n"
    if args.check:
        same = args.output.is_file() and args.output.read_text() == text
        print("selection unchanged" if same else f"{args.output}: differs from a fresh selection")
        return 0 if same else 1
    from gnnff.files import atomic_write_text

    atomic_write_text(args.output, text)
    held = sorted({d["smiles"] for d in document["drives"]})
    atomic_write_text(args.output.with_name(args.output.stem + "-heldout.smi"), "\n".join(held) + "\n")
    counts = {g: sum(d["group"] == g for d in document["drives"]) for g in TARGETS}
    print(f"{len(document['drives'])} drives ({counts}) of {len(held)} molecules -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
