"""Intra-op threads during inference (gnnff.threads): one thread on small graphs, the
caller's setting restored afterwards (also after an error), user overrides, nesting."""

from __future__ import annotations

import threading

import pytest
import torch
from openmm import app

import gnnff
from gnnff import threads
from gnnff.errors import GnnffError
from gnnff.openmm import GNNFFTemplateGenerator, to_openmm_topology


@pytest.fixture(autouse=True)
def caller_threads(monkeypatch):
    """Every test starts from 3 torch threads (not the machine's default), no override, no
    GNNFF_NUM_THREADS; the original state comes back afterwards."""
    before = torch.get_num_threads()
    monkeypatch.delenv(threads.ENV, raising=False)
    previous = gnnff.set_inference_threads(None)
    torch.set_num_threads(3)
    yield 3
    gnnff.set_inference_threads(previous)
    torch.set_num_threads(before)


@pytest.fixture
def seen(monkeypatch):
    """Thread counts observed inside each call of the default model's network."""
    source = gnnff.get_model()
    network = source.network
    counts: list[int] = []

    def recording(graph):
        counts.append(torch.get_num_threads())
        return network(graph)

    monkeypatch.setattr(source, "network", recording)
    return counts


def test_small_graph_runs_on_one_thread_and_caller_setting_is_restored(seen):
    system = gnnff.parametrize("CC(=O)Oc1ccccc1C(=O)O")
    assert system.getNumParticles() == 21
    assert seen == [1]
    assert torch.get_num_threads() == 3


def test_batched_path_runs_on_one_thread(seen):
    results = gnnff.assign_parameters_many(["CCO", "c1ccccc1", "CC(=O)[O-]"])
    assert all(isinstance(r, gnnff.Parametrized) for r in results)
    assert seen == [1]  # one network pass for the three
    assert torch.get_num_threads() == 3


def test_template_generator_runs_on_one_thread(seen):
    mol = gnnff.load_molecule("CCO")
    forcefield = app.ForceField()
    forcefield.registerTemplateGenerator(GNNFFTemplateGenerator(mol).generator)
    system = forcefield.createSystem(to_openmm_topology(mol), nonbondedMethod=app.NoCutoff)
    assert system.getNumParticles() == mol.GetNumAtoms()
    assert seen == [1]
    assert torch.get_num_threads() == 3


def test_caller_setting_restored_after_an_error(monkeypatch):
    source = gnnff.get_model()

    def broken(graph):
        assert torch.get_num_threads() == 1
        raise RuntimeError("network failed")

    monkeypatch.setattr(source, "network", broken)
    with pytest.raises(RuntimeError, match="network failed"):
        gnnff.parametrize("CCO")
    assert torch.get_num_threads() == 3
    with pytest.raises(KeyError), threads.inference_threads(10):
        raise KeyError("inside")
    assert torch.get_num_threads() == 3


def test_override_function_beats_environment_beats_automatic(seen, monkeypatch):
    monkeypatch.setenv(threads.ENV, "2")
    gnnff.parametrize("CCO")
    assert gnnff.set_inference_threads(4) is None
    gnnff.parametrize("CCO")
    assert gnnff.set_inference_threads(None) == 4
    monkeypatch.setenv(threads.ENV, "auto")
    gnnff.parametrize("CCO")
    assert seen == [2, 4, 1]
    assert torch.get_num_threads() == 3


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_bad_environment_value_is_an_error_naming_it(monkeypatch, value):
    monkeypatch.setenv(threads.ENV, value)
    with pytest.raises(GnnffError, match=f"GNNFF_NUM_THREADS='{value}'.*positive number of threads or 'auto'"):
        gnnff.parametrize("CCO")
    assert torch.get_num_threads() == 3


@pytest.mark.parametrize("value", [0, -2, 1.5, "2", True])
def test_bad_override_is_refused(value):
    with pytest.raises(ValueError, match="positive number of threads, or None"):
        gnnff.set_inference_threads(value)


def test_contexts_nest():
    with threads.inference_threads(10) as outer:
        assert outer == torch.get_num_threads() == 1
        gnnff.set_inference_threads(2)
        with threads.inference_threads(10) as inner:
            assert inner == torch.get_num_threads() == 2
            gnnff.set_inference_threads(None)
            with threads.inference_threads(50_000):  # large, but never more than the caller's (2)
                assert torch.get_num_threads() <= 2
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 3


def test_large_graph_uses_the_idle_cores_the_caller_allows(monkeypatch):
    monkeypatch.setattr(threads, "available_cores", lambda: 8)
    monkeypatch.setattr(threads, "_idle_cores", lambda: 6)
    n = threads.SMALL_GRAPH_ATOMS
    assert threads.choose_threads(n - 1, 4) == 1
    assert threads.choose_threads(n, 4) == 4
    assert threads.choose_threads(n, 16) == 6
    monkeypatch.setattr(threads, "_idle_cores", lambda: 1)  # every other core busy
    assert threads.choose_threads(n, 4) == 1
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    monkeypatch.setattr(threads, "_idle_cores", lambda: 6)
    assert threads.choose_threads(n, 4) == 2


def test_available_and_idle_cores_are_positive():
    assert 1 <= threads.available_cores()
    assert 1 <= threads._idle_cores()


@pytest.mark.skipif("OpenMP" not in torch.__config__.parallel_info(),
                    reason="per-thread settings hold for PyTorch's OpenMP builds")
def test_concurrent_python_threads_keep_the_main_thread_setting(seen):
    errors: list[BaseException] = []

    def work():
        try:
            for smiles in ("CCO", "CCN", "CCC"):
                gnnff.parametrize(smiles)
        except BaseException as err:  # noqa: BLE001  (re-raised in the main thread)
            errors.append(err)

    workers = [threading.Thread(target=work) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors
    assert seen == [1] * 6
    assert torch.get_num_threads() == 3


def test_serial_numerics_runs_blas_and_torch_on_one_thread_and_restores_them():
    from threadpoolctl import threadpool_info

    from gnnff.threads import serial_numerics

    def blas() -> list[int]:
        return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]

    torch.set_num_threads(2)
    before = blas()
    assert before, "numpy should expose a BLAS pool to threadpoolctl"
    with pytest.raises(RuntimeError, match="inside"):
        with serial_numerics():
            assert torch.get_num_threads() == 1 and set(blas()) == {1}
            raise RuntimeError("inside")
    assert torch.get_num_threads() == 2 and blas() == before
