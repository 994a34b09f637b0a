"""benchmarks/harness.py, the helpers the benchmark scripts share, and the index of the scripts."""

from __future__ import annotations

import csv
import gzip
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gnnff
from gnnff.condensed.common import ResultStore

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p.relative_to(BENCHMARKS).as_posix() for p in BENCHMARKS.glob("*/*.py"))


def _load_harness():
    spec = importlib.util.spec_from_file_location("harness", BENCHMARKS / "harness.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


harness = _load_harness()


# --- statistics: gnnff's own, re-exported ---------------------------------------------------

def test_bootstrap_interval_of_a_known_case() -> None:
    """Two molecules, values 0 and 1: the mean is 0.5; a resample holds both molecules or one
    of them twice (mean 0 or 1 a quarter of the time each), so the 95 % interval is [0, 1]. One
    value repeated everywhere has no spread: its interval is the value itself."""
    assert harness.bootstrap_interval([np.array([0.0]), np.array([1.0])], np.mean) == (0.5, 0.0, 1.0)
    assert harness.bootstrap_interval([np.array([2.0, 2.0])] * 5, np.mean) == (2.0, 2.0, 2.0)
    stats = harness.bootstrap_statistics([1.5, 2.5, 3.5], [1.0, 2.0, 3.0])
    assert stats["RMSE"] == pytest.approx((0.5, 0.5, 0.5)) and stats["MSE"] == pytest.approx((0.5, 0.5, 0.5))


def test_paired_difference_is_negative_for_the_better_force_field() -> None:
    exp = np.zeros(8)
    other = np.array([2.0, -1.5, 0.5, 3.0, -2.5, 1.0, -0.5, 2.5])
    better = other - 0.2 * np.sign(other)
    value, low, high = harness.paired_difference(better, other, exp, harness.rmse)
    assert value < 0 and low <= value <= high < 0
    value, low, high = harness.paired_difference(other, better, exp, harness.rmse)
    assert value > 0 and 0 < low <= value <= high


def test_the_statistics_are_gnnffs_not_copies() -> None:
    from gnnff.condensed import common
    from gnnff.train import benchmark

    assert harness.bootstrap_interval is benchmark.bootstrap_interval
    assert harness.paired_differences is benchmark.paired_differences
    assert harness.paired_difference is common.paired_difference
    with pytest.raises(AttributeError, match="no attribute 'bootstrap_median'"):
        harness.bootstrap_median  # noqa: B018


# --- writing results ----------------------------------------------------------------------

def test_csv_and_json_written_atomically_with_their_columns(tmp_path: Path) -> None:
    rows = [{"force_field": "gnnff-v1", "RMSE": 1.05, "RMSE_low": 0.78}, {"force_field": "sage", "RMSE": 1.32,
                                                                             "RMSE_low": 0.71}]
    path = harness.write_csv(tmp_path / "summary.csv", rows)
    with open(path, newline="") as handle:
        read = list(csv.DictReader(handle))
    assert list(read[0]) == ["force_field", "RMSE", "RMSE_low"] and read[1]["RMSE"] == "1.32"
    harness.write_csv(tmp_path / "empty.csv", [], fieldnames=["record_id", "rmsd"])
    assert (tmp_path / "empty.csv").read_bytes() == b"record_id,rmsd\r\n"
    with pytest.raises(ValueError):  # a row with a column the header lacks: the old table stays whole
        harness.write_csv(path, [{"force_field": "x"}, {"force_field": "y", "extra": 1}])
    assert path.read_bytes().startswith(b"force_field,RMSE,RMSE_low\r\ngnnff-v1,")

    payload = {"ligands": ["CCO"], "held_out_drop": 0.59}
    target = harness.write_json(tmp_path / "results.json", payload)
    assert target.read_text() == json.dumps(payload, indent=2) + "\n" and json.loads(target.read_text()) == payload
    with pytest.raises(TypeError):
        harness.write_json(target, {"not": object()})
    assert json.loads(target.read_text()) == payload
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.csv", "results.json", "summary.csv"]  # no temp files


def test_png_is_written_atomically_and_the_figure_closed(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    with harness.png(tmp_path / "plot.png", dpi=50, ncols=2, figsize=(4, 2)) as (fig, axes):
        axes[0].plot([0, 1], [0, 1])
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number)
    with pytest.raises(RuntimeError, match="drawing failed"):
        with harness.png(tmp_path / "broken.png") as (fig, ax):
            raise RuntimeError("drawing failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.png"]


def test_report_failures_writes_and_says_where(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    harness.report_failures(tmp_path / "failed.txt", [])
    assert not (tmp_path / "failed.txt").exists() and capsys.readouterr().out == ""
    harness.report_failures(tmp_path / "failed.txt", ["sage a (x): boom", "sage b (y): bang"])
    assert (tmp_path / "failed.txt").read_text() == "sage a (x): boom\nsage b (y): bang\n"
    assert capsys.readouterr().out == f"2 failed: see {tmp_path / 'failed.txt'}\n"


def test_run_turns_a_gnnff_error_into_one_line() -> None:
    def main() -> None:
        raise gnnff.InputError("--ids 42: no such molecule")

    with pytest.raises(SystemExit) as stop:
        harness.run(main)
    assert stop.value.code == "test_benchmark_harness.py: error: --ids 42: no such molecule"


# --- force fields side by side --------------------------------------------------------------

def test_unknown_force_field_is_one_line_listing_the_known_ones() -> None:
    with pytest.raises(gnnff.ModelError, match=r"unknown model 'gaff-2\.11'; known models: .*gnnff-v1.*sage") as err:
        harness.force_fields(["gnnff-v1", "gaff-2.11"])
    assert "\n" not in str(err.value)
    with pytest.raises(gnnff.ModelError, match=r"missing\.pt: no such model file"):
        harness.force_fields(["missing.pt"])


def test_force_fields_are_labelled_by_name_or_file_stem(tmp_path: Path) -> None:
    checkpoint = tmp_path / "gnnff-v1-rc6.pt"
    checkpoint.write_bytes((Path(gnnff.__file__).parent / "weights" / "gnnff-v1.pt").read_bytes())
    sources = harness.force_fields(["gnnff-v1", str(checkpoint), "sage"])
    assert list(sources) == ["gnnff-v1", "gnnff-v1-rc6", "sage"]
    assert sources["sage"].name.startswith("sage")


def test_side_by_side_runs_stores_resumes_and_collects_failures(tmp_path: Path, capsys) -> None:
    calls = []

    def compute(label, source, item, row):
        calls.append((label, item))
        if (label, item) == ("b", "2"):
            raise ValueError("no box for this one\nsecond line")
        return {"value": source * row["x"], "protocol": {"steps": 10}}

    items = {"1": {"x": 1.0, "name": "one"}, "2": {"x": 2.0, "name": "two"}}
    store = ResultStore(tmp_path / "results")

    def run():
        return harness.run_side_by_side(items, {"a": 1.0, "b": 10.0}, store, {"steps": 10}, compute,
                                        describe=lambda row: row["name"],
                                        line=lambda label, item, row, done: f"{label} {item} {done['value']:g}")

    results, failed = run()
    assert results == {"a": {"1": {"value": 1.0, "protocol": {"steps": 10}}, "2": {"value": 2.0, "protocol":
                                                                                      {"steps": 10}}},
                       "b": {"1": {"value": 10.0, "protocol": {"steps": 10}}}}
    assert failed == ["b 2 (two): no box for this one"]
    out = capsys.readouterr()
    assert out.out.splitlines() == ["a 1 1", "b 1 10", "a 2 2"] and out.err == "b 2 (two): no box for this one\n"
    assert calls == [("a", "1"), ("b", "1"), ("a", "2"), ("b", "2")]
    assert harness.common_items(results) == ["1"] and harness.common_items({}) == []
    again, failed = run()  # resumed: only the failed item is computed again
    assert again == results and calls[4:] == [("b", "2")] and len(failed) == 1
    with pytest.raises(gnnff.InputError, match=r"a--1\.json: made with steps=10, this run has steps=20"):
        harness.run_side_by_side(items, {"a": 1.0}, store, {"steps": 20}, compute, describe=str, line=str)


# --- molecule sets ----------------------------------------------------------------------------

def test_read_smiles_plain_and_gzipped(tmp_path: Path) -> None:
    text = "CCO ethanol\n\nc1ccccc1\tbenzene\nCC(=O)[O-]\n"
    (tmp_path / "a.smi").write_text(text)
    with gzip.open(tmp_path / "a.smi.gz", "wt") as handle:
        handle.write(text)
    for name in ("a.smi", "a.smi.gz"):
        assert harness.read_smiles(tmp_path / name) == ["CCO", "c1ccccc1", "CC(=O)[O-]"]
        assert harness.read_smiles(tmp_path / name, limit=2) == ["CCO", "c1ccccc1"]


def test_industry_keys_are_plain_smiles_of_the_sdf(tmp_path: Path) -> None:
    sdf = ("m1\n\n\n  0  0  0  0  0  0  0  0  0  0999 V2000\nM  END\n> <SMILES QCArchive>\n"
           "[H:3][C@@:1]([OH:2])(F)Cl\n\n$$$$\n")
    (tmp_path / "set.sdf").write_text(sdf)
    assert harness.industry_keys(tmp_path / "set.sdf") == {"OC(F)Cl"}


def test_freesolv_and_pure_liquid_tables(tmp_path: Path) -> None:
    (tmp_path / "freesolv.csv").write_text(
        "id,name,smiles,dG_hyd_exp_kcal_mol,dG_hyd_exp_uncertainty,dG_hyd_gaff_calc_kcal_mol,"
        "dG_hyd_gaff_calc_uncertainty\nmobley_1,ethanol,CCO,-5.0,0.6,-4.5,0.03\nmobley_2,bad,C1CC,1,0.6,1,0.03\n")
    rows = harness.read_freesolv(tmp_path / "freesolv.csv")
    assert rows[0]["heavy_atoms"] == 3 and rows[0]["dG_hyd_exp_kcal_mol"] == -5.0 and rows[1]["heavy_atoms"] == 999
    (tmp_path / "physprop.csv").write_text(
        "Id,N Components,Component 1,Component 2,Temperature (K),Pressure (kPa),Density Value (g / ml),Source\n"
        "1,1,CO,,298.15,101.325,0.787,a\n2,2,CO,O,298.15,101.325,0.9,b\n3,1,CCO,,298.15,101.325,,c\n")
    assert harness.read_pure_liquids(tmp_path / "physprop.csv") == [
        {"id": "1", "smiles": "CO", "temperature_k": 298.15, "pressure_kpa": 101.325, "density": 0.787, "source": "a"}]


# --- the scripts and their index ------------------------------------------------------------

def test_the_index_names_every_script_and_no_other() -> None:
    index = (BENCHMARKS / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"benchmarks/((?:gas_phase|condensed|speed|training|peers)/\w+\.py)", index))
    assert named == set(SCRIPTS)
    assert not set(re.findall(r"benchmarks/(\w+\.py)", index)) - {"harness.py"}  # no path of the old layout


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_answers_help_from_the_checkout_root(script: str) -> None:
    run = subprocess.run([sys.executable, f"benchmarks/{script}", "--help"], cwd=BENCHMARKS.parent,
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage:")
