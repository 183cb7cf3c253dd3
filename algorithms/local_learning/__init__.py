"""The local-learning family: layer groups that learn from local modules, with no backpropagation
across workers (docs/algorithms/local_learning.md).

    local_critic.py  Local Critic Training (IJCNN 2019 / TNNLS 2022) and critic training (its
                     baseline after Czarnecki et al. 2017): critics regress per-sample losses
    dgl.py           Decoupled Greedy Learning (ICML 2020): auxiliary classifiers, nothing sent back
    dni.py           Decoupled Neural Interfaces (ICML 2017): synthetic gradients
    engine.py        what they share: groups on workers, channels, the two phases, the step
    exits.py         sub-model counts, progressive inference and ensembles (LC's Tables 5 and 6)

Reading one method: its file and engine.py.
"""

from algorithms.local_learning import dgl, dni, local_critic  # noqa: F401 (registers them)
