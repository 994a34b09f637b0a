"""The package tree shows the pipeline and its imports run one way, from the outside in.

Floors (a module may import its own floor and those below, never above):

0. foundation: ``schema``, ``units``, ``errors``, ``files``, ``threads``, ``pool``, ``progress``, ``_version``, ``_lazy``
1. ``chem``: molecules, topology, features
2. ``nn`` (network, checkpoints) and ``mm`` (energy, export); neither imports the other
3. ``sources``: model registry, the trained-model source, Sage
4. ``api``: the public Python API
5. ``train``: configs, data, labelers, training, fine-tuning, evaluation
6. ``openmm``: System building (OpenMM topologies, ffxml templates), the template
   generator and its cache
7. ``app`` (CLI, batch mode, formats, MD) and ``condensed`` (condensed-phase protocols),
   both over ``openmm``
8. ``testing``, ``__main__`` and the package ``__init__`` (which re-exports the API lazily)

Function-level imports count as much as module-level ones, relative imports are resolved,
and no module inside the package imports the package root (``import gnnff``, ``from gnnff
import X``): it would load whatever the root re-exports, from every floor.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gnnff"
ROOT = Path(__file__).resolve().parents[1]

FLOORS = {
    "schema": 0, "units": 0, "errors": 0, "files": 0, "threads": 0, "pool": 0, "progress": 0, "_version": 0, "_lazy": 0,
    "chem": 1, "nn": 2, "mm": 2, "sources": 3, "api": 4, "train": 5, "openmm": 6,
    "app": 7, "condensed": 7, "testing": 8, "__init__": 8, "__main__": 8,
}
SIBLINGS_APART = {frozenset({"nn", "mm"})}
#: The package's single-file modules (every subpackage is a unit of FLOORS too).
TOP_LEVEL_MODULES = {"__init__", "__main__", "_lazy", "_version", "api", "errors", "files", "pool", "progress", "schema",
                     "testing", "threads", "units"}

#: Imports waiting for a change in another branch, each with the reason; an entry that no
#: longer matches anything fails test_no_stale_exceptions, so they cannot outlive it.
PENDING: dict[tuple[str, str], str] = {}


def unit_of(module: str) -> str:
    """``gnnff.chem.molecule`` -> ``chem``; ``gnnff.schema`` -> ``schema``; ``gnnff`` -> ``__init__``."""
    return module.split(".")[1] if module.count(".") else "__init__"


def imported_modules(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """The gnnff modules that ``source`` (the text of module ``module``) imports, anywhere in
    it (function bodies and ``TYPE_CHECKING`` blocks too); relative imports resolved.
    ``from gnnff import x`` is the root ``gnnff``: it runs the root's ``__init__`` and may
    give any name the root re-exports."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name == "gnnff" or a.name.startswith("gnnff.")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                name = ".".join([*base, *([node.module] if node.module else [])])
                if not node.module:  # `from . import x`: x may be a submodule of the package
                    found |= {f"{name}.{a.name}" if name != "gnnff" else name for a in node.names}
                    continue
            else:
                name = node.module or ""
            if name == "gnnff" or name.startswith("gnnff."):
                found.add(name)
    return found


def violations(module: str, source: str, *, is_package: bool = False) -> list[str]:
    """Why module ``module`` (text ``source``) breaks the floors: an import of a higher
    floor, of a sibling kept apart, of a module in no floor, or of the package root."""
    own = unit_of(module)
    out = []
    for imported in sorted(imported_modules(source, module, is_package=is_package)):
        if (module, imported) in PENDING:
            continue
        if imported == "gnnff":
            if module != "gnnff":
                out.append(f"{module} imports the package root gnnff; import the module that defines the name")
            continue
        other = unit_of(imported)
        if other not in FLOORS:
            out.append(f"{module} imports {imported}, which is on no floor")
        elif FLOORS[other] > FLOORS[own]:
            out.append(f"{module} (floor {FLOORS[own]}, {own}) imports {imported} (floor {FLOORS[other]}, {other}), "
                       "a higher floor")
        elif frozenset({own, other}) in SIBLINGS_APART:
            out.append(f"{module} imports {imported}: {own} and {other} stay apart")
    return out


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out.append((".".join(parts[:-1] if parts[-1] == "__init__" else parts), path))
    return out


def test_every_module_belongs_to_a_floor():
    units = {unit_of(name) for name, _ in _modules()}
    assert units <= set(FLOORS), f"modules outside the declared floors: {sorted(units - set(FLOORS))}"
    top_level = {p.stem for p in PACKAGE.glob("*.py")}
    assert top_level <= TOP_LEVEL_MODULES, f"undeclared top-level modules: {sorted(top_level - TOP_LEVEL_MODULES)}"
    assert TOP_LEVEL_MODULES <= set(FLOORS)


