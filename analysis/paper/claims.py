"""A claim a paper makes of its table, checked on our numbers.

Each claim is a sentence and a check. The check reads our rows (and the paper's, for exact
tables) and returns a `Verdict`: it holds, it does not, or it cannot be resolved at this scale
(a gap below the run-to-run noise, a missing run), always with the numbers it compared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

HOLDS, FAILS, UNRESOLVED = "holds", "does not hold", "not resolvable at this scale"


@dataclass(frozen=True)
class Verdict:
    status: str
    numbers: str  # what was compared, e.g. "LC(3) 61.2 vs BP 63.0 (gap 1.8, noise 0.9)"

    def __post_init__(self):
        if self.status not in (HOLDS, FAILS, UNRESOLVED):
            raise ValueError(f"verdict must be one of {HOLDS!r}, {FAILS!r}, {UNRESOLVED!r}")


@dataclass(frozen=True)
class Claim:
    text: str
    check: Callable[[pd.DataFrame, pd.DataFrame], Verdict]  # (paper rows, our rows) -> verdict


def _shown(values: dict[str, float | None]) -> str:
    return ", ".join(f"{k} {'-' if v is None else f'{v:.4g}'}" for k, v in values.items())


def ordered(values: dict[str, float | None], noise: float, descending: bool = True,
            or_equal: bool = False) -> Verdict:
    """Whether `values` (label -> number, in the claimed order) fall in that order.

    A step between neighbours smaller than `noise` (e.g. one standard deviation of repeats, or a
    stated floor when there is one seed) decides nothing; a missing value, neither. With
    `or_equal` (a claim of "at most"), only a step the wrong way by more than the noise fails."""
    shown = _shown(values)
    if any(v is None for v in values.values()):
        return Verdict(UNRESOLVED, f"{shown} (a value is missing)")
    sign = 1 if descending else -1
    items = list(values.items())
    steps = [sign * (a[1] - b[1]) for a, b in zip(items, items[1:])]
    if or_equal:
        wrong = any(step < -noise for step in steps)
        return Verdict(FAILS if wrong else HOLDS, f"{shown} (noise {noise:.3g})")
    if all(step > noise for step in steps):
        return Verdict(HOLDS, f"{shown} (each step above the noise {noise:.3g})")
    if any(step < -noise for step in steps):
        return Verdict(FAILS, f"{shown} (noise {noise:.3g})")
    return Verdict(UNRESOLVED, f"{shown}: a step is within the noise {noise:.3g}")


def all_of(verdicts: list[Verdict]) -> Verdict:
    """One verdict for a claim made of several: holds if every part holds, fails if any fails."""
    statuses = {v.status for v in verdicts}
    status = FAILS if FAILS in statuses else HOLDS if statuses == {HOLDS} else UNRESOLVED
    return Verdict(status, "; ".join(v.numbers for v in verdicts))


# With one seed there is no spread to judge a gap by: an accuracy gap under this many points decides nothing.
ONE_SEED_NOISE = 2.0


def noise(stds: pd.Series, floor: float = ONE_SEED_NOISE) -> float:
    """The run-to-run noise of a table: its largest std over seeds, or `floor` with one seed."""
    spread = stds.dropna()
    return float(spread.max()) if len(spread) else floor


def equal_to_paper(columns: list[str], decimals: int) -> Callable[[pd.DataFrame, pd.DataFrame], Verdict]:
    """A check that every cell of `columns` is the paper's printed number: within half a unit of
    its last printed decimal (`decimals`)."""
    tolerance = 0.5 * 10.0 ** -decimals

    def check(paper: pd.DataFrame, ours: pd.DataFrame) -> Verdict:
        if len(paper) != len(ours):
            return Verdict(FAILS, f"{len(ours)} rows of ours against the paper's {len(paper)}")
        gaps = {(i, c): abs(float(ours[c].iloc[i]) - float(paper[c].iloc[i]))
                for c in columns for i in range(len(paper))}
        differing = [(i, c, paper[c].iloc[i], ours[c].iloc[i]) for (i, c), gap in gaps.items()
                     if not gap <= tolerance]  # NaN differs
        cells = len(gaps)
        if not differing:
            return Verdict(HOLDS, f"{cells} of {cells} cells equal to {decimals} decimals "
                                  f"(largest difference {max(gaps.values()):.2g})")
        i, c, p, o = differing[0]
        return Verdict(FAILS, f"{len(differing)} of {cells} cells differ, first row {i + 1} {c}: paper {p}, ours {o}")
    return check


def close(a: float | None, b: float | None, tolerance: float) -> Verdict:
    """Whether two numbers are within `tolerance` of each other (a claim of "about equal")."""
    if a is None or b is None:
        return Verdict(UNRESOLVED, f"{_shown({'a': a, 'b': b})} (a value is missing)")
    verdict = HOLDS if abs(a - b) <= tolerance else FAILS
    return Verdict(verdict, f"{a:.4g} vs {b:.4g}: gap {abs(a - b):.3g}, tolerance {tolerance:.3g}")
