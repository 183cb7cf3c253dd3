"""The training algorithms, one module (or one package per family) each; importing this package
registers them all (`mpbench.registry`). `run.py` is the only production code that imports it.

    backprop.py            end-to-end backprop on one worker: the reference
    data_parallel.py       DistributedDataParallel (the Horovod analogue)
    pipeline.py            synchronous pipelines (torch.distributed.pipelining) and HyPar-style hybrid
    diloco.py              DiLoCo: replicas (of hypar's pipelines) that average parameters every H steps
    stale_gradient/        ddg, features_replay, ouroboros: decoupled backprop with delayed gradients
    local_learning/        local_critic, critic_training, dgl, dni: local losses, no backprop across workers
    sub_model_backprop.py  LC's Table 4 comparison: a sub-model trained end to end by backprop
    simulated/             how the simulator (mpbench/simulate/) models each of them
"""

from algorithms import backprop, data_parallel, diloco, local_learning, pipeline, simulated, stale_gradient  # noqa: F401
from algorithms import sub_model_backprop  # noqa: F401
