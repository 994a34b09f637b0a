"""Reference calculators ("labelers") behind one interface, in a registry.

A labeler takes atomic numbers, positions ``(n_conf, n_atoms, 3)`` in nm and the net
charge, and returns energies ``(n_conf,)`` in kJ/mol and forces ``(n_conf, n_atoms, 3)``
in kJ/mol/nm. Each one converts its program's units explicitly, in one place.

- ``gfn2-xtb``: GFN2-xTB through ``tblite`` (hartree, bohr).
- ``ani-2x``: the ANI-2x ensemble through ``torchani``, weights read offline from a
  folder holding ``ani-2x_8x.info`` and ``ani-2x_8x/`` (``GNNFF_ANI2X_DIR``, default
  ``../shared/models/torchani`` beside the checkout); neutral molecules of
  H C N O S F Cl only (hartree, angstrom).
- ``ani-1ccx``: the ANI-1ccx ensemble (CCSD(T)*/CBS quality) from the same folder
  (``ani-1ccx_8x.info``, ``ani-1ccx_8x/``); neutral molecules of H C N O only.
- ``b3lyp-d3bj``: B3LYP-D3(BJ)/DZVP through ``pyscf`` and ``dftd3`` (hartree, bohr).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from gnnff.errors import ModelError, ParametrizationError
from gnnff.units import ANGSTROM_TO_NM, BOHR_TO_NM, HARTREE_TO_KJ

__all__ = ["Labeler", "LABELERS", "get_labeler", "XTBLabeler", "ANI2xLabeler", "ANI1ccxLabeler", "DFTLabeler"]


class Labeler(Protocol):
    name: str
    method: str

    def __call__(self, atomic_numbers: np.ndarray, positions_nm: np.ndarray, charge: int
                 ) -> tuple[np.ndarray, np.ndarray]:
        ...


class XTBLabeler:
    """GFN2-xTB single points through tblite, one conformation at a time."""

    name = "gfn2-xtb"
    method = "GFN2-xTB (tblite)"

    def __init__(self, accuracy: float = 1.0) -> None:
        try:
            from tblite.interface import Calculator  # noqa: F401
        except ImportError:
            raise ModelError("labeler 'gfn2-xtb' needs tblite: pip install tblite") from None
        self.accuracy = accuracy

    def __call__(self, atomic_numbers, positions_nm, charge):
        from tblite.interface import Calculator

        energies, forces = [], []
        for x in np.asarray(positions_nm, dtype=float):
            calc = Calculator("GFN2-xTB", np.asarray(atomic_numbers), x / BOHR_TO_NM, charge=float(charge))
            calc.set("verbosity", 0)
            calc.set("accuracy", self.accuracy)
            try:
                result = calc.singlepoint()
            except RuntimeError as err:
                raise ParametrizationError(f"GFN2-xTB failed ({str(err).splitlines()[0]})") from None
            energies.append(result.get("energy") * HARTREE_TO_KJ)  # hartree -> kJ/mol
            forces.append(-result.get("gradient") * HARTREE_TO_KJ / BOHR_TO_NM)  # Eh/bohr -> kJ/mol/nm
        return np.asarray(energies), np.asarray(forces)


def _default_ani_dir() -> Path:
    env = os.environ.get("GNNFF_ANI2X_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "models" / "torchani"


class _ANILabeler:
    """An ANI ensemble (torchani), loaded offline from NeuroChem files: subclasses name the
    files (``FILES``: ``FILES.info`` and ``FILES/`` in the weights folder), torchani's model
    name and the elements covered."""

    name: str
    method: str
    ELEMENTS: frozenset[int]
    FILES: str
    TORCHANI_NAME: str

    def __init__(self, weights: str | os.PathLike | None = None) -> None:
        folder = Path(weights) if weights else _default_ani_dir()
        title = self.method.split(" (")[0]
        if not (folder / f"{self.FILES}.info").is_file():
            raise ModelError(f"{title} weights not found in {folder}; set GNNFF_ANI2X_DIR to the folder "
                             f"holding {self.FILES}.info and {self.FILES}/")
        try:
            import torch  # noqa: F401
            import torchani
        except ImportError:
            raise ModelError(f"labeler '{self.name}' needs torchani: pip install torchani") from None
        # torchani reads $TORCHANI_DATA_DIR/Neurochem/...: point it at the offline files
        self._data_dir = tempfile.mkdtemp(prefix="gnnff-ani-")
        os.symlink(folder.resolve(), os.path.join(self._data_dir, "Neurochem"))
        previous = os.environ.get("TORCHANI_DATA_DIR")
        os.environ["TORCHANI_DATA_DIR"] = self._data_dir
        os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")
        try:
            self.model = torchani.neurochem.load_model_from_name(self.TORCHANI_NAME).double().eval()
            self.model.periodic_table_index = True  # species given as atomic numbers
        finally:
            if previous is None:
                os.environ.pop("TORCHANI_DATA_DIR", None)
            else:
                os.environ["TORCHANI_DATA_DIR"] = previous

    def check_domain(self, atomic_numbers: np.ndarray, charge: int) -> None:
        """ParametrizationError unless the molecule is neutral and of the covered elements."""
        raise NotImplementedError

    def __call__(self, atomic_numbers, positions_nm, charge):
        import torch

        z = np.asarray(atomic_numbers)
        self.check_domain(z, charge)
        x = torch.as_tensor(np.asarray(positions_nm) / ANGSTROM_TO_NM, dtype=torch.float64)  # nm -> A
        x.requires_grad_(True)
        species = torch.as_tensor(z).expand(x.shape[0], -1)
        energy = self.model((species, x)).energies
        (grad,) = torch.autograd.grad(energy.sum(), x)
        forces = -grad.numpy() * HARTREE_TO_KJ / ANGSTROM_TO_NM  # Eh/A -> kJ/mol/nm
        return energy.detach().numpy() * HARTREE_TO_KJ, forces


class ANI2xLabeler(_ANILabeler):
    """ANI-2x ensemble (torchani, trained on wB97X/6-31G*), loaded offline from NeuroChem files."""

    name = "ani-2x"
    method = "ANI-2x (torchani, 8-model ensemble)"
    ELEMENTS = frozenset({1, 6, 7, 8, 9, 16, 17})
    FILES = "ani-2x_8x"
    TORCHANI_NAME = "ani2x"

    def check_domain(self, atomic_numbers, charge):
        bad = sorted(set(np.asarray(atomic_numbers).tolist()) - self.ELEMENTS)
        if charge != 0 or bad:
            raise ParametrizationError(
                f"ANI-2x covers neutral H C N O F S Cl molecules only (net charge {charge}, other elements {bad})"
            )


class ANI1ccxLabeler(_ANILabeler):
    """ANI-1ccx ensemble (torchani): ANI-1x transfer-learned to CCSD(T)*/CBS; neutral
    H C N O molecules only (Smith et al., Nat. Commun. 10, 2903 (2019))."""

    name = "ani-1ccx"
    method = "ANI-1ccx (torchani, 8-model ensemble, CCSD(T)*/CBS transfer-learned)"
    ELEMENTS = frozenset({1, 6, 7, 8})
    FILES = "ani-1ccx_8x"
    TORCHANI_NAME = "ani1ccx"

    def check_domain(self, atomic_numbers, charge):
        from rdkit.Chem import GetPeriodicTable

        for index, number in enumerate(np.asarray(atomic_numbers).tolist()):
            if number not in self.ELEMENTS:
                symbol = GetPeriodicTable().GetElementSymbol(int(number))
                raise ParametrizationError(f"ANI-1ccx covers H C N O only: atom {index} is {symbol}; "
                                           "use labeler ani-2x (H C N O F S Cl)")
        if charge != 0:
            raise ParametrizationError(f"ANI-1ccx covers neutral molecules only (net charge {charge}); "
                                       "use labeler gfn2-xtb for ions")


class DFTLabeler:
    """B3LYP-D3(BJ)/DZVP (the level of the shared data) with pyscf and dftd3.

    Closed-shell Kohn-Sham (RKS); minutes per drug-size conformation on 2 cores: for
    small validation sets, not bulk data. ``pip install gnnff[dft]``.
    """

    name = "b3lyp-d3bj"
    method = "B3LYP-D3(BJ)/DZVP (pyscf + dftd3)"

    def __init__(self, basis: str = "dzvp", xc: str = "b3lyp") -> None:
        try:
            import dftd3.interface  # noqa: F401
            import pyscf  # noqa: F401
        except ImportError:
            raise ModelError("labeler 'b3lyp-d3bj' needs pyscf and dftd3: pip install gnnff[dft]") from None
        self.basis, self.xc = basis, xc

    def _scf(self, atomic_numbers: np.ndarray, x_bohr: np.ndarray, charge: int, guess=None):
        from pyscf import dft, gto

        mol = gto.M(atom=[(int(a), tuple(r)) for a, r in zip(atomic_numbers, x_bohr)], unit="Bohr",
                    basis=self.basis, charge=int(charge), spin=0, verbose=0)
        mf = dft.RKS(mol)
        mf.xc = self.xc
        e = mf.kernel(dm0=guess)
        if not mf.converged:
            raise ParametrizationError(f"{self.method}: SCF did not converge")
        return mf, e

    def __call__(self, atomic_numbers, positions_nm, charge):
        from dftd3.interface import DispersionModel, RationalDampingParam

        z = np.asarray(atomic_numbers)
        energies, forces = [], []
        for x in np.asarray(positions_nm, dtype=float) / BOHR_TO_NM:  # nm -> bohr
            mf, e = self._scf(z, x, charge)
            grad = mf.nuc_grad_method().kernel()
            d3 = DispersionModel(z, x).get_dispersion(RationalDampingParam(method=self.xc), grad=True)
            energies.append((e + d3["energy"]) * HARTREE_TO_KJ)  # hartree -> kJ/mol
            forces.append(-(grad + d3["gradient"]) * HARTREE_TO_KJ / BOHR_TO_NM)  # Eh/bohr -> kJ/mol/nm
        return np.asarray(energies), np.asarray(forces)

    def energies(self, atomic_numbers, positions_nm, charge, *,
                 done: Callable[[int, float], None] | None = None) -> np.ndarray:
        """Energies only (kJ/mol), ``(n_conf,)``: no gradient, and each SCF starts from the
        previous conformation's density (same atoms and basis; a scan's neighbouring points
        converge in fewer cycles). ``done(index, energy)`` is called after each conformation
        (to save work as it finishes)."""
        from dftd3.interface import DispersionModel, RationalDampingParam

        z = np.asarray(atomic_numbers)
        out, guess = [], None
        for x in np.asarray(positions_nm, dtype=float) / BOHR_TO_NM:  # nm -> bohr
            mf, e = self._scf(z, x, charge, guess)
            guess = mf.make_rdm1()
            d3 = DispersionModel(z, x).get_dispersion(RationalDampingParam(method=self.xc), grad=False)
            out.append((e + d3["energy"]) * HARTREE_TO_KJ)  # hartree -> kJ/mol
            if done is not None:
                done(len(out) - 1, out[-1])
        return np.asarray(out)


#: Labeler name -> factory.
LABELERS: dict[str, Callable[[], Labeler]] = {"gfn2-xtb": XTBLabeler, "ani-2x": ANI2xLabeler,
                                              "ani-1ccx": ANI1ccxLabeler, "b3lyp-d3bj": DFTLabeler}


def get_labeler(name: str) -> Labeler:
    """Instantiate a labeler by name; unknown names list the known ones."""
    if name not in LABELERS:
        raise ModelError(f"unknown labeler '{name}'; known: {', '.join(sorted(LABELERS))}")
    return LABELERS[name]()
