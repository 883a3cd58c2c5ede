"""What the CLI prints: answers and tables on stdout (`out`), shaped for where they are read;
progress, notes and errors on stderr (`console`).

In a terminal, output takes the terminal's width (or COLUMNS), and a table wider than that wraps its
cells, folding a word longer than its column, instead of cutting them with "…". Anywhere else (a pipe,
a file) there is no width limit, so a table prints whole, one row a line, whatever COLUMNS says;
`--json` is the machine form. Every command module prints its tables with `new_table()` on `out`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.console import Console, ConsoleDimensions
from rich.table import Table

if TYPE_CHECKING:
    from homellm.scheduler import ModelStatus

# The width when stdout is not a terminal: more than any table needs. Tables and text take only the
# width they use (none is expanded, and the CLI prints no rules or panels), so nothing is padded to it.
PIPE_WIDTH = 100_000


def new_table(**options: Any) -> Table:
    """A table for `out`: no box, bold headings, and cells that wrap rather than being cut."""
    return _WrappingTable(box=None, header_style="bold", **options)


class _Output(Console):
    """A console whose width is the terminal's, or PIPE_WIDTH when its file is not a terminal.

    Decided at each print, as Rich decides whether the file is a terminal (FORCE_COLOR and TTY_COMPATIBLE
    count as one), so it follows sys.stdout when that is replaced.
    """

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        return size if self.is_terminal else ConsoleDimensions(PIPE_WIDTH, size.height)


class _WrappingTable(Table):
    """Columns fold a word that does not fit rather than ending it with an ellipsis."""

    def add_column(self, header: Any = "", footer: Any = "", *, overflow: Any = "fold", **options: Any) -> None:
        super().add_column(header, footer, overflow=overflow, **options)


out = _Output(highlight=False, soft_wrap=True)
console = Console(stderr=True)


def warn(message: str) -> None:
    """A warning on stderr, one line."""
    console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


def print_placement(status: ModelStatus) -> None:
    """Say where tensor overrides put a loaded model's tensors, and which patterns matched nothing."""
    for pattern in status.unmatched_overrides:
        warn(f"the tensor override {pattern!r} matches no tensor of this model")
    if status.overridden:
        console.print("tensors placed by override: " + ", ".join(f"{n} in {b}" for b, n in status.overridden),
                      highlight=False)


def human_bytes(size: int) -> str:
    """Decimal units, as Ollama prints them: 98 MB, 4.7 GB."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if size >= scale:
            value = size / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{size} B"


def human_count(count: int) -> str:
    """Parameters as model cards write them: 134.5M, 7.6B."""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f}{unit}"
    return str(count)


def ago(timestamp: float) -> str:
    """How long ago a Unix time was, in words: "3 hours ago", "just now"."""
    seconds = max(0, time.time() - timestamp)
    for unit, scale in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= scale:
            n = int(seconds // scale)
            return f"{n} {unit}{'s' if n > 1 else ''} ago"
    return "just now"
