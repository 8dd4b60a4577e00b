"""Progress reporting that reads well both in a terminal and in a log file.

A tqdm bar redraws itself with carriage returns: right in a terminal, but a
log file captured with `> log 2>&1` fills with thousands of partial lines.
`progress_bar` therefore draws a tqdm bar only where someone watches it (stderr
is a terminal, or a Jupyter kernel, where tqdm draws a widget) and otherwise
prints one plain line every `log_every` steps.

Why not `clu.periodic_actions.ReportProgress`: it logs rates through
`absl.logging` on a schedule and draws no bar; the choice needed here is
between a bar on a terminal and plain lines in a file.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from jcnf import _checks


class LineProgress:
    """tqdm's `update` / `set_postfix` / `close` interface, printing one line per `log_every` steps.

    A line reads `desc: step 250/1000 (25%, 12.3 s) loss=0.123 skipped=0`: the
    step count after the update, the time since the bar was made, and the
    values last given to `set_postfix`. The last step always gets its line.
    """

    def __init__(self, total: int, initial: int, log_every: int, desc: str | None, stream: TextIO):
        self.total, self.n, self.log_every = total, initial, log_every
        self._prefix = f"{desc}: " if desc else ""
        self._stream = stream
        self._postfix: dict[str, Any] = {}
        self._start = time.perf_counter()
        self._last_printed = initial

    def set_postfix(self, **values: Any) -> None:
        """Replaces the values shown at the end of the next line."""
        self._postfix = values

    def update(self, n: int = 1) -> None:
        """Advances by `n` steps; prints a line on each multiple of `log_every` and on the last step."""
        self.n += n
        if self.n % self.log_every == 0 or self.n == self.total:
            self._print()

    def close(self) -> None:
        """Prints the final count if its line has not been printed yet."""
        if self.n != self._last_printed:
            self._print()

    def _print(self) -> None:
        percent = f"{100 * self.n / self.total:.0f}%, " if self.total else ""
        postfix = "".join(f" {key}={value}" for key, value in self._postfix.items())
        elapsed = time.perf_counter() - self._start
        print(f"{self._prefix}step {self.n}/{self.total} ({percent}{elapsed:.1f} s){postfix}",
              file=self._stream, flush=True)
        self._last_printed = self.n


class _Silent:
    """The same interface, printing nothing (a disabled bar)."""

    def set_postfix(self, **values: Any) -> None:
        del values

    def update(self, n: int = 1) -> None:
        del n

    def close(self) -> None:
        pass


def _watched(stream: TextIO) -> bool:
    """True when a person sees `stream` redraw: a terminal, or output cells of a Jupyter kernel."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) or "ipykernel" in sys.modules


def progress_bar(total: int, *, initial: int = 0, log_every: int = 100, desc: str | None = None,
                 disable: bool = False) -> Any:
    """A progress indicator with tqdm's `update(n)`, `set_postfix(**values)` and `close()`.

    Args:
      total: the number of steps, a non-negative integer.
      initial: the step count to start from (a resumed run), 0 <= initial <= total.
      log_every: without a terminal, print one line every this many steps (a positive integer).
      desc: a short label in front of the bar or of each line.
      disable: show nothing.

    Returns:
      A tqdm bar when stderr is a terminal (or in a Jupyter kernel), a `LineProgress` writing to
      stderr otherwise, and an object that prints nothing when `disable` is True.
    """
    _checks.check_int("total", total, minimum=0)
    _checks.check_int("initial", initial, minimum=0)
    _checks.check_int("log_every", log_every)
    if initial > total:
        raise ValueError(f"`initial` must be <= `total` ({total}); got {initial}.")
    if disable:
        return _Silent()
    if _watched(sys.stderr):
        from tqdm.auto import tqdm  # only where a bar is drawn

        return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True)
    return LineProgress(total, initial, log_every, desc, sys.stderr)
