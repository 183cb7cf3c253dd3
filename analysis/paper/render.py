"""A reproduced table on disk: paper and ours side by side, the claims, and how it was made.

<results>/paper/<table>/ gets
    table.md     caption (source, comparison, scale difference), the side-by-side table, the
                 claims with their verdicts and numbers, where its figure is (figure.png, where
                 the paper shows one), and the record (commit, date, device, torch, commands)
    table.csv    the same table: each value column twice, "(paper)" and "(ours, <how>)"
    claims.json  the verdicts, for scripts
A section of the same content goes into the reproduction record (docs/REPRODUCTION.md) in place
of the table's previous one.
"""

from __future__ import annotations

import json
import platform
import re
import time
from pathlib import Path

import pandas as pd

from analysis.paper.claims import Verdict
from analysis.paper.registry import Ours, PaperTable, Published
from analysis.report import markdown_table
from mpbench.records import atomic_write_text, environment_record, git_commit


def side_by_side(published: Published, ours: Ours) -> pd.DataFrame:
    """The paper's rows beside ours, joined on the key columns; a value column never holds both."""
    paper = published.rows.rename(columns={c: f"{c} (paper)" for c in published.values})
    mine = ours.rows[[*published.key, *[c for c in published.values if c in ours.rows]]]
    mine = mine.rename(columns={c: f"{c} (ours, {ours.how_of(c)})" for c in published.values})
    table = paper.merge(mine, on=published.key, how="left")  # the paper's row order
    extra = mine.merge(published.rows[published.key], on=published.key, how="left", indicator=True)
    table = pd.concat([table, extra[extra["_merge"] == "left_only"].drop(columns="_merge")], ignore_index=True)
    order = [*published.key, *[f"{c} ({who})" for c in published.values for who in ("paper", f"ours, {ours.how_of(c)}")]]
    return table[[c for c in order if c in table]]


RECORD = "docs/REPRODUCTION.md"  # the reproduction record, relative to the repository


def record(scale: str, commands: list[str]) -> dict:
    """Where and when the table was made (the machine of this process; each run records its own)."""
    repo = Path(__file__).resolve().parents[2]
    env = environment_record(repo)
    commit = git_commit(repo, besides=(RECORD,))  # the record this command itself rewrites is no change to the code
    device = ", ".join(env["cuda_devices"]) or f"CPU ({platform.machine()}, {env['cpu_count']} cores)"
    return {"scale": scale, "commit": f"{commit['commit']}{' (uncommitted changes)' if commit['dirty'] else ''}",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch": env["torch"], "device": device,
            "commands": commands}


def markdown(table: PaperTable, published: Published, ours: Ours, rows: pd.DataFrame,
             verdicts: list[tuple[str, Verdict]], made: dict) -> str:
    lines = [f"## {table.name}: {table.title}", "",
             f"*{published.caption.strip()}* Paper: {published.source.strip()}. Ours ({ours.hows}, scale "
             f"`{made['scale']}`): {ours.scale_note}. Comparison: {table.comparison}.", "",
             markdown_table(rows), "", "Claims:", ""]
    lines += [f"- {text}: **{verdict.status}** ({verdict.numbers})" for text, verdict in verdicts]
    if ours.figure is not None:
        lines += ["", f"Figure: `{_shown_path(ours.figure)}`."]
    if ours.missing:
        lines += ["", "Missing: " + "; ".join(ours.missing)]
    lines += ["", f"Made {made['date']} at commit {made['commit']}, torch {made['torch']}, {made['device']}."]
    lines += [f"`{command}`" for command in made["commands"]]
    return "\n".join(lines) + "\n"


def _shown_path(path: Path) -> str:
    """Relative to the repository where it lies inside it (the record is read on other machines)."""
    repo = Path(__file__).resolve().parents[2]
    return str(path.relative_to(repo)) if path.is_relative_to(repo) else str(path)


def write_table(table: PaperTable, ours: Ours, verdicts: list[tuple[str, Verdict]], out: Path, scale: str,
                commands: list[str]) -> str:
    """Write table.md, table.csv and claims.json under `out`; returns the Markdown section."""
    published = table.published()
    rows = side_by_side(published, ours)
    made = record(scale, commands)
    section = markdown(table, published, ours, rows, verdicts, made)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "table.md", section)
    atomic_write_text(out / "table.csv", rows.to_csv(index=False))
    atomic_write_text(out / "claims.json", json.dumps(
        {"table": table.name, **made, "claims": [{"claim": text, "verdict": v.status, "numbers": v.numbers}
                                                 for text, v in verdicts]}, indent=1) + "\n")
    return section


def update_record(path: Path, name: str, section: str) -> None:
    """Put `section` in the reproduction record in place of table `name`'s previous one."""
    begin, end = f"<!-- table {name} -->", f"<!-- end {name} -->"
    text = path.read_text() if path.exists() else HEADER
    block = f"{begin}\n{section}{end}\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + block
    atomic_write_text(path, text)


HEADER = """# Reproducing the papers' tables

Generated by `python -m analysis.paper <table>` (every table at `quick` scale: `make reproduce`);
do not edit by hand. Each section: the paper's numbers and ours side by side (never in one
column), the scale difference, each claim of the table checked at that scale, and the commit,
date, device and command that made it.
"""
