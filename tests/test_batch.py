"""Batch mode: batched network calls equal one-at-a-time, salts, the report, resume, workers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import openmm
import pytest
import torch
from rdkit import Chem

import gnnff
from gnnff.api import assign_parameters_many
from gnnff.app.cli import main
from gnnff.sources.gnn import GNNSource


def _tensors(parameters):
    for term in parameters.terms:
        for f in term.fields():
            yield f"{term.name}.{f.name}", getattr(parameters.term(term), f.name)


#: A checkpoint's network runs in float32 (parameters formed in float64), so a molecule
#: batched with others equals itself alone to float32 rounding, not float64; a molecule
#: leaking into another's parameters would move them by orders of magnitude more.
RTOL, ATOL = 1e-5, 1e-7


def _assert_same_parameters(a, b, rtol=RTOL, atol=ATOL):
    for (name, x), (_, y) in zip(_tensors(a), _tensors(b)):
        assert x.shape == y.shape, name
        torch.testing.assert_close(x, y, rtol=rtol, atol=atol, msg=name)


@pytest.fixture(scope="module")
def model():
    return gnnff.get_model()


@pytest.fixture(autouse=True)
def one_torch_thread():
    """As the command line runs the network: small matrices, one thread (restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_batched_network_equals_one_at_a_time(benchmark_molecules, model, monkeypatch):
    # 54 molecules of the shared DFT set, neutral and charged (+1, -1, +2, -2)
    alone = [gnnff.assign_parameters(mol, model=model) for mol in benchmark_molecules]
    calls: list[int] = []
    batched = GNNSource.parameters_batch

    def counting(self, mols, topologies, labels):
        calls.append(len(mols))
        return batched(self, mols, topologies, labels)

    monkeypatch.setattr(GNNSource, "parameters_batch", counting)
    for batch_atoms in (64, 512, 100_000):
        calls.clear()
        together = assign_parameters_many(benchmark_molecules, model=model, batch_atoms=batch_atoms)
        assert sum(calls) == len(benchmark_molecules)
        assert max(calls) > 1  # several molecules went through one network call
        for a, b in zip(alone, together):
            _assert_same_parameters(a.parameters, b.parameters)
            assert b.topology.net_charge == a.topology.net_charge
    assert calls == [len(benchmark_molecules)]  # 100,000 atoms: all in one call


def test_a_bad_molecule_does_not_stop_the_batch(model):
    inputs = ["CCO", "C1CC", "[SiH4]", "CC(=O)[O-]", "[CH3]"]
    results = assign_parameters_many(inputs, model=model, names=["a", "b", "c", "d", "e"])
    kinds = [type(r).__name__ for r in results]
    assert kinds == ["Parametrized", "InputError", "ParametrizationError", "Parametrized", "ChemistryError"]
    assert str(results[2]).startswith(f"c: atom 0 (Si) is an element model '{model.name}' does not cover")
    _assert_same_parameters(results[3].parameters, gnnff.assign_parameters("CC(=O)[O-]", model=model).parameters)


def _component_rows(whole, part, indices):
    """Rows of ``part``'s tuples inside ``whole`` (tuples mapped through ``indices``)."""
    for term in whole.parameters.terms:
        lookup = {tuple(t): i for i, t in enumerate(whole.topology.indices(term).tolist())}
        rows = [lookup[tuple(indices[t])] for t in part.topology.indices(term)]
        yield term, rows


@pytest.mark.parametrize("model_name, options", [(None, {}), ("sage", {"charges": "mmff94"})])
def test_salt_is_one_system_with_each_component_parametrized_alone(model_name, options):
    # acetate, water and methylammonium interleaved in the input's atom order
    smiles = "CC(=O)[O-].O.C[NH3+]"
    whole = gnnff.assign_parameters(smiles, model=model_name, **options)
    charges = whole.parameters.nonbonded.charge
    assert abs(float(charges.sum())) < 1e-12
    pieces = gnnff.chem.molecule.components(whole.mol)
    assert [len(idx) for idx, _ in pieces] == [7, 3, 8]
    for (indices, part_mol), formal in zip(pieces, (-1, 0, 1)):
        assert abs(float(charges[indices].sum()) - formal) < 1e-12  # no charge flows between ions
        part = gnnff.assign_parameters(part_mol, model=model_name, **options)
        for term, rows in _component_rows(whole, part, indices):
            for f in term.fields():
                mine = getattr(whole.parameters.term(term), f.name)
                theirs = getattr(part.parameters.term(term), f.name)
                torch.testing.assert_close(mine[rows] if term.arity > 1 else mine[indices], theirs,
                                           rtol=RTOL, atol=ATOL)
    system = whole.to_openmm()
    assert system.getNumParticles() == whole.mol.GetNumAtoms()


def test_salt_outside_the_domain_names_the_atom_of_the_whole_input(model):
    with pytest.raises(gnnff.ParametrizationError, match=r"atom 4 \(Ca\) is an element .* supported: H C N O"):
        gnnff.assign_parameters("CC(=O)[O-].[Ca+2]", model=model)


def _write_sdf(path: Path, smiles: list[str]) -> Path:
    writer = Chem.SDWriter(str(path))
    for i, s in enumerate(smiles):
        mol = Chem.AddHs(Chem.MolFromSmiles(s))
        mol.SetProp("_Name", f"mol{i + 1}")
        writer.write(mol)
    writer.close()
    return path


MIXED = ["CCO", "c1ccccc1O", "[SiH4]", "CC(=O)[O-]", "C[NH3+].[Cl-]", "OC(=O)CCN"]


def _report(folder: Path) -> list[dict]:
    with (folder / "report.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_report_resume_and_overwrite(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _write_sdf(tmp_path / "many.sdf", MIXED)
    assert main(["parametrize", "many.sdf", "-o", "out/", "-q"]) == 1
    rows = _report(tmp_path / "out")
    assert list(rows[0]) == ["record", "name", "status", "output", "atoms", "net_charge", "error"]
    assert [r["status"] for r in rows] == ["ok", "ok", "failed", "ok", "ok", "ok"]
    assert [r["net_charge"] for r in rows] == ["0", "0", "0", "-1", "0", "0"]
    assert rows[2]["error"].startswith("many.sdf record 3 ('mol3'): atom 0 (Si) is an element")
    document = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert document["summary"] == {"records": 6, "ok": 5, "failed": 1, "skipped": 0}
    assert [r["status"] for r in document["records"]] == [r["status"] for r in rows]
    written = sorted(p.name for p in (tmp_path / "out").glob("*.xml"))
    assert written == ["mol1.xml", "mol2.xml", "mol4.xml", "mol5.xml", "mol6.xml"]  # named after the records
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*.xml")}

    capsys.readouterr()
    assert main(["parametrize", "many.sdf", "-o", "out/"]) == 1  # the bad record still fails
    out = capsys.readouterr().out
    assert "5 skipped (output exists)" in out
    assert [r["status"] for r in _report(tmp_path / "out")] == ["skipped", "skipped", "failed", "skipped",
                                                                  "skipped", "skipped"]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing rewritten

    (tmp_path / "out" / "mol2.xml").unlink()  # as if the first run had stopped before record 2
    assert main(["parametrize", "many.sdf", "-o", "out/", "-q"]) == 1
    assert [r["status"] for r in _report(tmp_path / "out")][:2] == ["skipped", "ok"]

    assert main(["parametrize", "many.sdf", "-o", "out/", "-q", "--overwrite"]) == 1
    assert [r["status"] for r in _report(tmp_path / "out")] == ["ok", "ok", "failed", "ok", "ok", "ok"]
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob(".gnnff-probe-*"))


def test_outputs_load_with_exact_net_charges(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_sdf(tmp_path / "ions.sdf", ["CC(=O)[O-]", "C[NH3+]", "[O-]C(=O)CC(=O)[O-]", "[NH3+]CC(=O)[O-]"])
    assert main(["parametrize", "ions.sdf", "-o", "out", "-q"]) == 0
    for row in _report(tmp_path / "out"):
        system = openmm.XmlSerializer.deserialize(Path(row["output"]).read_text())
        force = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
        total = sum(force.getParticleParameters(i)[0].value_in_unit(openmm.unit.elementary_charge)
                    for i in range(force.getNumParticles()))
        assert abs(total - int(row["net_charge"])) < 1e-9
        assert system.getNumParticles() == int(row["atoms"])


def test_workers_write_the_same_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_sdf(tmp_path / "many.sdf", MIXED * 12)  # 72 records: more than one chunk per worker
    assert main(["parametrize", "many.sdf", "-o", "serial", "-q"]) == 1
    assert main(["parametrize", "many.sdf", "-o", "parallel", "-q", "--workers", "2"]) == 1
    serial, parallel = _report(tmp_path / "serial"), _report(tmp_path / "parallel")
    assert [(r["record"], r["status"], r["error"]) for r in serial] == \
        [(r["record"], r["status"], r["error"]) for r in parallel]
    pairs = list(zip(sorted((tmp_path / "serial").glob("*.xml")), sorted((tmp_path / "parallel").glob("*.xml"))))
    assert len(pairs) == 60
    for a, b in pairs:
        assert a.name == b.name and a.read_text() == b.read_text()


def test_an_unexpected_error_in_a_chunk_fails_its_molecules_and_the_run_goes_on(tmp_path, model):
    """A chunk whose work raises outside gnnff's own errors (here the writer) gets failed rows
    naming the molecule; the chunks before and after it are written."""
    import re

    from gnnff.app.batch import Work, plan, run

    (tmp_path / "in.smi").write_text("CCO ethanol\nCCN ethylamine\nCCC propane\n")
    paths = [tmp_path / f"{i}.xml" for i in range(3)]
    work = Work(format="xml", model=model.name, model_fingerprint="test")

    def write(result, path: Path) -> None:
        if path.name == "1.xml":
            raise TypeError("a writer bug")
        path.write_text(gnnff.to_xml(result.to_openmm()))

    jobs = plan(gnnff.read_records(tmp_path / "in.smi"), paths, overwrite=False, work=work)
    rows = [row for chunk in run(jobs, model=model, model_options={}, write=write, work=work, chunk=1)
            for row in chunk]
    assert [row.status for row in rows] == ["ok", "failed", "ok"]
    assert re.fullmatch(r".*ethylamine.*: internal error \(TypeError: a writer bug\); please report it with this "
                        r"molecule as a gnnff bug", rows[1].error), rows[1].error
    assert paths[0].is_file() and not paths[1].exists() and paths[2].is_file()


@pytest.mark.parametrize("idle, count, expected", [
    (2.0, 1000, 2),   # two idle cores and many molecules: two workers (measured 1.6x)
    (0.8, 1000, 1),   # one core busy: workers would only compete with it
    (2.0, 100, 1),    # few molecules: starting workers costs more than it saves
])
def test_auto_workers_use_idle_cores_for_many_molecules(monkeypatch, idle, count, expected):
    from gnnff.app import workers

    monkeypatch.setattr(workers, "idle_cores", lambda cores: idle)
    monkeypatch.setattr(workers.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert workers.choose_workers(None, count) == expected
    assert workers.choose_workers(3, count) == min(3, count)


def test_idle_cores_is_a_fraction_of_the_cores():
    from gnnff.app import workers

    assert 0.0 <= workers.idle_cores(2, window=0.05) <= 2.0


@pytest.mark.parametrize("sizes, budget, expected", [
    ([10, 10, 10], 25, [(0, 2), (2, 3)]),
    ([10, 10, 10], 30, [(0, 3)]),
    ([40, 5, 5, 40], 30, [(0, 1), (1, 3), (3, 4)]),  # an item over the budget is a chunk of its own
    ([], 30, []),
])
def test_atom_budget_chunks_cover_every_item_in_order(sizes, budget, expected):
    from gnnff.chem.topology import atom_budget_chunks

    chunks = atom_budget_chunks(sizes, budget)
    assert [(c.start, c.stop) for c in chunks] == expected
