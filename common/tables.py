"""Tables for people (rich, sized to the terminal) that scripts can still read whole."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence


def print_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Left-aligned columns like Docker's; never cut when the output is not a terminal."""
    from rich.console import Console  # imported here: most commands never print a table
    from rich.table import Table

    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for header in headers:
        table.add_column(header, no_wrap=True, overflow="fold")
    for row in rows:
        table.add_row(*row)
    width = None if sys.stdout.isatty() else 10_000
    Console(soft_wrap=True, width=width, highlight=False).print(table)
