"""Nothing lost: unique directories, locks, and the rules for reusing a run directory
(mpbench/run_dirs.py), in process; then two real sweeps started together."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from pathlib import Path

import pytest

from mpbench.errors import ConfigError
from mpbench.records import atomic_write_json, atomic_write_text, file_digests
from mpbench.run_dirs import DirectoryInUse, DirLock, claim_run_dir, unique_dir
from tests.catalogue import snapshot
from tests.cli import REPO, TINY, read_summary

CONFIG = {"algorithm": {"name": "backprop"}, "seed": 0, "steps": 4, "resume": False, "timeout_s": 60}


def finished(run_dir: Path, config: dict = CONFIG, status: str = "ok") -> Path:
    """A run's records as run.py leaves them: config.yaml, metrics.jsonl, a summary with digests."""
    atomic_write_text(run_dir / "config.yaml", json.dumps(config))  # JSON is YAML
    atomic_write_text(run_dir / "metrics.jsonl", '{"step": 1, "train_loss": 1.0}\n')
    atomic_write_json(run_dir / "summary.json", {"status": status, "digests": file_digests(run_dir)})
    return run_dir


def _make_unique(base: str, queue) -> None:
    queue.put(unique_dir(base))


def test_unique_dir_gives_each_of_many_simultaneous_jobs_its_own_directory(tmp_path):
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    jobs = [context.Process(target=_make_unique, args=(str(tmp_path / "sweeps" / "12-00-00"), queue))
            for _ in range(8)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join()
    names = sorted(Path(queue.get()).name for _ in jobs)
    assert names == sorted(["12-00-00"] + [f"12-00-00.{n}" for n in range(2, 9)])


def test_a_locked_directory_names_its_holder_and_is_free_once_released(tmp_path):
    lock = DirLock.acquire(tmp_path / "run", "choose another hydra.run.dir")
    with pytest.raises(DirectoryInUse, match=r"in use by pid \d+ .*choose another hydra.run.dir"):
        DirLock.acquire(tmp_path / "run", "choose another hydra.run.dir")
    lock.release()
    assert not (tmp_path / "run" / ".mpbench.lock").exists()
    DirLock.acquire(tmp_path / "run", "").release()


def test_a_lock_dies_with_its_process(tmp_path):
    holder = subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                             "from mpbench.run_dirs import DirLock; DirLock.acquire(Path(sys.argv[1]), '')",
                             str(tmp_path / "run")], cwd=REPO, timeout=60)
    assert holder.returncode == 0 and (tmp_path / "run" / ".mpbench.lock").exists()  # left behind, not held
    DirLock.acquire(tmp_path / "run", "").release()


def claim(run_dir: Path, config: dict = CONFIG, resume: bool = False, in_sweep: bool = False):
    result = claim_run_dir(run_dir, config, resume, in_sweep)
    result.lock.release()
    return result


def test_an_empty_directory_is_a_new_run(tmp_path):
    assert claim(tmp_path / "run").action == "new"


def test_a_finished_run_is_skipped_by_resume_and_refused_without_it(tmp_path):
    run = finished(tmp_path / "run")
    before = snapshot(run)
    assert claim(run, resume=True).action == "done"
    assert claim(run, {**CONFIG, "timeout_s": 5, "resume": True}, resume=True).action == "done"  # run control
    with pytest.raises(ConfigError, match=r"already holds a run \(status ok\).*resume=true.*mv .*run .*run.old"):
        claim(run)
    with pytest.raises(ConfigError, match="differs in seed"):
        claim(run, {**CONFIG, "seed": 1}, resume=True)
    assert snapshot(run) == before


@pytest.mark.parametrize("damage", ["truncated metrics", "summary a list", "summary not json", "failed"])
def test_damaged_or_unfinished_records_of_the_same_run_are_continued(tmp_path, damage):
    run = finished(tmp_path / "run", status="failed" if damage == "failed" else "ok")
    if damage == "truncated metrics":
        (run / "metrics.jsonl").write_text('{"step": 1, "tra')
    elif damage == "summary a list":
        (run / "summary.json").write_text("[1, 2]")
    elif damage == "summary not json":
        (run / "summary.json").write_text("{")
    assert claim(run, resume=True).action == "continue"


def test_an_unreadable_config_is_started_over_by_resume(tmp_path):
    run = finished(tmp_path / "run")
    (run / "config.yaml").write_text("a: [1\n: :")
    assert claim(run, resume=True).action == "new"


def test_a_resumed_sweep_finds_a_point_by_its_config_or_writes_beside_another(tmp_path):
    sweep = tmp_path / "sweep"
    finished(sweep / "0_backprop_g1")
    moved = claim(sweep / "1_backprop_g1", resume=True, in_sweep=True)  # the point moved to job 1
    assert moved.run_dir == sweep / "0_backprop_g1" and moved.action == "done"
    assert not (sweep / "1_backprop_g1").exists()
    other = claim(sweep / "0_backprop_g1", {**CONFIG, "seed": 5}, resume=True, in_sweep=True)
    assert other.run_dir == sweep / "0_backprop_g1.2" and other.action == "new" and "beside" in other.note
    assert read_summary(sweep / "0_backprop_g1")["status"] == "ok"


@pytest.mark.slow
def test_two_sweeps_started_together_keep_every_run(tmp_path):
    """Default directories: two sweeps (a job array) each get their own, and each console table
    shows its own runs. The same explicit directory: one sweep runs, the other is one line."""
    def sweep(seed: int, *extra: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(REPO / "run.py"), "-m", *TINY, f"seed={seed}",
                                 "algorithm=backprop,data_parallel", *extra], cwd=tmp_path, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first, second = sweep(1), sweep(2)
    outputs = [p.communicate(timeout=300) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    sweeps = sorted((tmp_path / "results" / "sweeps").iterdir())
    assert len(sweeps) == 2
    for (stdout, _), seed in zip(outputs, (1, 2)):
        where = Path(next(line.split()[1] for line in stdout.splitlines() if line.startswith("results: ")))
        seeds = {read_summary(run)["seed"] for run in where.iterdir() if (run / "summary.json").exists()}
        assert seeds == {seed} and len(list(where.glob("*_g1"))) == 2

    shared = f"hydra.sweep.dir={tmp_path / 'shared'}"
    first, second = sweep(1, shared), sweep(2, shared)
    outputs = [p.communicate(timeout=300) for p in (first, second)]
    codes = sorted((first.returncode, second.returncode))
    assert codes == [0, 2], outputs
    _, refused = outputs[[first.returncode, second.returncode].index(2)]
    lines = [line for line in refused.splitlines() if line.strip()]
    assert len(lines) == 1 and ("in use by pid" in lines[0] or "already holds a sweep" in lines[0]), refused
    winner = 1 if first.returncode == 0 else 2
    runs = [run for run in (tmp_path / "shared").iterdir() if (run / "summary.json").exists()]
    assert len(runs) == 2 and {read_summary(run)["seed"] for run in runs} == {winner}
