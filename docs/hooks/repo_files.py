"""MkDocs hook: files of the repository outside ``docs/`` that pages show (benchmark plots),
published under ``docs/``-relative names at build time instead of copied into ``docs/``,
so a plot the scripts rewrite is the plot the site shows."""

from __future__ import annotations

import os

from mkdocs.structure.files import File

#: Site path (as pages link to it, relative to docs/) -> repository path.
REPO_FILES = {
    "benchmarks/img/hydration-gnnff-v1.png": "recipes/v1/rc6-results/hydration/hydration.png",
}


def on_files(files, config):
    """Add each of :data:`REPO_FILES` to the site (a missing one fails the build)."""
    root = os.path.dirname(os.path.abspath(config.config_file_path))
    for site_path, repo_path in REPO_FILES.items():
        source = os.path.join(root, repo_path)
        if not os.path.isfile(source):
            raise FileNotFoundError(f"docs/hooks/repo_files.py: {repo_path} is missing (shown as {site_path})")
        files.append(File.generated(config, site_path, abs_src_path=source))
    return files
