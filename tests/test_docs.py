"""README.md and the documentation site cannot rot: their code runs, their paths exist,
their references are generated from the code, and the site builds with warnings as errors.

Code blocks (the conventions, also in docs/architecture.md):

- Every fenced block names its language. ```` ```python ```` and ```` ```bash ```` blocks run;
  every other language (``text``, ``yaml``, ...) is shown only.
- A page's blocks run in order in one temporary folder that holds a link to the checkout's
  ``examples/``; Python blocks share one namespace, bash blocks run as
  ``bash -euo pipefail -c BLOCK`` with the checkout's gnnff (``PYTHONPATH``) and this
  interpreter's ``bin/`` first on ``PATH``.
- ``<!-- notest: reason -->`` on the line before a block keeps it from running (installs,
  hour-long runs, the test suite itself); the reason is required.
- ``<!-- slow -->`` before a block runs it only in the slow tests, on its own (a fresh folder
  and namespace): a slow block must not use what earlier blocks of its page made.
- A block included from another file (``--8<-- "README.md:section"``, pymdownx.snippets) runs
  where it is written, not where it is included.
"""

from __future__ import annotations

import configparser
import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
EXAMPLES = ROOT / "examples"
PAGES = [README, *sorted(DOCS.rglob("*.md"))]

#: Languages whose blocks run, and those shown only.
RUNNABLE = ("python", "bash")
SHOWN = ("text", "yaml", "json", "csv", "xml", "toml", "ini", "console", "diff")

