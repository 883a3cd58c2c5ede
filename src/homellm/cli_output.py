"""What the CLI prints on stdout, shaped for where it is read.

In a terminal, output takes the terminal's width (or COLUMNS), and a table wider than that wraps its
cells, folding a word longer than its column, instead of cutting them with "…". Anywhere else (a pipe,
a file) there is no width limit, so a table prints whole, one row a line, whatever COLUMNS says;
`--json` is the machine form. Every command module prints its tables with `new_table()` on `out`.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, ConsoleDimensions
from rich.table import Table

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
