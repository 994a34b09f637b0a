"""MD stability of the default model over molecules of the shared DFT set, and NVE energy drift.

    python benchmarks/gas_phase/stability.py [--molecules 100] [--ns 1.0] [--timestep-fs 1] [--constraints none]
                                   [--nve-ps 20] [--workers 2] [-o stability.csv]

For N distinct molecules (by ``SMILES QCArchive``) of
``../shared/data/industry-benchmark-dev.sdf.gz`` (evenly spaced over its 4,887, so
about one in ten is charged; ``--first`` takes the first N, all neutral): the default model's System (vacuum),
minimised from the QM geometry, Langevin NVT at 300 K (friction 1/ps) for ``--ns``, then
``--nve-ps`` of NVE with a ``VerletIntegrator`` of the same time step. Every
``--check-ps`` of simulated time, a run fails on

- ``nan``: a coordinate or the energy is not finite (or OpenMM raises on NaN);
- ``stretched``: a bond longer than ``--max-stretch`` (1.5) x its equilibrium length in
  the System's HarmonicBondForce;
- ``topology``: two atoms that are not bonded closer than 0.7 x the sum of their covalent
  radii (atoms collapsed onto each other) — a broken bond is ``stretched``;
- ``chirality``: a tetrahedral stereocentre inverted (sign of its signed volume flipped).

NVE drift: slope of a least-squares line through the total energy sampled every 100
steps, in kJ/mol/ns, divided by the degrees of freedom (3 N minus constraints); also the
RMS fluctuation of the total energy about that line. Molecules run in ``--workers``
processes (one thread each) with a progress bar; one row per molecule goes to ``-o``.
Nothing is asserted; failures are listed.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import openmm
from openmm import unit
from rdkit import Chem

import gnnff
from gnnff.pool import WorkerPool, worker_state
from gnnff.progress import progress

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "industry-benchmark-dev.sdf.gz"
KJ = unit.kilojoule_per_mole
COLLAPSE = 0.7  # non-bonded pair closer than this x (sum of covalent radii): topology broken


@dataclass
class Settings:
    ns: float
    timestep_fs: float
    constraints: str
    nve_ps: float
    check_ps: float
    max_stretch: float
    platform: str
    seed: int


@dataclass
class Outcome:
    index: int
    smiles: str
    atoms: int
    charge: int
    status: str  # ok, nan, stretched, topology, chirality, error
    failed_at_ps: float
    detail: str
    mean_temperature_k: float
    nve_drift_per_dof: float  # kJ/mol/ns per degree of freedom
    nve_fluctuation: float  # kJ/mol, RMS about the drift line
    seconds: float


_LINEAR = Chem.MolFromSmarts("[$([CX2]#*),$([CX2](=*)=*),$([NX2](=*)=*),$([NX2]#*)]")


def distinct_molecules(path: Path, n: int, *, spread: bool = True, linear: int = 0) -> list[Chem.Mol]:
    """``n`` distinct molecules (``SMILES QCArchive``) of the SDF, each with its first conformer:
    evenly spaced over all of them (``spread``, reads the whole file) or the first ``n``;
    ``linear`` of them replaced by molecules with an sp centre (alkyne, nitrile, allene,
    azide), evenly spaced over those."""
    seen, mols = set(), []
    for record in gnnff.read_records(path):
        if record.mol is None:
            continue
        key = record.mol.GetProp("SMILES QCArchive") if record.mol.HasProp("SMILES QCArchive") else record.label
        if key not in seen:
            seen.add(key)
            mols.append(record.mol)
            if len(mols) == n and not spread and not linear:
                break
    with_sp = [m for m in mols if m.HasSubstructMatch(_LINEAR)]
    others = [m for m in mols if not m.HasSubstructMatch(_LINEAR)] if linear else mols
    picked_sp = [with_sp[i] for i in np.linspace(0, len(with_sp) - 1, min(linear, len(with_sp))).round().astype(int)]
    n_rest = n - len(picked_sp)
    if spread and len(others) > n_rest:
        others = [others[i] for i in np.linspace(0, len(others) - 1, n_rest).round().astype(int)]
    return others[:n_rest] + picked_sp


class Checker:
    """Geometry checks of one molecule against its bond graph and initial stereocentres."""

    def __init__(self, mol: Chem.Mol, system: openmm.System, x0: np.ndarray, max_stretch: float) -> None:
        force = next(f for f in system.getForces() if isinstance(f, openmm.HarmonicBondForce))
        rows = [force.getBondParameters(i) for i in range(force.getNumBonds())]
        self.pairs = np.array([(i, j) for i, j, _, _ in rows]).reshape(-1, 2)
        self.r0 = np.array([r.value_in_unit(unit.nanometer) for _, _, r, _ in rows])
        self.max_stretch = max_stretch
        n = mol.GetNumAtoms()
        table = Chem.GetPeriodicTable()
        radii = np.array([table.GetRcovalent(a.GetAtomicNum()) for a in mol.GetAtoms()]) * 0.1  # A -> nm
        self.contact = COLLAPSE * (radii[:, None] + radii[None, :])
        bonded = np.eye(n, dtype=bool)
        bonded[self.pairs[:, 0], self.pairs[:, 1]] = bonded[self.pairs[:, 1], self.pairs[:, 0]] = True
        self.nonbonded = ~bonded
        Chem.AssignStereochemistryFrom3D(mol)
        self.centres = [(a.GetIdx(), [n.GetIdx() for n in a.GetNeighbors()][:3]) for a in mol.GetAtoms()
                        if a.GetChiralTag() in (Chem.ChiralType.CHI_TETRAHEDRAL_CW, Chem.ChiralType.CHI_TETRAHEDRAL_CCW)
                        and a.GetDegree() >= 3]
        self.signs = self._volumes(x0)

    def _volumes(self, x: np.ndarray) -> np.ndarray:
        if not self.centres:
            return np.zeros(0)
        c = np.array([i for i, _ in self.centres])
        nb = np.array([n for _, n in self.centres])
        a, b, d = (x[nb[:, k]] - x[c] for k in range(3))
        return np.sign(np.einsum("ij,ij->i", a, np.cross(b, d)))

    def problem(self, x: np.ndarray, energy: float) -> tuple[str, str] | None:
        """(status, detail) of the first problem found in positions ``x`` (nm), or None."""
        if not (np.isfinite(x).all() and np.isfinite(energy)):
            return "nan", "non-finite coordinates or energy"
        stretch = np.linalg.norm(x[self.pairs[:, 0]] - x[self.pairs[:, 1]], axis=1) / self.r0
        worst = int(np.argmax(stretch)) if len(stretch) else 0
        if len(stretch) and stretch[worst] > self.max_stretch:
            i, j = self.pairs[worst]
            return "stretched", f"bond {i}-{j} at {stretch[worst]:.2f} x r0"
        dist = np.linalg.norm(x[:, None] - x[None, :], axis=-1)
        close = np.argwhere(self.nonbonded & (dist < self.contact))
        if len(close):
            i, j = close[0]
            return "topology", f"non-bonded atoms {i}, {j} at {10 * dist[i, j]:.2f} A"
        flipped = np.nonzero(self._volumes(x) != self.signs)[0]
        if len(flipped):
            return "chirality", f"stereocentre {self.centres[flipped[0]][0]} inverted"
        return None


def _init_worker(model: str | None):
    """The model, loaded once per worker process (the pool's state)."""
    return gnnff.get_model(model)


def _context(system: openmm.System, integrator, platform: str) -> openmm.Context:
    properties = {"Threads": "1"} if platform == "CPU" else {}
    return openmm.Context(system, integrator, openmm.Platform.getPlatformByName(platform), properties)


def _run_nvt(context, integrator, checker: Checker, settings: Settings, dof: int) -> tuple[str, float, str, float]:
    """Langevin segment; returns (status, time of failure in ps, detail, mean temperature)."""
    steps_per_check = max(1, round(1000 * settings.check_ps / settings.timestep_fs))
    checks = max(1, round(1000 * settings.ns / settings.check_ps))
    temperatures = []
    for k in range(1, checks + 1):
        try:
            integrator.step(steps_per_check)
            state = context.getState(getPositions=True, getEnergy=True)
        except openmm.OpenMMException as err:
            return "nan", k * settings.check_ps, str(err).splitlines()[0], float("nan")
        x = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        found = checker.problem(x, state.getPotentialEnergy().value_in_unit(KJ))
        if found:
            return found[0], k * settings.check_ps, found[1], float("nan")
        kinetic = state.getKineticEnergy().value_in_unit(KJ)
        temperatures.append(2 * kinetic / (dof * unit.MOLAR_GAS_CONSTANT_R.value_in_unit(KJ / unit.kelvin)))
    return "ok", float("nan"), "", float(np.mean(temperatures))


def _nve_drift(system, state, settings: Settings, dof: int) -> tuple[float, float]:
    """(drift per DOF in kJ/mol/ns, RMS fluctuation in kJ/mol) of a Verlet segment."""
    integrator = openmm.VerletIntegrator(settings.timestep_fs * unit.femtosecond)
    integrator.setConstraintTolerance(1e-8)
    context = _context(system, integrator, settings.platform)
    context.setState(state)
    every = 100
    times, energies = [], []
    for k in range(max(2, round(1000 * settings.nve_ps / settings.timestep_fs / every))):
        integrator.step(every)
        s = context.getState(getEnergy=True)
        times.append((k + 1) * every * settings.timestep_fs * 1e-6)  # ns
        energies.append((s.getPotentialEnergy() + s.getKineticEnergy()).value_in_unit(KJ))
    slope, intercept = np.polyfit(times, energies, 1)
    residual = np.asarray(energies) - (slope * np.asarray(times) + intercept)
    return float(slope / dof), float(np.sqrt(np.mean(residual ** 2)))


def _identity(index: int, mol: Chem.Mol) -> dict:
    smiles = mol.GetProp("SMILES QCArchive") if mol.HasProp("SMILES QCArchive") else Chem.MolToSmiles(mol)
    return {"index": index, "smiles": smiles, "atoms": mol.GetNumAtoms(), "charge": Chem.GetFormalCharge(mol)}


def _error(item: tuple[int, Chem.Mol, Settings], detail: str, seconds: float = float("nan")) -> Outcome:
    """The outcome of a molecule that could not be simulated (no System, or the run raised)."""
    return Outcome(**_identity(item[0], item[1]), status="error", failed_at_ps=0.0, detail=detail,
                   mean_temperature_k=float("nan"), nve_drift_per_dof=float("nan"), nve_fluctuation=float("nan"),
                   seconds=seconds)


def simulate(item: tuple[int, Chem.Mol, Settings]) -> Outcome:
    index, mol, settings = item
    start = time.perf_counter()
    try:
        system = gnnff.parametrize(mol, model=worker_state())
    except gnnff.GnnffError as err:
        return _error(item, str(err), time.perf_counter() - start)
    base = _identity(index, mol)
    x0 = mol.GetConformer().GetPositions() * 0.1  # angstrom -> nm
    checker = Checker(Chem.Mol(mol), system, x0, settings.max_stretch)
    if settings.constraints == "hbonds":  # bonds to hydrogen fixed at the model's r0
        hydrogen = np.array([a.GetAtomicNum() == 1 for a in mol.GetAtoms()])
        for (i, j), r0 in zip(checker.pairs.tolist(), checker.r0.tolist()):
            if hydrogen[i] or hydrogen[j]:
                system.addConstraint(i, j, r0)
    dof = 3 * system.getNumParticles() - system.getNumConstraints()
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond,
                                                 settings.timestep_fs * unit.femtosecond)
    integrator.setRandomNumberSeed(settings.seed + index)
    context = _context(system, integrator, settings.platform)
    context.setPositions(x0)
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, 1000)
    context.setVelocitiesToTemperature(300 * unit.kelvin, settings.seed + index)
    status, failed_at, detail, temperature = _run_nvt(context, integrator, checker, settings, dof)
    drift = fluctuation = float("nan")
    if status == "ok" and settings.nve_ps > 0:
        drift, fluctuation = _nve_drift(system, context.getState(getPositions=True, getVelocities=True),
                                        settings, dof)
    return Outcome(**base, status=status, failed_at_ps=failed_at, detail=detail, mean_temperature_k=temperature,
                   nve_drift_per_dof=drift, nve_fluctuation=fluctuation, seconds=time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--molecules", type=int, default=100)
    parser.add_argument("--data", default=str(SHARED))
    parser.add_argument("--first", action="store_true",
                        help="take the first N distinct molecules (default: N evenly spaced over all of them)")
    parser.add_argument("--ns", type=float, default=1.0, help="NVT length per molecule in ns (default 1)")
    parser.add_argument("--timestep-fs", type=float, default=1.0)
    parser.add_argument("--constraints", choices=["none", "hbonds"], default="none",
                        help="hbonds: constrain bonds to hydrogen (use with --timestep-fs 2)")
    parser.add_argument("--nve-ps", type=float, default=20.0, help="NVE segment after NVT, ps (0: none)")
    parser.add_argument("--check-ps", type=float, default=1.0, help="check geometry every this many ps")
    parser.add_argument("--max-stretch", type=float, default=1.5)
    parser.add_argument("--platform", default="Reference", help="OpenMM platform (Reference or CPU, 1 thread)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--model", help="gnnff model name or .pt (default: the default model)")
    parser.add_argument("--linear", type=int, default=0,
                        help="of the N molecules, this many with an sp centre (alkyne, nitrile, allene, azide)")
    parser.add_argument("-o", "--output", default="stability.csv")
    args = parser.parse_args()
    settings = Settings(ns=args.ns, timestep_fs=args.timestep_fs, constraints=args.constraints, nve_ps=args.nve_ps,
                        check_ps=args.check_ps, max_stretch=args.max_stretch, platform=args.platform, seed=args.seed)
    mols = distinct_molecules(Path(args.data), args.molecules, spread=not args.first, linear=args.linear)
    charges = sorted({Chem.GetFormalCharge(m) for m in mols})
    print(f"{len(mols)} molecules ({min(m.GetNumAtoms() for m in mols)}-{max(m.GetNumAtoms() for m in mols)} atoms, "
          f"{sum(Chem.GetFormalCharge(m) != 0 for m in mols)} charged, net charges {charges}, "
          f"{sum(m.HasSubstructMatch(_LINEAR) for m in mols)} with an sp centre); model "
          f"{args.model or gnnff.sources.models.DEFAULT_MODEL}; {settings}; {args.workers} workers")
    start = time.perf_counter()
    items = [(i, m, settings) for i, m in enumerate(mols)]
    with WorkerPool(args.workers, initializer=_init_worker, initargs=(args.model,)) as pool:
        outcomes = sorted((r.value if r.ok else _error(r.item, str(r.failure))
                           for r in progress(pool.imap(simulate, items, ordered=False), total=len(items), unit="mol")),
                          key=lambda o: o.index)
    wall = time.perf_counter() - start
    with open(args.output, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(asdict(outcomes[0])))
        writer.writeheader()
        writer.writerows(asdict(o) for o in outcomes)
    ok = [o for o in outcomes if o.status == "ok"]
    print(f"{len(ok)} of {len(outcomes)} molecules stable for {args.ns * 1000:g} ps; wall {wall:.0f} s "
          f"({wall * args.workers / len(outcomes):.1f} core-s per molecule); rows in {args.output}")
    for status in ("nan", "stretched", "topology", "chirality", "error"):
        bad = [o for o in outcomes if o.status == status]
        print(f"  {status:10s} {len(bad):4d}")
        for o in bad:
            print(f"    #{o.index} {o.smiles} ({o.atoms} atoms, charge {o.charge:+d}) at {o.failed_at_ps:g} ps: "
                  f"{o.detail}")
    if ok:
        temps = [o.mean_temperature_k for o in ok]
        print(f"mean NVT temperature {statistics.mean(temps):.1f} K (molecule means {min(temps):.1f}-"
              f"{max(temps):.1f} K)")
    drifts = [abs(o.nve_drift_per_dof) for o in ok if np.isfinite(o.nve_drift_per_dof)]
    if drifts:
        fluct = [o.nve_fluctuation for o in ok]
        print(f"NVE ({args.nve_ps:g} ps, Verlet {args.timestep_fs:g} fs): |drift| per DOF median "
              f"{statistics.median(drifts):.3g}, 95th percentile {np.percentile(drifts, 95):.3g}, "
              f"max {max(drifts):.3g} kJ/mol/ns; RMS fluctuation median {statistics.median(fluct):.3g} kJ/mol")
        print("largest |drift| per DOF (kJ/mol/ns):")
        for o in sorted(ok, key=lambda o: -abs(o.nve_drift_per_dof))[:5]:
            print(f"    #{o.index} {o.nve_drift_per_dof:+.3g}  {o.smiles}")
        sp = [abs(o.nve_drift_per_dof) for o, m in zip(outcomes, mols)
              if o.status == "ok" and m.HasSubstructMatch(_LINEAR) and np.isfinite(o.nve_drift_per_dof)]
        if sp:
            print(f"molecules with an sp centre ({len(sp)}): |drift| per DOF median {statistics.median(sp):.3g}, "
                  f"max {max(sp):.3g} kJ/mol/ns")


if __name__ == "__main__":
    main()
