"""Progress reporting that suits where it goes: a tqdm bar on a terminal, plain
periodic lines in a log file or a pipe.

A tqdm bar redraws itself with carriage returns; written to a file, hundreds of
updates pile up on one line. :func:`progress` gives a tqdm bar when its stream is a
terminal, and otherwise a :class:`PlainProgress` that writes one newline-terminated
line every tenth of the way (or every 30 s, whichever comes first)::

    charges: 40/200 mol (20 %) in 33 s, 1.21 mol/s

Both take the calls gnnff makes on a bar: iteration, ``update(n)``, ``n``,
``set_postfix_str``, ``close`` and use as a context manager.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

__all__ = ["PlainProgress", "progress"]


def progress(iterable: Iterable | None = None, *, total: float | None = None, desc: str = "", unit: str = "it",
             disable: bool | None = False, leave: bool = True, file: TextIO | None = None,
             every: float = 0.1, interval: float = 30.0) -> Any:
    """A progress bar over ``iterable`` (or updated by hand with ``update(n)``).

    Parameters
    ----------
    iterable
        Items to pass through, counting each; None: call ``update``.
    total
        Expected count (default ``len(iterable)`` when it has one); None: unknown.
    desc, unit
        What is counted and its unit, for the line (``charges``, ``mol``).
    disable
        True: report nothing. False: a bar on a terminal, plain lines elsewhere.
        None (tqdm's meaning): a bar on a terminal, nothing elsewhere.
    leave
        Keep a terminal bar on screen when done (tqdm's ``leave``).
    file
        The stream (default ``sys.stderr``, looked up at call time).
    every, interval
        Without a terminal: a line each time another ``every`` of ``total`` is done, and
        after ``interval`` seconds without one.

    Returns
    -------
    tqdm.tqdm or PlainProgress
    """
    stream = sys.stderr if file is None else file
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if disable is not True and _is_terminal(stream):
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc or None, unit=unit, leave=leave, file=stream)
    return PlainProgress(iterable, total=total, desc=desc, unit=unit, file=stream, every=every,
                         interval=interval, disable=disable is not False)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class PlainProgress:
    """Progress as plain lines, for a stream that is not a terminal (see :func:`progress`).

    A line is written when the count crosses the next ``every`` fraction of ``total``,
    when ``interval`` seconds have passed since the last line (the only trigger when the
    total is unknown), and on :meth:`close` if the count moved since the last line: at
    most ``1/every + 1`` lines plus one per ``interval``.
    """

    def __init__(self, iterable: Iterable | None = None, *, total: float | None = None, desc: str = "",
                 unit: str = "it", file: TextIO | None = None, every: float = 0.1, interval: float = 30.0,
                 disable: bool = False) -> None:
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc or "progress", unit
        self.file, self.every, self.interval, self.disable = file, every, interval, disable
        self.n: float = 0
        self.postfix = ""
        self._start = self._last_time = time.monotonic()
        self._last_n: float = 0
        self._closed = False

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        return int(self.total) if self.total is not None else len(self.iterable)

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        """Text appended to the following lines (as tqdm's postfix)."""
        self.postfix = text

    def update(self, n: float = 1) -> None:
        """Count ``n`` more (a float is fine: picoseconds); write a line when one is due."""
        self.n += n
        if self.disable:
            return
        now = time.monotonic()
        due = now - self._last_time >= self.interval
        if self.total:
            step = self.every * self.total
            due = due or int(self.n / step + 1e-9) > int(self._last_n / step + 1e-9)
        if due:
            self._line(now)

    def close(self) -> None:
        """Write the last line, if the count moved since the one before; then nothing more."""
        if not self._closed and not self.disable and self.n != self._last_n:
            self._line(time.monotonic())
        self._closed = True

    def _line(self, now: float) -> None:
        if self._closed:
            return
        elapsed = now - self._start
        count = f"{_number(self.n)}/{_number(self.total)} {self.unit} ({100.0 * self.n / self.total:.0f} %)" \
            if self.total else f"{_number(self.n)} {self.unit}"
        rate = self.n / elapsed if elapsed > 0 else 0.0
        rate_text = (f", {rate:.0f} {self.unit}/s" if rate >= 100 else f", {rate:.3g} {self.unit}/s") if rate else ""
        postfix = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {count} in {_duration(elapsed)}{rate_text}{postfix}", file=self.file, flush=True)
        self._last_time, self._last_n = now, self.n


def _number(x: float) -> str:
    """A count as it reads best: ``40``, ``12.5``."""
    return str(int(x)) if float(x).is_integer() else f"{x:.1f}"


def _duration(seconds: float) -> str:
    """``33 s``, ``12.1 min``, ``2.03 h``."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.2f} h"
