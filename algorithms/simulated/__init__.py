"""How each algorithm is simulated (mpbench/simulate/): one plan per family, registered with
`mpbench.simulate.plan.plan_for`. A plan writes every worker's tasks in the order the
algorithm's own code runs them; docs/simulator.md says what each one models and leaves out.

    data_parallel.py     backprop, data_parallel (DDP's bucketed all-reduce beside the backward)
    pipelines.py         pipeline, hypar and diloco: every torch schedule, in torch's own order
    pipeline_bubbles.py  one pipeline flush from per-stage costs, built by pipelines.py's
                         `add_schedule`, and the zero-bubble paper's ZB-H1 and ZB-H2 (the
                         exact checks of tests/test_simulator_exact.py)
    stale_gradient.py    ddg, features_replay, ouroboros, async_nesterov (linear and ring; S, H, R)
    pipedream_2bw.py     pipedream_2bw's workers: 1F1B never flushed, two stashed versions
    local_learning.py    local_critic, critic_training, dgl, dni, sub_model_backprop
"""

from algorithms.simulated import data_parallel, local_learning, pipedream_2bw, pipelines, stale_gradient  # noqa: F401
