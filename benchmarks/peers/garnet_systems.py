"""OpenMM Systems of Garnet (garnetff 1.0.0), one per benchmark item, for gnnff's benchmarks.

Run with Garnet's own venv, never gnnff's (this script imports no gnnff)::

    python3.11 -m venv /work/garnet-venv
    /work/garnet-venv/bin/pip install torch==2.13.0          # first: the CPU wheel
    /work/garnet-venv/bin/pip install garnetff==1.0.0 openmm rdkit igraph \\
        acellera-openff-toolkit acellera-openff-units acellera-openff-utilities \\
        cachetools xmltodict python-constraint==1.4.0 pint pydantic packaging pyyaml

    python benchmarks/gas_phase/torsion_drives.py --export-items drives.json     # gnnff's venv
    /work/garnet-venv/bin/python benchmarks/peers/garnet_systems.py drives.json -o runs/peers/drives/garnet
    python benchmarks/gas_phase/torsion_drives.py --force-field systems:runs/peers/drives/garnet ...

ITEMS is a JSON list of ``{"id": ..., "mapped_smiles": ...}`` (every atom mapped, map n = atom
n - 1, hydrogens explicit: OpenFF's mapped SMILES), as ``--export-items`` of
``gas_phase/torsion_drives.py`` and ``gas_phase/industry.py`` writes it. For each item the
script writes ``OUT/<id>.xml`` (``openmm.XmlSerializer``), particles in the map order; vacuum,
no cutoff, no constraints, as Garnet's ``topology_to_openmm_system`` makes it by default.

Garnet bounds equilibrium angles at float32 pi and writes them with 4 decimals (3.1416), which
OpenMM's HarmonicAngleForce refuses (angle must be in [0, pi]): such angles are set to pi,
and how many were in ``OUT/garnet_systems.json``. A molecule Garnet refuses (element, formal
charge outside -1..2) or that fails otherwise is skipped, its one-line error in
``OUT/errors.json`` (id -> message), and the batch goes on. Every file is written through a
temporary file and a rename: nothing half-written. An id whose XML is already there is
skipped unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

#: The largest equilibrium angle OpenMM's HarmonicAngleForce accepts (radians).
MAX_ANGLE = math.pi


def atomic_write_text(path: Path, text: str) -> None:
    """``text`` to ``path`` through a temporary file beside it and a rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def clamp_angles(system) -> int:
    """Set every HarmonicAngleForce equilibrium angle above pi to pi; the number changed."""
    import openmm

    changed = 0
    for force in system.getForces():
        if not isinstance(force, openmm.HarmonicAngleForce):
            continue
        for i in range(force.getNumAngles()):
            a, b, c, theta, k = force.getAngleParameters(i)
            if theta.value_in_unit(openmm.unit.radian) > MAX_ANGLE:
                force.setAngleParameters(i, a, b, c, MAX_ANGLE, k)
                changed += 1
    return changed


def garnet_system(mapped_smiles: str):
    """Garnet's System of one molecule, particles in the mapped SMILES' map order, angles
    clamped: (system, angles clamped)."""
    from garnetff import garnet
    from openff.toolkit.topology import Molecule, Topology

    molecule = Molecule.from_mapped_smiles(mapped_smiles, allow_undefined_stereo=True)
    system, _ = garnet.topology_to_openmm_system(Topology.from_molecules([molecule]))
    if system.getNumParticles() != molecule.n_atoms:
        raise ValueError(f"Garnet gave {system.getNumParticles()} particles for {molecule.n_atoms} atoms")
    return system, clamp_angles(system)


def read_items(path: Path) -> list[dict]:
    """The items of ``path``; SystemExit with one line when it is not a list of id / mapped_smiles."""
    items = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(items, list) or not all(isinstance(i, dict) and {"id", "mapped_smiles"} <= set(i)
                                              for i in items):
        raise SystemExit(f"{path}: not a JSON list of {{\"id\": ..., \"mapped_smiles\": ...}}; "
                         "write it with --export-items of gas_phase/torsion_drives.py or gas_phase/industry.py")
    ids = [str(i["id"]) for i in items]
    bad = [i for i in ids if not i or "/" in i or i.startswith(".")]
    if bad or len(set(ids)) < len(ids):
        raise SystemExit(f"{path}: ids must be unique file-name stems (no '/', no leading '.'): "
                         f"{bad[:3] or 'duplicates'}")
    return items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("items", type=Path, help="JSON list of {id, mapped_smiles}")
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder for <id>.xml, errors.json")
    parser.add_argument("--overwrite", action="store_true", help="make Systems whose XML exists again")
    args = parser.parse_args(argv)
    items = read_items(args.items)
    import openmm
    import torch
    from garnetff import garnet as _  # noqa: F401  (the model loads here, not in the first item's time)

    torch.set_num_threads(1)
    args.output.mkdir(parents=True, exist_ok=True)
    errors_path, report_path = args.output / "errors.json", args.output / "garnet_systems.json"
    errors = json.loads(errors_path.read_text(encoding="utf-8")) if errors_path.is_file() else {}
    report = json.loads(report_path.read_text(encoding="utf-8")) if report_path.is_file() else {}
    report.setdefault("clamped_angles", {})
    report.setdefault("seconds", {})
    report["garnetff"] = _version("garnetff")
    report["openmm"] = openmm.__version__
    start, done = time.perf_counter(), 0
    for item in items:
        item_id = str(item["id"])
        target = args.output / f"{item_id}.xml"
        if target.is_file() and not args.overwrite:
            continue
        began = time.perf_counter()
        try:
            system, clamped = garnet_system(item["mapped_smiles"])
            atomic_write_text(target, openmm.XmlSerializer.serialize(system))
        except Exception as err:  # noqa: BLE001  (Garnet and OpenFF raise many kinds; one line each, go on)
            message = (str(err).strip().splitlines() or [""])[0]
            errors[item_id] = f"{type(err).__name__}: {message}"
            print(f"{item_id}: failed: {errors[item_id]}", file=sys.stderr, flush=True)
        else:
            errors.pop(item_id, None)
            report["clamped_angles"][item_id] = clamped
            done += 1
        report["seconds"][item_id] = round(time.perf_counter() - began, 3)
        atomic_write_text(errors_path, json.dumps(errors, indent=0, sort_keys=True) + "\n")
        atomic_write_text(report_path, json.dumps(report, indent=1, sort_keys=True) + "\n")
    failed = sum(str(i["id"]) in errors for i in items)
    clamped = sum(1 for i in items if report["clamped_angles"].get(str(i["id"])))
    print(f"{done} Systems written in {time.perf_counter() - start:.0f} s to {args.output}; "
          f"{failed} of {len(items)} items failed (see {errors_path}); angles clamped to pi in {clamped}")
    return 0


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


if __name__ == "__main__":
    sys.exit(main())
