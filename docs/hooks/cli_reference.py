"""MkDocs hook: the command-line reference is rendered from gnnff's own argparse parser.

``docs/reference/cli.md`` holds a marker line; at build time this hook replaces it with
``gnnff --help`` and every subcommand's ``--help``, so the reference cannot drift from
the code. The hook also strips Sphinx roles (``:func:``, ``:class:``, ...) that the
docstrings use, which Markdown would otherwise print literally.

Run it alone to print the generated Markdown: ``python docs/hooks/cli_reference.py``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterator

#: The line of docs/reference/cli.md that the generated reference replaces.
MARKER = "<!-- cli-reference: generated at build time from the gnnff argument parser -->"

#: Width the help is wrapped at (argparse reads COLUMNS), so the page does not depend on
#: the terminal that built it.
COLUMNS = 100

_SPHINX_ROLE = re.compile(r":(?:py:)?(?:func|class|data|meth|attr|mod|obj|exc|const):(?=<code)")


def build_parser() -> argparse.ArgumentParser:
    """gnnff's parser: ``gnnff.app.cli.build_parser()``, or the older private ``_parser()``."""
    from gnnff.app import cli

    factory = getattr(cli, "build_parser", None) or cli._parser
    return factory()


def subcommands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Each subcommand's name and parser, in the order ``gnnff --help`` lists them."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def _help(parser: argparse.ArgumentParser) -> str:
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(COLUMNS)
    try:
        return parser.format_help().rstrip()
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


def render() -> str:
    """Markdown of ``gnnff --help`` and one section per subcommand with its ``--help``."""
    parser = build_parser()
    parts = ["## gnnff", "", "```text", _help(parser), "```"]
    for name, sub in subcommands(parser):
        parts += ["", f"## gnnff {name}", "", "```text", _help(sub), "```"]
    return "\n".join(parts) + "\n"


def on_config(config):
    """Put the checkout that holds mkdocs.yml first on ``sys.path``: the reference shows this
    checkout's parser even where another gnnff is installed."""
    root = os.path.dirname(os.path.abspath(config.config_file_path))
    if root not in sys.path:
        sys.path.insert(0, root)
    return config


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 (MkDocs hook signature)
    """Replace the marker of the CLI reference page with the rendered help."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render())


def on_page_content(html: str, page, config, files) -> str:  # noqa: ARG001 (MkDocs hook signature)
    """Drop the Sphinx role prefix before inline code (``:func:`x``` renders as ``x``)."""
    return _SPHINX_ROLE.sub("", html)


if __name__ == "__main__":
    print(render())
