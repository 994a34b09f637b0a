"""The package tree shows the pipeline and its imports run one way, from the outside in.

Layers (a module may import its own layer and those below, never above):

0. foundation: ``schema``, ``units``, ``errors``, ``files``, ``threads``, ``progress``, ``_version``, ``_lazy``
1. ``chem``: molecules, topology, features
2. ``nn`` (network, checkpoints) and ``mm`` (energy, export); neither imports the other
3. ``sources``: model registry, Sage
4. ``api``: the public Python API
5. ``train``: configs, data, labelers, training, evaluation
6. ``app``, ``openmm``, ``condensed``: CLI, batch mode, formats, MD, the template
   generator, condensed-phase protocols
7. ``testing`` and the package ``__init__`` (which re-exports the API lazily)

Function-level imports count as much as module-level ones.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gnnff"

LAYERS = {
    "schema": 0, "units": 0, "errors": 0, "files": 0, "threads": 0, "progress": 0, "_version": 0, "_lazy": 0,
    "chem": 1, "nn": 2, "mm": 2, "sources": 3, "api": 4, "train": 5,
    "app": 6, "openmm": 6, "condensed": 6, "testing": 7, "__init__": 7, "__main__": 7,
}
SIBLINGS_APART = {frozenset({"nn", "mm"})}


def _unit(module: str) -> str:
    """``gnnff.chem.molecule`` -> ``chem``; ``gnnff.schema`` -> ``schema``."""
    return module.split(".")[1] if module.count(".") else "__init__"


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out.append((".".join(parts[:-1] if parts[-1] == "__init__" else parts), path))
    return out


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("gnnff")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gnnff") and node.level == 0:
            if node.module == "gnnff":
                found |= {f"gnnff.{a.name}" for a in node.names}
            else:
                found.add(node.module)
    return found


def test_every_module_belongs_to_a_layer():
    units = {_unit(name) for name, _ in _modules() if name != "gnnff"}
    assert units <= set(LAYERS), f"modules outside the declared layers: {sorted(units - set(LAYERS))}"
    top_level = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert top_level == sorted(["__init__", "__main__", "_lazy", "_version", "api", "errors", "files", "openmm",
                                "progress", "schema", "testing", "threads", "units"])


@pytest.mark.parametrize("name, path", _modules(), ids=[n for n, _ in _modules()])
def test_imports_point_inwards(name, path):
    own = _unit(name) if name != "gnnff" else "__init__"
    for imported in sorted(_imports(path)):
        if imported == "gnnff":
            continue
        other = _unit(imported)
        assert other in LAYERS, f"{name} imports {imported}, which is in no layer"
        assert LAYERS[other] <= LAYERS[own], f"{name} (layer {own}) imports {imported} (layer {other}), an outer layer"
        assert frozenset({own, other}) not in SIBLINGS_APART, f"{name} imports {imported}: {own} and {other} stay apart"


def test_the_schema_and_units_import_nothing_from_gnnff():
    for stem in ("schema", "units", "errors", "files", "progress"):
        assert not _imports(PACKAGE / f"{stem}.py"), stem


def test_stage_modules_resolve_from_a_bare_import():
    """``import gnnff`` then ``gnnff.chem.molecule`` (etc.): each stage package imports its
    modules on first access, and an unknown name is an AttributeError."""
    import subprocess
    import sys

    code = ("import gnnff; print(gnnff.chem.molecule.__name__, gnnff.mm.energy.__name__, gnnff.nn.network.__name__, "
            "gnnff.sources.models.__name__, gnnff.train.scan.__name__, gnnff.app.formats.__name__)\n"
            "try:\n    gnnff.chem.nothing\nexcept AttributeError as err:\n    print(err)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == ("gnnff.chem.molecule gnnff.mm.energy gnnff.nn.network gnnff.sources.models "
                                          "gnnff.train.scan gnnff.app.formats")
    assert "module 'gnnff.chem' has no attribute 'nothing'" in done.stdout
