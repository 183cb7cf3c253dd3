"""The tables, one module per paper; importing them registers them (analysis/paper/registry.py).

These modules produce numbers, not only read records: they count a model's parameters, simulate
a schedule, or choose a table's runs. So, unlike the rest of analysis/, they may import torch,
the algorithms, the models and the core (tests/test_imports.py), the way run.py composes them.
"""

from analysis.paper.tables import decoupled, dgl_dni_cnn, hyparflow, local_critic, local_critic_ablations, local_loss, ouroboros, zero_bubble  # noqa: F401
