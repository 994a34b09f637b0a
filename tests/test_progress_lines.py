"""Progress: a tqdm bar on a terminal, plain periodic newline-terminated lines (bounded in
number, no carriage returns) in a file or pipe."""

from __future__ import annotations

import io
import re
import subprocess
import sys

from gnnff.progress import PlainProgress, progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_without_a_terminal_writes_a_bounded_number_of_plain_lines():
    stream = io.StringIO()
    assert sum(progress(range(10_000), desc="charges", unit="mol", file=stream)) == sum(range(10_000))
    text = stream.getvalue()
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    assert 10 <= len(lines) <= 12
    assert all(re.fullmatch(r"charges: \d+/10000 mol \(\d+ %\) in \d+ s(, [\d.e+]+ mol/s)?", line) for line in lines)
    assert lines[-1].startswith("charges: 10000/10000 mol (100 %)")


def test_progress_by_hand_with_unknown_total_and_postfix():
    stream = io.StringIO()
    with progress(desc="md", unit="step", file=stream, interval=0.0) as bar:
        assert isinstance(bar, PlainProgress)
        bar.update(2.5)
        bar.set_postfix_str("E = -1 kJ/mol")
        bar.update(2)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("md: 2.5 step in ") and lines[1].endswith(", E = -1 kJ/mol")


def test_progress_on_a_terminal_is_a_tqdm_bar_and_disable_is_tqdms():
    from tqdm import tqdm

    with progress(total=3, file=_Terminal()) as bar:
        assert isinstance(bar, tqdm)
    quiet = io.StringIO()
    for disable in (True, None):  # None: a bar on a terminal only, as tqdm's disable=None
        list(progress(range(100), disable=disable, file=quiet))
    assert quiet.getvalue() == ""
    terminal = _Terminal()
    list(progress(range(100), disable=True, file=terminal))
    assert terminal.getvalue() == ""


def test_progress_to_a_pipe_from_a_subprocess():
    code = "from gnnff.progress import progress\nfor _ in progress(range(5000), desc='x'): pass\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert "\r" not in done.stderr and 10 <= len(done.stderr.splitlines()) <= 12
