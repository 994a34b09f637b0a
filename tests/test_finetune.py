"""Bespoke fine-tuning (``gnnff finetune``): fitting lowers the error against the labeler on
fitted and held-out scan points, charges and Lennard-Jones stay the base model's, the
checkpoint loads and reproduces its energies through OpenMM, labels are reused on a rerun,
the series domain note warns, and bad input is refused by name."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import openmm
import pytest
import torch

import gnnff
from gnnff.chem.molecule import positions_nm, with_conformer
from gnnff.chem.topology import build_topology
from gnnff.nn.checkpoint import load_checkpoint
from gnnff.sources.gnn import GNNSource, SeriesWarning
from gnnff.testing import compare_with_openmm
from gnnff.train.finetune import FinetuneSettings, finetune

from conftest import ROOT


class SystemLabeler:
    """A labeler from OpenFF Sage Systems of given molecules (cheap, deterministic), with
    an extra 2-fold barrier of ``barrier`` kJ/mol on each molecule's first proper torsion
    of heavy atoms 0-1-2-3: a profile the base model does not have, for it to learn."""

    name = "sage-mm"
    method = "OpenFF Sage (test labeler)"

    def __init__(self, *smiles: str, barrier: float = 8.0) -> None:
        self.contexts = {}
        for s in smiles:
            result = gnnff.assign_parameters(s, model="sage")
            z = tuple(a.GetAtomicNum() for a in result.mol.GetAtoms())
            system = result.to_openmm()
            extra = openmm.PeriodicTorsionForce()
            extra.addTorsion(0, 1, 2, 3, 2, 0.0, barrier)
            system.addForce(extra)
            self.contexts[z] = openmm.Context(system, openmm.VerletIntegrator(0.001),
                                              openmm.Platform.getPlatformByName("Reference"))

    def __call__(self, atomic_numbers, positions_nm, charge):
        context = self.contexts[tuple(int(z) for z in atomic_numbers)]
        energies, forces = [], []
        for x in np.asarray(positions_nm):
            context.setPositions(x)
            state = context.getState(getEnergy=True, getForces=True)
            energies.append(state.getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole))
            forces.append(state.getForces(asNumpy=True).value_in_unit(openmm.unit.kilojoule_per_mole /
                                                                       openmm.unit.nanometer))
        return np.array(energies), np.array(forces)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    settings = FinetuneSettings(step=60.0, steps=150, samples=2, tune="heads")
    summary = finetune(["CCCC", "CCO"], root / "butane.pt", settings=settings, labeler=SystemLabeler("CCCC"),
                       progress=False)
    return root, summary, settings


@pytest.mark.slow
def test_fitting_lowers_the_error_on_fitted_and_held_out_points(tuned):
    root, summary, _ = tuned
    assert summary["molecules"] == 1 and summary["scans"] == 1
    assert [f["molecule"] for f in summary["failed"]] == ["CCO"]  # no rotatable bond: reported, left out
    assert "no rotatable bond" in summary["failed"][0]["error"]
    fitted, held = summary["fitted_rmse"], summary["held_out_rmse"]
    assert fitted["tuned"] < 0.5 * fitted["base"], fitted
    assert held["tuned"] < held["base"], held
    report = root / "butane.finetune" / "report"
    assert {"scans.csv", "summary.json", "fit.png"} <= {p.name for p in report.iterdir()}
    assert len(list(report.glob("*-0-1-2-3.png"))) == 1


@pytest.mark.slow
def test_charges_lj_and_trunk_stay_the_base_models(tuned):
    root, _, _ = tuned
    base, new = gnnff.get_model(None), GNNSource(root / "butane.pt")
    for smiles in ("CCCC", "CC(=O)Nc1ccc(O)cc1"):  # the series and a molecule outside it
        mol = gnnff.load_molecule(smiles)
        topology = build_topology(mol)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SeriesWarning)
            a, b = base.parameters(mol, topology), new.parameters(mol, topology)
        for name in ("charge", "sigma", "epsilon"):
            torch.testing.assert_close(getattr(a.nonbonded, name), getattr(b.nonbonded, name), rtol=0, atol=0)
    changed = {k.split(".")[1] for k, v in new.network.state_dict().items()
               if not torch.equal(v, base.network.state_dict()[k])}
    assert changed and changed <= {"bonds", "angles", "propers", "impropers"}
    record = load_checkpoint(root / "butane.pt")["training"]["finetune"]
    assert record["base"] == "gnnff-v1" and record["labeler"] == SystemLabeler.method
    assert record["molecules"][0]["smiles"] == "CCCC" and record["molecules"][0]["scans"] == [[0, 1, 2, 3]]


@pytest.mark.slow
def test_checkpoint_loads_and_reproduces_its_energies_through_openmm(tuned):
    root, _, _ = tuned
    result = gnnff.assign_parameters("CCCC", model=str(root / "butane.pt"))
    mol = with_conformer(result.mol)
    x = positions_nm(mol)
    rng = np.random.default_rng(0)
    x = np.concatenate([x, x + rng.normal(scale=0.005, size=x.shape)])
    errors = compare_with_openmm(result.topology, result.parameters, result.to_openmm(), x)
    for term, (energy, force) in errors.items():
        assert energy < 1e-6 and force < 1e-4, (term, energy, force)


@pytest.mark.slow
def test_far_molecules_warn_and_series_molecules_do_not(tuned):
    root, _, _ = tuned
    with warnings.catch_warnings():
        warnings.simplefilter("error", SeriesWarning)
        gnnff.parametrize("CCCC", model=str(root / "butane.pt"))
    with pytest.warns(SeriesWarning, match=r"c1ccccc1.*far from it \(nearest Tanimoto 0\.\d\d < 0\.35\).*"
                                           r"gnnff-v1"):
        gnnff.parametrize(gnnff.load_molecule("c1ccccc1", name="c1ccccc1"), model=str(root / "butane.pt"))


@pytest.mark.slow
def test_a_rerun_reuses_the_labels(tuned):
    root, first, settings = tuned
    labels = sorted((root / "butane.finetune" / "labels").rglob("*.npz"))
    stamps = [p.stat().st_mtime_ns for p in labels]
    again = finetune(["CCCC"], root / "butane.pt", settings=settings, labeler=SystemLabeler("CCCC"),
                     overwrite=True, progress=False)
    assert [p.stat().st_mtime_ns for p in labels] == stamps
    assert again["seconds"]["labelling"] < 0.2 * first["seconds"]["labelling"]
    assert again["held_out_rmse"] == pytest.approx(first["held_out_rmse"], rel=1e-6)


def test_cli_finetune_refuses_bad_input_by_name(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "gnnff", "finetune", *a], cwd=tmp_path,  # noqa: E731
                                    capture_output=True, text=True, timeout=300)
    for args, message in ((("CCCC", "-o", "model.xml"), "model.xml: the fine-tuned model is a checkpoint; name it"),
                          (("CCCC", "-o", "m.pt", "--scans", "some"), "--scans takes 'auto' or a number"),
                          (("CCCC", "-o", "m.pt", "--hold-out", "1"), "--hold-out 1 would hold every point out"),
                          (("CCCC", "-o", "m.pt", "--base", "sage"), "is not a gnnff network"),
                          (("CCCC", "-o", "m.pt", "--tune", "heads", "--terms", "propers,cmap"),
                           "has no valence head 'cmap'"),
                          (("CCCC", "-o", "m.pt", "--terms", "propers"),
                           "--terms propers chooses the heads that --tune heads trains")):
        done = run(*args)
        assert done.returncode == 2 and message in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_cli_finetune_names_molecules_outside_the_labelers_domain(tmp_path):
    if not (ROOT.parent / "shared" / "models" / "torchani" / "ani-2x_8x.info").is_file():
        pytest.skip("ANI-2x weights not found beside the checkout (../shared/models/torchani)")
    done = subprocess.run([sys.executable, "-m", "gnnff", "finetune", "CCCC[NH3+]", "-o", "m.pt", "-q"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "CCCC[NH3+]" in done.stderr and "ANI-2x covers neutral H C N O F S Cl" in done.stderr
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.slow
def test_cli_finetune_end_to_end_with_ani2x_and_the_model_serves_the_cli(tmp_path):
    if not (ROOT.parent / "shared" / "models" / "torchani" / "ani-2x_8x.info").is_file():
        pytest.skip("ANI-2x weights not found beside the checkout (../shared/models/torchani)")
    run = lambda *a: subprocess.run([sys.executable, "-m", "gnnff", *a], cwd=tmp_path,  # noqa: E731
                                    capture_output=True, text=True, timeout=600)
    done = run("finetune", "CCCC", "-o", "butane.pt", "--step", "90", "--samples", "0", "--steps", "20",
               "--conformers", "3", "-q")
    assert done.returncode == 0, done.stderr
    assert "fine-tuned gnnff-v1 on 1 scans of 1 molecules (ani-2x): held-out profile RMSE" in done.stdout
    assert "relaxed conformer energies" in done.stdout
    report = tmp_path / "butane.finetune" / "report"
    assert {"scans.csv", "conformers.csv", "summary.json", "fit.png"} <= {p.name for p in report.iterdir()}
    labels = sorted(p.name for p in (tmp_path / "butane.finetune" / "labels" / "ani-2x").rglob("*.npz"))
    assert len(labels) == 2 and labels[0].startswith("conformers-n3-")
    served = run("parametrize", "CCCC", "--model", "butane.pt", "-o", "butane.xml")
    assert served.returncode == 0, served.stderr
    system = openmm.XmlSerializer.deserialize((tmp_path / "butane.xml").read_text())
    assert system.getNumParticles() == 14


@pytest.mark.slow
def test_the_relaxed_profile_loss_is_the_reports_measure(tmp_path):
    """Right after a relaxation the fitted loss equals the report's profile error of the
    same points (both mean-centred here): the fit optimises what the report measures."""
    import copy

    from gnnff.schema import NONBONDED
    from gnnff.train.finetune import label_molecule
    from gnnff.train.finetune.evaluate import _profiles
    from gnnff.train.finetune.fitting import _Relaxed
    from gnnff.train.finetune.targets import _profile_data

    settings = FinetuneSettings(step=60.0, samples=0, hold_out=0)
    mol = with_conformer(gnnff.load_molecule("CCCC"))
    scans = label_molecule(mol, SystemLabeler("CCCC"), tmp_path, settings)
    base = gnnff.get_model(None)
    relaxed = _Relaxed(copy.deepcopy(base.network), _profile_data(mol, scans, 0), base.config.features)
    relaxed.relax()
    terms = [t for t in relaxed.predict().terms if t is not NONBONDED]
    with torch.no_grad():
        loss = float(relaxed.mse(terms)) ** 0.5
    profiles = _profiles(scans[0], {"base": gnnff.assign_parameters(mol, model=base).to_openmm()})
    ref, mm = profiles["reference"], profiles["base"]
    report = float(np.sqrt(np.mean(((mm - mm.mean()) - (ref - ref.mean())) ** 2)))
    assert report > 0.3  # the labeler's extra barrier: a real error to measure
    assert loss == pytest.approx(report, abs=2e-3)


@pytest.mark.slow
def test_held_out_scans_stay_out_of_the_fit_and_are_reported_apart(tmp_path, monkeypatch):
    import csv
    import math

    from gnnff.train import finetune as module

    seen = {}
    real = module.fit

    def spy(network, data, settings, features="v0", progress=True, profiles=(), driven=None, corrections=None):
        seen["profiles"] = [list(q.torsion) for q in profiles if q.torsion is not None]
        seen["conformations"] = sum(d.n_conformations for d in data)
        seen["driven"] = driven
        return real(network, data, settings, features, progress, profiles, driven, corrections)

    monkeypatch.setattr(module, "fit", spy)
    settings = FinetuneSettings(step=90.0, steps=20, samples=0, hold_out_scans=True, conformers=0)
    summary = finetune(["CCCCCC"], tmp_path / "hexane.pt", settings=settings, labeler=SystemLabeler("CCCCCC"),
                       progress=False)
    assert summary["scans"] == 2 and summary["held_out_scans"] == 1
    rows = list(csv.DictReader(open(tmp_path / "hexane.finetune" / "report" / "scans.csv")))
    fitted = [r for r in rows if r["scan_held_out"] == "False"]
    whole = [r for r in rows if r["scan_held_out"] == "True"]
    assert len(fitted) == 1 and len(whole) == 1
    assert whole[0]["held_out"] == whole[0]["points"] == "4" and fitted[0]["held_out"] == "2"
    assert seen["profiles"] == [[int(a) for a in fitted[0]["torsion"].split("-")]]
    assert seen["conformations"] == 2  # the fitted scan's two fitted points, no samples
    # the pull's free rows: the propers about the fitted scan's central bond, none of the held-out one's
    topology = build_topology(gnnff.load_molecule("CCCCCC"))
    free = {frozenset(map(int, t[1:3])) for t in topology.propers[seen["driven"]["propers"].numpy()]}
    j, k = (int(a) for a in fitted[0]["torsion"].split("-")[1:3])
    assert free == {frozenset((j, k))} and not any(seen["driven"][n].any() for n in seen["driven"] if n != "propers")
    record = load_checkpoint(tmp_path / "hexane.pt")["training"]["finetune"]
    assert record["molecules"][0]["held_out_scans"] == [[int(a) for a in whole[0]["torsion"].split("-")]]
    assert math.isfinite(summary["held_out_scan_rmse"]["tuned"]) and math.isnan(float(whole[0]["base_fitted_rmse"]))


@pytest.mark.slow
def test_the_change_concentrates_on_the_driven_bonds_torsions(tuned):
    """The anchor: the propers about the driven C1-C2 bond move, the series' other valence
    parameters (the methyl rotors' propers, bonds, angles) barely do."""
    root, _, _ = tuned
    mol = gnnff.load_molecule("CCCC")
    topology = build_topology(mol)
    a = gnnff.get_model(None).parameters(mol, topology)
    b = GNNSource(root / "butane.pt").parameters(mol, topology)
    driven = np.array([{int(t[1]), int(t[2])} == {1, 2} for t in topology.propers])
    dk = (b.propers.k - a.propers.k).abs().sum(1).numpy()  # kJ/mol, all periodicities
    assert dk[driven].mean() > 10 * dk[~driven].mean(), (dk[driven], dk[~driven])
    assert dk[driven].mean() > 0.5  # the extra 8 kJ/mol barrier is partly learnt
    length = (b.bonds.length - a.bonds.length).abs().max().item()
    assert length < 5e-4, length  # nm, a quarter of the pull's length scale: the bonds stay near the base model's


@pytest.mark.slow
def test_an_unexpected_labelling_error_is_reported_by_molecule_and_the_batch_goes_on(tmp_path):
    # the test labeler knows butane only: hexane's lookup raises KeyError, not a gnnff error
    settings = FinetuneSettings(step=90.0, steps=5, samples=0)
    summary = finetune(["CCCCCC", "CCCC"], tmp_path / "m.pt", settings=settings, labeler=SystemLabeler("CCCC"),
                       progress=False)
    assert summary["molecules"] == 1 and [f["molecule"] for f in summary["failed"]] == ["CCCCCC"]
    assert summary["failed"][0]["error"].startswith("CCCCCC: labelling failed (KeyError:")


def test_conformers_come_from_the_graph_distinct_and_reproducible():
    from rdkit import Chem
    from rdkit.Chem import AllChem

    from gnnff.train.finetune import PRUNE_RMS, embedded_conformers

    mol = with_conformer(gnnff.load_molecule("CCCCCCO"))
    first, again = embedded_conformers(mol, 6, 0), embedded_conformers(mol, 6, 0)
    assert len(first) >= 3
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    moved = Chem.Mol(mol)  # another input geometry: the conformers do not depend on it
    for i, p in enumerate(moved.GetConformer().GetPositions() * 1.1 + 3.0):
        moved.GetConformer().SetAtomPosition(i, p.tolist())
    assert all(np.array_equal(a, b) for a, b in zip(first, embedded_conformers(moved, 6, 0), strict=True))
    heavy = Chem.Mol(mol)
    heavy.RemoveAllConformers()
    for x in first:
        conformer = Chem.Conformer(mol.GetNumAtoms())
        for i, p in enumerate(x * 10.0):
            conformer.SetAtomPosition(i, p.tolist())
        heavy.AddConformer(conformer, assignId=True)
    heavy = Chem.RemoveHs(heavy)
    rms = [AllChem.GetConformerRMS(heavy, i, j) for i in range(heavy.GetNumConformers()) for j in range(i)]
    assert min(rms) > PRUNE_RMS  # distinct after alignment: pruned as promised


def test_labelled_conformers_are_the_labelers_minima_and_are_reused(tmp_path):
    from gnnff.train.finetune import conformer_path, label_conformers
    from gnnff.train.scan import HARTREE_KJ

    settings = FinetuneSettings(conformers=4, samples=2)
    mol = with_conformer(gnnff.load_molecule("CCCCO"))
    labeler = SystemLabeler("CCCCO")
    labels = label_conformers(mol, labeler, tmp_path, settings)
    n = len(labels.energies)
    assert n >= 2 and conformer_path(tmp_path, settings).is_file()
    energies, forces = labeler([a.GetAtomicNum() for a in mol.GetAtoms()], labels.positions, 0)
    np.testing.assert_allclose(labels.energies, energies)
    # geomeTRIC's convergence (largest gradient 4.5e-4 hartree/bohr = 22 kJ/mol/nm): minima
    assert np.abs(forces).max() < 4.5e-4 * HARTREE_KJ / 0.0529177
    assert labels.sample_positions.shape == (2 * n, mol.GetNumAtoms(), 3)
    assert list(labels.sample_point) == [i for i in range(n) for _ in range(2)]

    class Refuses:
        def __call__(self, *args):
            raise AssertionError("labels exist; nothing should be recomputed")

    again = label_conformers(mol, Refuses(), tmp_path, settings)
    np.testing.assert_array_equal(again.positions, labels.positions)
    assert label_conformers(mol, Refuses(), tmp_path, FinetuneSettings(conformers=0)) is None


def test_the_relaxed_conformer_loss_is_the_reports_measure(tmp_path):
    """Conformers relax without a restraint, in the loss as in the report's conformers.csv."""
    import copy

    from gnnff.schema import NONBONDED
    from gnnff.train.finetune import label_conformers
    from gnnff.train.finetune.evaluate import _conformer_rmse
    from gnnff.train.finetune.fitting import _Relaxed
    from gnnff.train.finetune.targets import _profile_data

    settings = FinetuneSettings(conformers=5, samples=0)
    mol = with_conformer(gnnff.load_molecule("CCCCO"))
    labels = label_conformers(mol, SystemLabeler("CCCCO", barrier=20.0), tmp_path, settings)
    profiles = _profile_data(mol, [], 0, labels)
    assert [q.torsion for q in profiles] == [None]
    base = gnnff.get_model(None)
    relaxed = _Relaxed(copy.deepcopy(base.network), profiles, base.config.features)
    relaxed.relax()
    terms = [t for t in relaxed.predict().terms if t is not NONBONDED]
    with torch.no_grad():
        loss = float(relaxed.mse(terms)) ** 0.5
    report = _conformer_rmse(labels, {"base": gnnff.assign_parameters(mol, model=base).to_openmm()})["base"]
    assert report > 0.1  # the Sage labeler and the base model differ
    assert loss == pytest.approx(report, abs=2e-3)


@pytest.mark.slow
@pytest.mark.parametrize("relax", [True, False])
def test_conformers_enter_the_fit_as_data_and_relaxed_only_when_asked(tmp_path, monkeypatch, relax):
    from gnnff.train import finetune as module

    seen = {}
    real = module.fit

    def spy(network, data, settings, features="v0", progress=True, profiles=(), driven=None, corrections=None):
        seen["torsions"] = [q.torsion for q in profiles]
        seen["conformations"] = sum(d.n_conformations for d in data)
        return real(network, data, settings, features, progress, profiles, driven, corrections)

    monkeypatch.setattr(module, "fit", spy)
    settings = FinetuneSettings(step=90.0, steps=3, samples=0, conformers=3, relax_conformers=relax)
    summary = finetune(["CCCC"], tmp_path / "b.pt", settings=settings, labeler=SystemLabeler("CCCC"), progress=False)
    n = load_checkpoint(tmp_path / "b.pt")["training"]["finetune"]["molecules"][0]["conformers"]
    assert n >= 2
    assert seen["conformations"] == 2 + n  # the scan's two fitted points and the conformers
    assert seen["torsions"][1:] == ([None] if relax else [])
    assert np.isfinite(summary["conformer_rmse"]["tuned"])


def test_an_unknown_schedule_is_refused_by_name():
    with pytest.raises(gnnff.errors.InputError, match="schedule must be 'cosine' or 'constant', got 'linear'"):
        FinetuneSettings(schedule="linear")
