"""python -m analysis.paper --list | <table> | --all  [--scale quick|full] [--results DIR] [--record FILE]

Makes one reproduced table: runs what it needs and is missing (ordinary run.py multiruns,
resumed: a second invocation runs nothing new), then writes <results>/paper/<table>/ and the
table's section of the reproduction record (docs/REPRODUCTION.md by default).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis.paper import registry
from analysis.paper.render import RECORD, update_record, write_table
from mpbench.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def list_tables() -> str:
    lines = []
    for table in registry.TABLES.values():
        lines += [f"{table.name}: {table.title}", f"    source: {' '.join(table.published().source.split())}",
                  f"    comparison: {table.comparison}"]
        lines += [f"    {scale}: {budget}" for scale, budget in table.budgets.items()]
    return "\n".join(lines)


def make_table(name: str, scale: str, results: Path, record: Path | None) -> Path:
    """Produce table `name` at `scale`; returns its directory. Bad input raises ConfigError."""
    if name not in registry.TABLES:
        raise ConfigError(f"unknown table {name!r}; valid tables: {', '.join(registry.TABLES)} (--list describes them)")
    if scale not in registry.SCALES:
        raise ConfigError(f"--scale {scale!r} does not exist; valid scales: {', '.join(registry.SCALES)}")
    table = registry.TABLES[name]
    out = results / "paper" / name
    ours = table.ours(scale, out)
    published = table.published()
    verdicts = [(claim.text, claim.check(published.rows, ours.rows)) for claim in table.claims]
    command = f"python -m analysis.paper {name} --scale {scale}"
    section = write_table(table, ours, verdicts, out, scale, [command, *ours.commands])
    if record is not None:
        update_record(record, name, section)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.paper", description=__doc__.splitlines()[0])
    parser.add_argument("table", nargs="?", help="the table to make (see --list)")
    parser.add_argument("--list", action="store_true", help="list the tables, their sources and budgets")
    parser.add_argument("--all", action="store_true", help="make every table (make reproduce: at quick scale)")
    parser.add_argument("--scale", default="quick", help=f"one of {', '.join(registry.SCALES)} (default quick)")
    parser.add_argument("--results", type=Path, default=REPO / "results", help="results root (default results/)")
    parser.add_argument("--record", type=Path, default=REPO / RECORD,
                        help="the reproduction record to update (default docs/REPRODUCTION.md)")
    parser.add_argument("--no-record", action="store_true", help="leave the reproduction record alone")
    args = parser.parse_args(argv)
    if args.list:
        print(list_tables())
        return 0
    if args.table is None and not args.all:
        print(f"error: name a table, --all or --list; valid tables: {', '.join(registry.TABLES)}", file=sys.stderr)
        return 2
    for name in registry.TABLES if args.all else [args.table]:
        try:
            out = make_table(name, args.scale, args.results, None if args.no_record else args.record)
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print((out / "table.md").read_text())
        print(f"table: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
