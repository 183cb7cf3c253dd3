"""Ctrl-C (SIGINT) ends like SIGTERM (tests/test_preemption.py): the run in flight is recorded
`interrupted`, and run.py ends with the same line saying how to continue, "run the same command
with resume=true to continue", naming the directory it made (the same command would otherwise
make a new one), and exit 128 + the signal (130 for SIGINT), for a single run and for a sweep.
Following the hint continues the run from its checkpoint."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.catalogue import session_alive
from tests.cli import REPO, TINY, read_summary

pytestmark = pytest.mark.slow

# Long enough never to finish before the signal; a checkpoint soon, so that resuming has one.
LONG = [*TINY, "steps=100000", "eval_every=100000", "checkpoint_every=5", "algorithm=data_parallel"]
HINT = re.compile(r"^interrupted: (Ctrl-C \(SIGINT\)|SIGTERM); run the same command with resume=true to continue "
                  r"\(adding (hydra\.(?:run|sweep)\.dir)=(\S+), the directory it made\)$")
NAMES = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM"}


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    """run.py in its own session, SIGINT at its default (a background job starts with it ignored)."""
    return subprocess.Popen([sys.executable, str(REPO / "run.py"), *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for_checkpoint(cwd: Path, pattern: str, process: subprocess.Popen, timeout: float = 240) -> Path:
    """The run directory matching `pattern` under `cwd` once its first checkpoint is complete."""
    deadline = time.time() + timeout
    while True:
        done = sorted(cwd.glob(f"{pattern}/checkpoints/step*/complete"))
        if done:
            return done[0].parents[2]
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.1)


def interrupt(process: subprocess.Popen, signum: int = signal.SIGINT) -> str:
    """The signal to the whole session, as a terminal's Ctrl-C reaches every process of the
    foreground job; returns stderr once run.py ended with 128 + signum and left no process."""
    os.killpg(process.pid, signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, stderr[-3000:]
    deadline = time.time() + 10
    while session_alive(process.pid) and time.time() < deadline:
        time.sleep(0.1)
    assert not session_alive(process.pid)
    return stderr


def hint_of(stderr: str, signum: int = signal.SIGINT) -> tuple[str, Path]:
    last = stderr.strip().splitlines()[-1]
    match = HINT.match(last)
    assert match and match[1] == NAMES[signum], stderr[-3000:]
    return match[2], Path(match[3])


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_run_is_recorded_and_its_hint_continues_it(tmp_path, signum):
    args = [*LONG, "gpus=2"]
    process = start(args, tmp_path)
    run_dir = wait_for_checkpoint(tmp_path, "results/runs/*", process)
    key, named = hint_of(interrupt(process, signum), signum)
    assert (key, named) == ("hydra.run.dir", run_dir)
    summary = read_summary(run_dir)
    assert summary["status"] == "interrupted" and signum.name in summary["reason"]

    # The hint, followed: the same command with resume=true and the directory continues the run there.
    again = start([*args, "resume=true", f"{key}={named}"], tmp_path)
    deadline, said = time.time() + 240, ""
    while "resume:" not in said and time.time() < deadline and again.poll() is None:
        if select.select([again.stdout], [], [], 1.0)[0]:
            said += again.stdout.readline()
    assert re.search(rf"resume: {re.escape(str(run_dir))} from its checkpoint at step \d+", said), said
    assert [p.name for p in (tmp_path / "results" / "runs").iterdir()] == [run_dir.name]
    interrupt(again)


def test_ctrl_c_on_a_sweep_stops_it_with_the_hint(tmp_path):
    process = start(["-m", *LONG, "gpus=2,1", "report.add_reference=false"], tmp_path)
    point = wait_for_checkpoint(tmp_path, "results/sweeps/*/0_data_parallel_g2", process)
    key, named = hint_of(interrupt(process))
    assert (key, named) == ("hydra.sweep.dir", point.parent)
    assert read_summary(point)["status"] == "interrupted"
    assert not (point.parent / "1_data_parallel_g1" / "summary.json").exists()  # the sweep stopped
