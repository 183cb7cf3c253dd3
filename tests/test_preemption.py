"""SIGTERM means "stop and be resumable" at every moment of a run's life (issue 15, class 3).

Sent to run.py as a scheduler would: before anything started, while the workers set up, mid-way
through training, and between two runs of a sweep. Each time: exit status 143, the run (if one
was set up) recorded as `interrupted`, a sweep stopped, no process left; and resume=true then
finishes with metrics bit-identical to an uninterrupted run's (float64, step times aside).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path

import pytest

from tests.catalogue import session_alive
from tests.cli import REPO, TINY, read_metrics, read_summary, run_cli, start, wait_for

pytestmark = pytest.mark.slow

EXACT = [*TINY, "dtype=float64", "algorithm=data_parallel", "gpus=2", "steps=60", "eval_every=4",
         "checkpoint_every=7"]


def terminate(process: subprocess.Popen) -> str:
    """SIGTERM to run.py; returns its stderr once it ended with 143 and left no process."""
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    deadline = time.time() + 10
    while session_alive(process.pid) and time.time() < deadline:
        time.sleep(0.1)
    assert not session_alive(process.pid)
    return stderr


def curve(run_dir: Path) -> list[tuple]:
    return [tuple(v for k, v in sorted(row.items()) if k != "step_time_s") for row in read_metrics(run_dir)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> list[tuple]:
    run_dir = tmp_path_factory.mktemp("whole") / "run"
    assert run_cli([*EXACT, f"hydra.run.dir={run_dir}"], cwd=run_dir.parent).returncode == 0
    return curve(run_dir)


def resume_to_the_end(run_dir: Path, cwd: Path, args: list[str] = EXACT) -> None:
    resumed = run_cli([*args, "resume=true", f"hydra.run.dir={run_dir}"], cwd=cwd)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert read_summary(run_dir)["status"] == "ok"


def test_sigterm_before_anything_started_exits_143_and_writes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    process = start([*EXACT, f"hydra.run.dir={run_dir}"], tmp_path)
    time.sleep(0.5)  # still importing torch
    terminate(process)
    assert not (run_dir / "summary.json").exists()


def test_sigterm_while_the_workers_set_up_is_interrupted_and_resumes(tmp_path, uninterrupted):
    run_dir = tmp_path / "run"
    process = start([*EXACT, f"hydra.run.dir={run_dir}"], tmp_path)
    wait_for(run_dir / "config.yaml", process)  # written just before the workers are spawned
    terminate(process)
    summary = read_summary(run_dir)
    assert summary["status"] == "interrupted" and "resume=true" in summary["reason"], summary
    resume_to_the_end(run_dir, tmp_path)
    assert curve(run_dir) == uninterrupted


def test_sigterm_mid_training_is_interrupted_at_a_checkpoint_and_resumes_bit_identical(tmp_path, uninterrupted):
    run_dir = tmp_path / "run"
    process = start([*EXACT, f"hydra.run.dir={run_dir}"], tmp_path)
    wait_for(run_dir / "metrics.jsonl", process)  # the first evaluation (step 4) is written
    terminate(process)
    summary = read_summary(run_dir)
    assert summary["status"] == "interrupted", summary
    step = summary["interrupted_at_step"]
    assert (run_dir / "checkpoints" / f"step{step}" / "complete").exists()  # taken where it stopped
    resume_to_the_end(run_dir, tmp_path)
    assert read_summary(run_dir)["resumed_from_step"] == step
    assert curve(run_dir) == uninterrupted


def test_sigterm_between_the_runs_of_a_sweep_stops_it_and_resume_finishes_it(tmp_path):
    sweep = tmp_path / "sweep"
    grid = ["-m", *TINY, "dtype=float64", "seed=1,2", f"hydra.sweep.dir={sweep}"]
    process = start(grid, tmp_path)
    first = sweep / "0_backprop_g1"
    wait_for(first / "summary.json", process)
    kept = (first / "summary.json").read_bytes()
    terminate(process)
    second = sweep / "1_backprop_g1" / "summary.json"
    assert not second.exists() or read_summary(second.parent)["status"] == "interrupted"
    again = run_cli([*grid, "resume=true"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (first / "summary.json").read_bytes() == kept  # finished: not run again
    assert read_summary(second.parent)["status"] == "ok"
    assert (sweep / "report" / "report.md").exists()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_sigterm_whose_exception_was_lost_still_stops_the_job(monkeypatch):
    """The handler's Preempted, raised inside a weakref callback (as the garbage collector runs
    them), is printed and dropped by Python; the next safe point raises it again, so no new run
    starts and run.py does not exit 0 (seen in CI: a sweep ran on after SIGTERM)."""
    from mpbench import preemption

    monkeypatch.setattr(preemption._Sigterm, "arrived", False)
    previous = signal.signal(signal.SIGTERM, preemption._raise_preempted)
    try:
        class Thing:
            pass

        def callback(_):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10_000):  # the handler runs between these bytecodes; its exception is dropped
                pass

        thing = Thing()
        ref = weakref.ref(thing, callback)
        del thing  # runs the callback; this line itself raises nothing
        assert ref() is None
        with pytest.raises(preemption.Preempted):
            preemption.raise_if_preempted()
        with pytest.raises(preemption.Preempted), preemption.forwarded_to(lambda: None):
            pass  # no run starts its workers
    finally:
        signal.signal(signal.SIGTERM, previous)


LIBRARY_REPLACES_PREEMPTED = """
import os, signal, sys
sys.argv = ["run.py"]
import run
from hydra.errors import ConfigCompositionException

def train():  # what CI saw: Hydra composing a sweep's next point, its clean-up failing on the way out
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(100_000):
            pass
    finally:
        raise ConfigCompositionException()

run.train = train
run.main()
"""


def test_an_error_a_library_raises_in_place_of_the_preemption_still_exits_143(tmp_path):
    """SIGTERM's exception, raised inside a library, can be replaced by the library's own error
    (a `finally` that fails on the half-done state). The job must still end as preempted (143,
    resumable), not as bad input (exit 2, "error: ConfigCompositionException")."""
    process = subprocess.run([sys.executable, "-c", LIBRARY_REPLACES_PREEMPTED], cwd=REPO, capture_output=True,
                             text=True, timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, process.stderr[-3000:]
    assert "interrupted: SIGTERM" in process.stderr
    assert "error:" not in process.stderr


def test_a_sweep_point_refused_after_sigterm_is_not_recorded_as_skipped(tmp_path):
    """A point whose checks failed because SIGTERM interrupted them must not be recorded as
    `skipped` (bad input) with the sweep going on: the preemption stops the sweep."""
    script = f"""
import sys
sys.argv = ["run.py"]
import run
from pathlib import Path
from mpbench import preemption
from mpbench.errors import ConfigError

preemption._Sigterm.arrived = True
try:
    run._refused(None, ConfigError("half-composed"), True, True, Path({str(tmp_path)!r}))
except preemption.Preempted:
    sys.exit(143)
"""
    process = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert process.returncode == 143, process.stderr[-3000:]
    assert not (tmp_path / "summary.json").exists()
