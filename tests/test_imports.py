"""Dependencies point one way: run.py -> (algorithms, models, analysis) -> the core (mpbench) -> its data layer.

    run.py        the composition root: imports the plugins, which register themselves
    algorithms/   may import the core; never models/ (a model reaches it as a BlockModel) or analysis/
    models/       may import the core; never algorithms/ or analysis/
    analysis/     reads records: may import the core's torch-free contracts (records, config), nothing else;
                  except analysis/paper/tables/, the papers' tables, which compose algorithms, models and
                  the core to produce numbers (counts, simulated schedules), as run.py does
    mpbench/      the core: never a plugin, analysis or run.py
    mpbench/data/ datasets: only itself and the core's leaves (errors, settings)

Every import statement counts, also one inside a function.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLUGINS = ("algorithms", "models", "analysis")

# package (a directory) -> the top-level names it must not import, and the modules it may import
# from packages that are otherwise forbidden to it (None: no exception).
RULES = {
    "mpbench": ({"algorithms", "models", "analysis", "run", "benchmarks", "tests", "examples"}, None),
    "algorithms": ({"models", "analysis", "run", "benchmarks", "tests", "examples"}, None),
    "models": ({"algorithms", "analysis", "run", "benchmarks", "tests"}, None),
    "analysis": ({"algorithms", "models", "run", "benchmarks", "tests", "torch", "mpbench"},
                 {"mpbench.records", "mpbench.config", "mpbench.settings", "mpbench.errors", "mpbench.run_dirs"}),
    "analysis/paper/tables": ({"run", "benchmarks", "tests", "examples"}, None),
}
DATA_MAY_IMPORT = {"mpbench.data", "mpbench.errors", "mpbench.settings"}


def imported_modules(path: Path, root: Path) -> list[str]:
    """Every module `path` imports (absolute names; relative imports resolved)."""
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names += [base] + [f"{base}.{alias.name}" for alias in node.names]
    return names


def violations(directory: str, root: Path = REPO) -> list[str]:
    forbidden, allowed = RULES[directory]
    found = []
    narrower = [root / d for d in RULES if d != directory and (root / d).is_relative_to(root / directory)]
    for path in sorted((root / directory).rglob("*.py")):
        if any(path.is_relative_to(d) for d in narrower):
            continue  # a subdirectory with its own rule
        in_data = path.is_relative_to(root / "mpbench" / "data")
        for name in imported_modules(path, root):
            top = name.split(".")[0]
            if in_data and top == "mpbench" and not any(name == m or name.startswith(m + ".") for m in DATA_MAY_IMPORT):
                found.append(f"{path.relative_to(root)} imports {name}")
            if top in forbidden and not (allowed and any(name == m or name.startswith(m + ".") for m in allowed)):
                found.append(f"{path.relative_to(root)} imports {name}")
    return found


@pytest.mark.parametrize("directory", list(RULES))
def test_no_forbidden_import(directory):
    assert violations(directory) == []


def test_the_rules_catch_a_forbidden_import(tmp_path):
    """The scan itself: a plugin imported by the core, even inside a function, and a core module
    imported by the data layer, are found."""
    (tmp_path / "mpbench" / "data").mkdir(parents=True)
    (tmp_path / "mpbench" / "trainer.py").write_text("def f():\n    from algorithms import backprop\n")
    (tmp_path / "mpbench" / "data" / "text.py").write_text("from ..trainer import f\n")
    assert violations("mpbench", tmp_path) == ["mpbench/data/text.py imports mpbench.trainer",
                                               "mpbench/data/text.py imports mpbench.trainer.f",
                                               "mpbench/trainer.py imports algorithms",
                                               "mpbench/trainer.py imports algorithms.backprop"]


def test_the_report_loads_without_torch_or_training_code():
    code = ("import sys, analysis.report, analysis.sweep_callback, analysis.plots; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'algorithms', 'models')); "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_reports_colours_know_every_registered_algorithm():
    import algorithms  # noqa: F401 (registers them)
    from analysis.plots import ALGORITHMS as COLOURED
    from mpbench.registry import ALGORITHMS

    assert sorted(COLOURED) == sorted(ALGORITHMS) and len(set(COLOURED)) == len(COLOURED)
