"""Split-model plumbing shared by every algorithm that cuts the model across workers.

    split.py       the blocks cut into consecutive parts; what a worker owns; runtime checks
    balance.py     where to cut: uniform, explicit, or balanced by profiled block costs
    channels.py    message streams between parts: a local queue or a remote tagged stream
    ties.py        tensors tied across parts (GPT's embedding): one exchange, one summation order
    clock.py       one definition of a worker's step, compute and wait time per iteration
    replay.py      running a forward again as it first ran; counting what a forward saves
    evaluation.py  the held-out forward of a model whose parts live on different workers
"""