_FENCE = re.compile(r"^(?P<indent>[ ]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_MARK = re.compile(r"^\s*<!--\s*(?P<kind>notest|slow)\b:?\s*(?P<reason>.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: Path
    line: int  # 1-based line of the block's first code line
    language: str
    code: str
    notest: str | None  # the reason it does not run, if marked
    slow: bool

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def page_blocks(page: Path) -> list[Block]:
    """The fenced blocks of ``page`` with the markers that precede them."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks, marks, i = [], {}, 0
    while i < len(lines):
        mark, fence = _MARK.match(lines[i]), _FENCE.match(lines[i])
        if mark:
            marks[mark["kind"]] = mark["reason"]
        elif fence:
            indent, close = len(fence["indent"]), re.compile(rf"^\s*{re.escape(fence['fence'])}\s*$")
            end = i + 1
            while end < len(lines) and not close.match(lines[end]):
                end += 1
            code = "\n".join(line[indent:] for line in lines[i + 1:end]) + "\n"
            blocks.append(Block(page, i + 2, fence["info"].split()[0] if fence["info"].strip() else "", code,
                                marks.get("notest"), "slow" in marks))
            marks, i = {}, end
        elif lines[i].strip() and not lines[i].lstrip().startswith("<!--"):
            marks = {}  # a marker applies to the block right after it
        i += 1
    return blocks


ALL_BLOCKS = [block for page in PAGES for block in page_blocks(page)]
RUN = [b for b in ALL_BLOCKS if b.language in RUNNABLE and b.notest is None]


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _run(blocks: list[Block], folder: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Run ``blocks`` in order in ``folder``; the Python namespace they shared."""
    from gnnff.sources import models

    (folder / "examples").symlink_to(EXAMPLES, target_is_directory=True)
    monkeypatch.chdir(folder)
    # a page may register a model (python-api.md does): it must not outlive the page
    monkeypatch.setattr(models, "_REGISTERED", dict(models._REGISTERED))
    namespace: dict = {"__name__": "__docs__"}
    for block in blocks:
        if block.language == "python":
            # leading newlines: a traceback names the page's own line numbers
            exec(compile("\n" * (block.line - 1) + block.code, str(block.page), "exec"), namespace)
            continue
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", block.code], cwd=folder, env=_environment(),
                              capture_output=True, text=True, timeout=900, check=False)
        assert done.returncode == 0, f"{block.name}: exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return namespace


def _readme_wrote(folder: Path, namespace: dict) -> None:
    import openmm

    assert isinstance(namespace["system"], openmm.System)
    for name in ("aspirin.xml", "ligands/report.csv", "aspirin-system.xml", "aspirin.prmtop",
                 "aspirin.inpcrd", "aspirin.top", "aspirin.gro", "aspirin.ffxml"):
        assert (folder / name).is_file(), f"README's blocks did not write {name}"


#: Checks after a page's fast blocks ran (what the blocks promise beyond not failing).
AFTER = {README: _readme_wrote}

FAST_PAGES = sorted({b.page for b in RUN if not b.slow}, key=PAGES.index)


@pytest.mark.parametrize("page", FAST_PAGES, ids=[str(p.relative_to(ROOT)) for p in FAST_PAGES])
def test_page_code_runs(page, tmp_path, monkeypatch):
    namespace = _run([b for b in RUN if b.page == page and not b.slow], tmp_path, monkeypatch)
    if page in AFTER:
        AFTER[page](tmp_path, namespace)


SLOW_BLOCKS = [b for b in RUN if b.slow]


@pytest.mark.slow
@pytest.mark.parametrize("block", SLOW_BLOCKS, ids=[b.name for b in SLOW_BLOCKS])
def test_slow_block_runs(block, tmp_path, monkeypatch):
    _run([block], tmp_path, monkeypatch)


def test_every_block_names_a_known_language():
    unknown = [f"{b.name} ({b.language or 'none'})" for b in ALL_BLOCKS if b.language not in RUNNABLE + SHOWN]
    assert not unknown, f"fences without a known language (run: {RUNNABLE}, shown: {SHOWN}): {unknown}"


def test_blocks_that_do_not_run_say_why():
    assert not [b.name for b in ALL_BLOCKS if b.notest is not None and not b.notest]


def test_the_extractor_reads_markers_and_indented_fences(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("<!-- notest: installs -->\n```bash\npip install x\n```\n\ntext\n\n"
                    "!!! note\n    <!-- slow -->\n    ```python\n    x = 1\n    ```\n\n"
                    "<!-- slow -->\nprose resets the marker\n```python\ny = 2\n```\n", encoding="utf-8")
    first, second, third = page_blocks(page)
    assert (first.language, first.notest, first.line) == ("bash", "installs", 3)
    assert (second.code, second.slow, second.notest) == ("x = 1\n", True, None)
    assert (third.code, third.slow) == ("y = 2\n", False)


def test_readme_is_a_front_door():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250, "README.md is the front door: details go to docs/"
    quickstart = _section(text, "Quickstart")
    assert "gnnff parametrize examples/aspirin.sdf -o aspirin.xml" in quickstart
    assert "python -m pytest -q" in quickstart and 'python -m pytest -q -m "not slow"' in quickstart


def _section(text: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"no section '## {title}'"
    return match.group(1)


def test_ci_builds_the_docs_then_runs_the_readmes_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    build = [i for i, line in enumerate(ci) if "mkdocs build --strict" in line and not line.lstrip().startswith("#")]
    test = [i for i, line in enumerate(ci) if line.strip() == "python -m pytest -q"]
    assert build and test and build[0] < test[0], ".ci/run: mkdocs build --strict, then python -m pytest -q"


@pytest.mark.parametrize("page", [README, DOCS / "installation.md"], ids=["README.md", "installation.md"])
def test_install_names_the_cpu_wheel_and_every_openff_distribution(page):
    text = page.read_text(encoding="utf-8")
    install = _section(text, "Install") if page == README else text
    assert "pip install torch --index-url https://download.pytorch.org/whl/cpu" in install
    setup = (ROOT / "setup.cfg").read_text(encoding="utf-8")
    distributions = sorted(set(re.findall(r"^\s+(acellera-[a-z0-9-]+)", setup, flags=re.M)))
    assert distributions
    missing = [name for name in distributions if f"`{name}`" not in install]
    assert not missing, f"{page.name} does not name {missing} (setup.cfg does)"


_LINK = re.compile(r"\]\((?!https?:|#|mailto:)([^)#\s]+)(?:#[^)]*)?\)")
_REPO_PATH = re.compile(r"(?<![\w./(-])((?:benchmarks|examples|recipes|configs|gnnff|tests|docs|\.ci)/"
                        r"[\w./-]*\.(?:py|md|sh|yaml|smi|sdf|pdb|json|csv|mol2|pt|gz|png))\b")
#: Paths another branch adds (benchmarks/README.md: the benchmark index of the bench branch).
_PENDING_PATHS: set[str] = set()


def test_readme_links_resolve():
    missing = [link for link in _LINK.findall(README.read_text(encoding="utf-8")) if not (ROOT / link).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


def test_repository_paths_named_in_the_docs_exist():
    """A renamed script, example or model file shows up here, not in a reader's shell.
    Link targets are left to the strict site build; placeholders (NAME, ...) are skipped."""
    missing = []
    for page in PAGES:
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            missing += [f"{page.relative_to(ROOT)}:{number}: {path}" for path in _REPO_PATH.findall(line)
                        if not (ROOT / path).exists() and path not in _PENDING_PATHS
                        and "NAME" not in path and "..." not in path]
    assert not missing, "paths named in the docs that do not exist:\n" + "\n".join(missing)


def test_every_model_card_is_included_in_the_site():
    cards = sorted((ROOT / "gnnff" / "weights").glob("*.md"))
    text = "\n".join(p.read_text(encoding="utf-8") for p in (DOCS / "models").glob("*.md"))
    missing = [p.name for p in cards if f'--8<-- "gnnff/weights/{p.name}"' not in text]
    assert cards and not missing, f"model cards not included in docs/models/: {missing}"


def _hook():
    spec = importlib.util.spec_from_file_location("cli_reference", DOCS / "hooks" / "cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_renders_every_subcommand_from_the_parser():
    hook = _hook()
    assert hook.MARKER in (DOCS / "reference" / "cli.md").read_text(encoding="utf-8")
    names = [name for name, _ in hook.subcommands(hook.build_parser())]
    assert {"parametrize", "models", "train", "evaluate", "data", "scan", "finetune", "simulate"} <= set(names)
    page = hook.on_page_markdown(f"# CLI\n\n{hook.MARKER}\n", None, None, None)
    assert [line[len("## gnnff "):] for line in page.splitlines() if line.startswith("## gnnff ")] == names
    assert "--overwrite" in page and "--torsion" in page and "--protein" in page
    assert hook.on_page_content("<p>see :func:<code>gnnff.parametrize</code></p>", None, None, None) == (
        "<p>see <code>gnnff.parametrize</code></p>")


def test_docs_extra_is_declared_with_lower_bounds():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    docs = [line.strip() for line in config["options.extras_require"]["docs"].splitlines()
            if line.strip() and not line.strip().startswith("#")]
    assert {re.split(r"[<>=\[]", d)[0] for d in docs} >= {"mkdocs", "mkdocs-material", "mkdocstrings"}
    assert all(">=" in d and "==" not in d and "<" not in d for d in docs), docs


@pytest.mark.slow
def test_site_builds_with_warnings_as_errors(tmp_path):
    missing = [m for m in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")
               if importlib.util.find_spec(m.split(".")[0]) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (pip install -e '.[docs]')")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, env=_environment() | {"NO_MKDOCS_2_WARNING": "1"}, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    cli = (tmp_path / "site" / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    assert "gnnff finetune" in cli and "--overwrite" in cli
    api = (tmp_path / "site" / "reference" / "api" / "index.html").read_text(encoding="utf-8")
    assert "GNNFFTemplateGenerator" in api and "assign_parameters_many" in api
