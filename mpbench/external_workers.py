"""Workers that another launcher started: torchrun, or the tasks of a submitit job.

run.py normally spawns a run's workers itself. Two launchers start them instead, one process per
worker, possibly over several nodes, and each process then joins the group through torch's
env:// variables (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE):

- `torchrun` (one node, or several through its c10d rendezvous) sets them itself;
- a submitit job of several tasks (SLURM's `nodes` x `tasks_per_node`, one task per worker) gets
  them from `submitit.helpers.TorchDistributedEnvironment` (`adopt_submitit_tasks`). A job of
  one task is run.py as usual: it spawns the workers on its node.

Rank 0 owns the run directory and writes the summary; every rank writes its own report into it,
so over several nodes the results directory must be on a shared file system.
"""

from __future__ import annotations

import os

from mpbench.errors import ConfigError
from mpbench.preemption import in_submitit_job

SUBMITIT_TASKS = "MPBENCH_SUBMITIT_TASKS"  # set by adopt_submitit_tasks: this process is one task of several


def adopt_submitit_tasks() -> None:
    """In a submitit job of several tasks, make this task one worker of the run: export the
    env:// variables from submitit's job environment (each task sees every GPU of its node and
    takes the one of its local rank). Nothing happens elsewhere."""
    if not in_submitit_job() or SUBMITIT_TASKS in os.environ:
        return
    import submitit
    from submitit.helpers import TorchDistributedEnvironment

    if submitit.JobEnvironment().num_tasks > 1:
        TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        os.environ[SUBMITIT_TASKS] = "1"


def external_launcher() -> str | None:
    """"torchrun", "submitit" (one task per worker), or None: run.py spawns the workers. torchrun
    marks its workers with TORCHELASTIC_RUN_ID; RANK and WORLD_SIZE alone may be left over in a
    shell or a job script and say nothing about this process."""
    if "TORCHELASTIC_RUN_ID" in os.environ:
        return "torchrun"
    return "submitit" if SUBMITIT_TASKS in os.environ else None


def started_externally() -> bool:
    return external_launcher() is not None


def external_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int | None:
    """This worker's index on its node, where a launcher says it."""
    return int(os.environ["LOCAL_RANK"]) if started_externally() and "LOCAL_RANK" in os.environ else None


def workers_on_this_node(workers: int) -> int:
    """Of a run's `workers`, how many run on this node (each needs a GPU of it)."""
    if started_externally() and "LOCAL_WORLD_SIZE" in os.environ:
        return int(os.environ["LOCAL_WORLD_SIZE"])
    return workers


def check_external_world(workers: int | None) -> str | None:
    """Before anything is written: the launcher's process count must be `gpus` (None: not known
    yet). Returns a notice when RANK/WORLD_SIZE are set without a launcher (they are ignored)."""
    launcher = external_launcher()
    if launcher is not None:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if workers is not None and world != workers:
            how = "--nnodes times --nproc-per-node" if launcher == "torchrun" else \
                "hydra.launcher.nodes times hydra.launcher.tasks_per_node"
            raise ConfigError(f"gpus={workers} but {launcher} started {world} processes; pass gpus={world}, "
                              f"or make {how} equal {workers}")
        return None
    stale = [k for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK") if k in os.environ]
    if stale:
        return (f"{'/'.join(stale)} set in the environment but this process was not started by torchrun: "
                f"ignored; {workers} worker(s) are spawned here")
    return None