@pytest.mark.parametrize("name, path", _modules(), ids=[n for n, _ in _modules()])
def test_imports_point_inwards(name, path):
    assert not violations(name, path.read_text(), is_package=path.name == "__init__.py")


def test_the_schema_and_units_import_nothing_from_gnnff():
    for stem in ("schema", "units", "errors", "files"):
        assert not imported_modules((PACKAGE / f"{stem}.py").read_text(), f"gnnff.{stem}"), stem


@pytest.mark.parametrize("module, source, why", [
    ("gnnff.chem.topology", "def f():\n    from gnnff.mm.energy import compute_energy\n", "a higher floor"),
    ("gnnff.openmm.generator", "from gnnff.app.formats import write\n", "a higher floor"),
    ("gnnff.openmm.cache", "import gnnff.condensed.common\n", "a higher floor"),
    ("gnnff.openmm.templates", "from gnnff.testing import compare_with_openmm\n", "a higher floor"),
    ("gnnff.train.generate", "def f():\n    import gnnff\n    return gnnff.parametrize\n", "the package root"),
    ("gnnff.api", "from gnnff import parametrize\n", "the package root"),
    ("gnnff.sources.models", "if True:\n    from gnnff import chem\n", "the package root"),
    ("gnnff.nn.network", "from gnnff.mm import energy\n", "stay apart"),
    ("gnnff.mm.export", "from ..nn.network import Graph\n", "stay apart"),
    ("gnnff.chem.features", "from ..sources import models\n", "a higher floor"),
    ("gnnff.chem", "from ..api import parametrize\n", "a higher floor"),
    ("gnnff.chem.molecule", "from .. import errors\n", "the package root"),
    ("gnnff.units", "from gnnff.kitchen import sink\n", "on no floor"),
])
def test_the_checker_catches_a_violation(module, source, why):
    """Each source breaks the floors once; the checker names the module and the reason."""
    found = violations(module, source, is_package=module == "gnnff.chem")
    assert len(found) == 1 and found[0].startswith(module) and why in found[0], found


@pytest.mark.parametrize("module, source", [
    ("gnnff.app.simulate", "from gnnff.openmm import GNNFFTemplateGenerator\n"),
    ("gnnff.condensed.liquids", "from gnnff.openmm import atom_names\n"),
    ("gnnff.openmm.generator", "from gnnff.api import assign_parameters\nfrom gnnff.openmm.cache import open_cache\n"),
    ("gnnff.chem.molecule", "from . import topology\nfrom ..errors import InputError\n"),
    ("gnnff", "from gnnff._version import __version__\nimport gnnff.api\n"),
    ("gnnff.train.generate", "import openmm\nfrom openmm import app\nimport gnnffx\n"),
])
def test_the_checker_passes_inward_imports(module, source):
    assert not violations(module, source, is_package=module == "gnnff")


def test_no_stale_exceptions():
    """Each PENDING import still happens; drop the entry (and its cause) when it does not."""
    for module, imported in PENDING:
        path = PACKAGE.joinpath(*module.split(".")[1:]).with_suffix(".py")
        found = imported_modules(path.read_text(), module) if path.is_file() else set()
        assert imported in found, f"{module} no longer imports {imported}: remove it from PENDING"


def test_gnn_source_is_imported_from_the_sources_floor_only():
    """GNNSource is a parameter source: it lives in gnnff.sources.gnn, not in the checkpoint module."""
    callers = [str(p.relative_to(ROOT)) for d in ("gnnff", "tests", "benchmarks", "recipes", "examples")
               for p in (ROOT / d).rglob("*.py") if _imports_name(p.read_text(), "gnnff.nn.checkpoint", "GNNSource")]
    assert not callers, f"import GNNSource from gnnff.sources.gnn: {callers}"


def _imports_name(source: str, module: str, name: str) -> bool:
    """Whether ``source`` has ``from <module> import <name>`` anywhere."""
    return any(isinstance(node, ast.ImportFrom) and node.module == module and any(a.name == name for a in node.names)
               for node in ast.walk(ast.parse(source)))


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


def test_the_openmm_package_does_not_shadow_the_openmm_library():
    """``gnnff/openmm/`` imports OpenMM as ``openmm`` (absolute): the library, not itself; and
    importing it makes the generator one of openmmforcefields' (direct) subclasses."""
    import subprocess
    import sys

    code = ("import gnnff.openmm, openmm, openmm.app; print(openmm.__name__, hasattr(openmm, 'System'), "
            "gnnff.openmm.templates.app is openmm.app)\n"
            "try:\n    from openmmforcefields.generators.template_generators import SmallMoleculeTemplateGenerator\n"
            "    print(gnnff.openmm.GNNFFTemplateGenerator in SmallMoleculeTemplateGenerator.__subclasses__())\n"
            "except ImportError:\n    print(True)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["openmm", "True", "True", "True"]
