"""The command line's parser (:func:`gnnff.app.cli.build_parser`): every subcommand has a
handler and help, option lists come from the registries, and building it stays light."""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gnnff.app import cli
from gnnff.app.commands import COMMANDS
from gnnff.app.commands import train as train_command
from gnnff.errors import InputError

COMMANDS_DIR = Path(cli.__file__).parent / "commands"


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    return dict(_subparsers(cli.build_parser()).choices)


def _option(name: str, command: str) -> argparse.Action:
    (action,) = [a for a in _subcommands()[command]._actions if name in a.option_strings]
    return action


def _listed(help_text: str) -> list[str]:
    """``'... : a (default), b, c'`` -> ``['a (default)', 'b', 'c']``."""
    return help_text.rsplit(": ", 1)[1].split(", ")


def test_every_subcommand_has_a_handler_and_help():
    parser = cli.build_parser()
    listed = {choice.dest: choice.help for choice in _subparsers(parser)._choices_actions}
    commands = _subcommands()
    assert list(commands) == ["parametrize", "models", "train", "evaluate", "data", "scan", "finetune",
                              "simulate"]
    for name, sub in commands.items():
        assert listed[name], f"`gnnff {name}` has no help line in `gnnff --help`"
        handler = sub.get_default("handler")
        assert callable(handler) and handler.__module__ == f"gnnff.app.commands.{name}", name
        for action in sub._actions:
            assert action.help and action.help.strip(), f"gnnff {name} {action.option_strings or action.dest}"
        sub.format_help()  # every help string formats (no stray %)


def test_every_command_module_is_registered():
    modules = sorted(p.stem for p in COMMANDS_DIR.glob("*.py") if not p.stem.startswith("_"))
    assert sorted(c.__name__.rsplit(".", 1)[1] for c in COMMANDS) == modules


def test_charges_help_lists_every_charge_method():
    from gnnff.sources.charges import CHARGE_METHODS
    from gnnff.sources.classical import SageSource

    action = _option("--charges", "parametrize")
    default = SageSource().charges
    assert _listed(action.help) == [f"{default} (default)", *(m for m in CHARGE_METHODS if m != default)]
    assert "am1bcc-mmff" in action.help  # once missing from the help although it worked
    assert "am1bcc-mmff" in " ".join(_subcommands()["parametrize"].format_help().split())


@pytest.mark.parametrize("command, default", [("data", "gfn2-xtb"), ("scan", "ani-2x"), ("finetune", "ani-2x")])
def test_labeler_help_lists_every_labeler(command, default):
    from gnnff.train.labelers import LABELERS

    action = _option("--labeler", command)
    assert action.default == default
    assert _listed(action.help) == [f"{default} (default)", *(n for n in LABELERS if n != default)]


def test_choices_equal_the_registries():
    from gnnff.app.formats import FORMATS
    from gnnff.app.simulate import SOLVENTS

    assert list(_option("--format", "parametrize").choices) == list(FORMATS)
    assert set(_option("--solvent", "simulate").choices) == set(SOLVENTS)


def test_unknown_charge_method_is_the_registrys_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["parametrize", "CCO", "--model", "sage", "--charges", "bogus", "-q"]) == 2
    err = capsys.readouterr().err
    assert err == ("gnnff: error: unknown charge method 'bogus'; known: am1bcc, am1bcc-fast, am1bcc-mmff, "
                   "mmff94, nagl (the charges option of model 'sage')\n")
    assert not list(tmp_path.iterdir())


def test_handler_errors_become_one_line_and_exit_codes(monkeypatch, capsys):
    def failing(args):
        raise InputError(f"{args.config}: broken\n  over two lines; fix it")

    monkeypatch.setattr(train_command, "handle", failing)
    assert cli.main(["train", "run.yaml"]) == 2
    assert capsys.readouterr().err == "gnnff: error: run.yaml: broken over two lines; fix it\n"

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_command, "handle", interrupted)
    assert cli.main(["train", "run.yaml"]) == 130
    assert capsys.readouterr().err == "gnnff: interrupted\n"


HEAVY = ("torch", "openmm", "rdkit", "numpy", "openff")


@pytest.mark.parametrize("args, light", [(["--help"], HEAVY), (["--version"], HEAVY),
                                         (["train", "--help"], HEAVY), (["parametrize", "--help"], ("torch",)),
                                         (["scan", "--help"], ("torch",))])
def test_help_and_version_stay_light(args, light):
    """``--help`` and ``--version`` import no heavy package; a subcommand's help reads a
    registry (NumPy, RDKit) but never torch."""
    script = ("import contextlib, io, json, sys\nfrom gnnff.app.cli import main\n"
              f"with contextlib.redirect_stdout(io.StringIO()) as out:\n"
              f"    try:\n        main({args!r})\n    except SystemExit as stop:\n        code = stop.code\n"
              "print(json.dumps([code, out.getvalue(), sorted(m.split('.')[0] for m in sys.modules)]))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    code, out, modules = json.loads(result.stdout)
    assert code == 0 and out.startswith(("usage: gnnff", "gnnff ")), result.stderr
    assert not set(modules) & set(light)


def test_python_dash_m_gnnff():
    result = subprocess.run([sys.executable, "-m", "gnnff", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert re.search(r"parametrize\s+write an OpenMM System XML", result.stdout)


def test_cli_imports_the_defining_modules():
    """No ``import gnnff`` / ``from gnnff import ...`` in the command line: each name comes
    from the module that defines it."""
    for path in [Path(cli.__file__), *sorted(COMMANDS_DIR.glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                assert "gnnff" not in {a.name for a in node.names}, f"{path.name}:{node.lineno}"
            elif isinstance(node, ast.ImportFrom):
                assert node.module != "gnnff", f"{path.name}:{node.lineno}"
