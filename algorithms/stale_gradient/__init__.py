"""The stale-gradient family: decoupled backpropagation with delayed gradients
(docs/algorithms/stale_gradient.md).

The model's blocks are cut into K modules. The forward is not decoupled: batch t passes through
every module in iteration t. The backward is: module k applies at iteration t the gradient of the
batch of iteration t-K+k (its delay is K-k; the last module's is 0), so no module waits for the
error of the batch it has just forwarded. Three members, each one file:

    ddg.py              DDG (ICML 2018): module k on worker k, exact stale gradients (semantics S)
    features_replay.py  Features Replay (NeurIPS 2018): the same, recomputed from stored inputs (R)
    ouroboros.py        Ouroboros (NeurIPS 2019): K modules on K-1 workers in a ring (tied embedding once)
    pipedream_2bw.py    PipeDream-2BW (ICML 2021): every stage one update behind, two weight versions
                        (its settings and the one-process emulation)
    async_nesterov.py   Nesterov for asynchronous pipelines (ICML 2025): ddg's pipeline, each module's
                        optimizer Nesterov with a look-ahead that offsets the delay

and what they share:

    family.py           the settings (placement, semantics, modules, balance, runtime) and checks
    placement.py        linear and ring placement, and the ring's profiled split
    delayed_module.py   one module: forward, what it keeps (S, H, R), delayed backward, checkpoint
    worker_loop.py      the per-worker iteration, messages and tied tensors, optimizers
    gradient_fifo.py    the one-process emulation of S: a FIFO of gradient blocks
    double_buffered_pipeline.py  pipedream_2bw's workers: 1F1B never flushed, versions by batch

Reading one member: its file, placement.py, worker_loop.py and delayed_module.py.
"""

from algorithms.stale_gradient import async_nesterov, ddg, features_replay, ouroboros, pipedream_2bw  # noqa: F401
