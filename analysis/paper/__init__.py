"""The papers' tables, reproduced: paper and ours side by side, each claim checked at a stated scale.

    python -m analysis.paper --list
    python -m analysis.paper <table> [--scale quick|full] [--results DIR]

    registry.py    what a table is (`PaperTable`), the registry, the published numbers' loader
    claims.py      a claim of a table and its verdict: holds / does not hold / not resolvable
    render.py      results/paper/<table>/: table.md, table.csv, claims.json (and the record)
    runs.py        the training runs a table needs: one ordinary run.py multirun, resumed
    published/     the published numbers, one YAML file per table, with the citation
    tables/        the tables, one module per paper: local_critic.py (Tables 1, 5 and the machinery
                   every LC table shares), local_critic_ablations.py (Tables 2, 3, 4, 6),
                   decoupled.py (DDG / FR), ouroboros.py, local_loss.py, zero_bubble.py

Adding a table: its published numbers in `published/<name>.yaml`, and a `register(PaperTable(...))`
in the paper's module under tables/. Published (paper) and our numbers are never in one column,
and every column of ours says whether it is measured, simulated or counted.
"""

from analysis.paper import tables  # noqa: F401  (registers the tables)
