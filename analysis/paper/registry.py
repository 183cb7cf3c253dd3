"""What a reproduced table is, and the registry of them.

A `PaperTable` pairs the paper's published numbers (`published/<name>.yaml`: citation, columns,
rows) with a way to produce ours at a scale (`ours`), the claims the paper makes of them, and the
budget of each scale. `ours` returns `Ours`: a DataFrame keyed like the paper's rows, how its
numbers were obtained (measured, simulated or counted) and the scale difference for the caption.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from analysis.paper.claims import Claim

PUBLISHED = Path(__file__).resolve().parent / "published"
SCALES = ("quick", "full")
HOW = ("measured", "simulated", "counted")  # how a column of ours was obtained


@dataclass(frozen=True)
class Published:
    """A paper's table as printed: `rows` with `columns`, keyed by `key` columns."""

    source: str
    caption: str
    key: list[str]
    rows: pd.DataFrame

    @property
    def values(self) -> list[str]:
        return [c for c in self.rows.columns if c not in self.key]


@dataclass(frozen=True)
class Ours:
    """Our numbers for a table: `rows` keyed by the paper's key columns, with value columns named
    like the paper's; `how` says how they were obtained (one word for all, or per value column
    where a table holds both measured and simulated numbers), `scale_note` how the scale differs."""

    rows: pd.DataFrame
    how: str | dict[str, str]
    scale_note: str
    commands: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # cells that could not be produced, and why
    figure: Path | None = None  # where the paper shows a figure: ours, drawn beside the table

    def __post_init__(self):
        for how in (self.how.values() if isinstance(self.how, dict) else [self.how]):
            if how not in HOW:
                raise ValueError(f"how must be one of {', '.join(HOW)}, got {how!r}")

    def how_of(self, column: str) -> str:
        return self.how[column] if isinstance(self.how, dict) else self.how

    @property
    def hows(self) -> str:
        """How ours were obtained, in words: "measured", or "measured and simulated"."""
        kinds = list(dict.fromkeys(self.how.values())) if isinstance(self.how, dict) else [self.how]
        return " and ".join(kinds)


@dataclass(frozen=True)
class PaperTable:
    name: str
    title: str
    comparison: str  # what kind of comparison: "exact" or "reduced scale, one setting for every method", ...
    budgets: dict[str, str]  # scale -> what it runs and how long it takes on 2 CPU cores
    ours: Callable[[str, Path], Ours]  # (scale, this table's results dir) -> our numbers
    claims: tuple[Claim, ...]

    def published(self) -> Published:
        return load_published(self.name)


TABLES: dict[str, PaperTable] = {}


def register(table: PaperTable) -> PaperTable:
    if set(table.budgets) != set(SCALES):
        raise ValueError(f"table {table.name}: budgets for {', '.join(SCALES)} are needed")
    TABLES[table.name] = table
    return table


def load_published(name: str) -> Published:
    data = yaml.safe_load((PUBLISHED / f"{name}.yaml").read_text())
    rows = pd.DataFrame(data["rows"], columns=data["columns"])
    return Published(source=data["source"], caption=data["caption"], key=list(data["key"]), rows=rows)
