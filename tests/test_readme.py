"""The README's Python snippets run verbatim, so they cannot rot.

Each ```python block of the sections below is executed as written, in a temporary
folder holding a link to the checkout's ``examples/`` (the snippets name files the way
the Quickstart does, relative to the checkout).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
EXAMPLES = ROOT / "examples"


def _section(title: str) -> str:
    """The text of the ``## title`` section, up to the next ``## `` heading."""
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", text, flags=re.M | re.S)
    assert match, f"README.md has no section '## {title}'"
    return match.group(1)


def _python_blocks(title: str) -> list[str]:
    """The section's ```python blocks, each preceded by blank lines so that a traceback
    gives the README's own line numbers."""
    text = README.read_text(encoding="utf-8")
    start = text.index(_section(title))
    blocks = []
    for match in re.finditer(r"^```python\n(.*?)^```", _section(title), flags=re.M | re.S):
        line = text.count("\n", 0, start + match.start(1))
        blocks.append("\n" * line + match.group(1))
    return blocks


def _files_named(code: str) -> list[Path]:
    """Files under examples/ that a snippet reads."""
    return [ROOT / name for name in re.findall(r"[\"'](examples/[^\"']+)[\"']", code)]


def _run(code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    missing = [str(p.relative_to(ROOT)) for p in _files_named(code) if not p.is_file()]
    if missing:
        pytest.skip(f"the snippet reads {', '.join(missing)}, not in this checkout")
    (tmp_path / "examples").symlink_to(EXAMPLES, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    exec(compile(code, str(README), "exec"), namespace)
    return namespace


API_BLOCKS = _python_blocks("Python API")


def test_python_api_section_has_snippets():
    assert API_BLOCKS


@pytest.mark.sqm
@pytest.mark.parametrize("index", range(len(API_BLOCKS)))
def test_python_api_snippet_runs(index, tmp_path, monkeypatch):
    import openmm

    namespace = _run(API_BLOCKS[index], tmp_path, monkeypatch)
    assert isinstance(namespace["system"], openmm.System)
    if "energies" in namespace:
        energies = namespace["energies"]
        assert set(energies) == {term.name for term in namespace["gnnff"].REQUIRED_TERMS}
    if "ethanol.xml" in API_BLOCKS[index]:
        assert (tmp_path / "ethanol.xml").is_file()


OPENMM_BLOCKS = _python_blocks("In OpenMM: ligands in proteins and water")


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(OPENMM_BLOCKS)))
def test_openmm_snippet_runs(index, tmp_path, monkeypatch):
    import openmm

    namespace = _run(OPENMM_BLOCKS[index], tmp_path, monkeypatch)
    system = namespace["system"]
    assert isinstance(system, openmm.System)
    assert system.getNumParticles() == namespace["modeller"].topology.getNumAtoms()


def test_install_section_names_the_cpu_wheel_and_every_openff_distribution():
    install = _section("Install")
    assert "pip install torch --index-url https://download.pytorch.org/whl/cpu" in install
    setup = (ROOT / "setup.cfg").read_text(encoding="utf-8")
    distributions = sorted(set(re.findall(r"^\s+(acellera-[a-z0-9-]+)", setup, flags=re.M)))
    assert distributions
    missing = [name for name in distributions if f"`{name}`" not in install]
    assert not missing, f"README's Install section does not name {missing} (setup.cfg does)"
