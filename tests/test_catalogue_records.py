"""The catalogue of faults around a run's records (issue 15, classes 1, 6, 7 and 8).

Each case starts from a finished run's directory (copied from one real run), damages or
occupies it as a user, a job array or a cluster would, runs a command, and checks the promise
(tests/catalogue.py): the exit status, one `error:` line naming the key or file, no traceback,
no process left alive, and the earlier records byte-identical unless the case is a resume that
must redo a damaged run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.catalogue import (
    assert_one_error,
    run_case,
    run_py,
    snapshot,
    with_file_size_limit,
)
from tests.cli import REPO, TINY, read_summary

pytestmark = pytest.mark.slow  # one process (or more) per case


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """One finished smoke run (backprop, seed 0, checkpoint at step 2), copied by every case."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    outcome = run_py([*TINY, "checkpoint_every=2", f"hydra.run.dir={run_dir}"], cwd=run_dir.parent)
    assert outcome.returncode == 0, outcome.stderr
    assert read_summary(run_dir)["status"] == "ok"
    return run_dir


def _write(name: str, text: str) -> Callable[[Path], None]:
    return lambda run: (run / name).write_text(text)


def _truncate(name: str) -> Callable[[Path], None]:
    return lambda run: (run / name).write_bytes((run / name).read_bytes()[:-40])


def _status(status: str) -> Callable[[Path], None]:
    def set_status(run: Path) -> None:
        summary = json.loads((run / "summary.json").read_text())
        (run / "summary.json").write_text(json.dumps({**summary, "status": status}))
    return set_status


def _only_config(seed: int) -> Callable[[Path], None]:
    """A killed run of another config: config.yaml (with that seed) and a checkpoint, no summary."""
    def killed(run: Path) -> None:
        (run / "summary.json").unlink()
        (run / "config.yaml").write_text((run / "config.yaml").read_text().replace("seed: 0", f"seed: {seed}"))
    return killed


@dataclass
class Case:
    args: list[str]  # "{run}" stands for the run directory
    named: str | None  # what the error line names; None: the command must succeed
    prepare: Callable[[Path], None] = lambda run: None
    code: int = 2
    kept: bool = True  # the earlier records stay byte-identical
    env: dict = field(default_factory=dict)
    torchrun: int | None = None  # started by torchrun with this many processes
    redone: bool = False  # resume must run the damaged run again to a verified ok


RUN = "hydra.run.dir={run}"
CASES = {
    # Class 1: a finished run's records are never replaced implicitly.
    "the same command again without resume": Case([*TINY, "checkpoint_every=2", RUN], "resume=true"),
    "another seed without resume": Case([*TINY, "seed=1", RUN], "mv "),
    "another seed with resume": Case([*TINY, "seed=1", "resume=true", RUN], "seed"),
    "another learning rate with resume": Case([*TINY, "optimizer.lr=0.5", "resume=true", RUN], "optimizer"),
    "another algorithm with resume": Case([*TINY, "algorithm=data_parallel", "resume=true", RUN], "algorithm"),
    "more steps with resume": Case([*TINY, "steps=6", "resume=true", RUN], "steps"),
    "another batch size with resume": Case([*TINY, "batch_size=4", "resume=true", RUN], "batch_size"),
    "another dtype with resume": Case([*TINY, "dtype=float64", "resume=true", RUN], "dtype"),
    "another model size with resume": Case([*TINY, "model.n_layer=1", "resume=true", RUN], "model"),
    "another dataset setting with resume": Case([*TINY, "dataset.seq_len=16", "resume=true", RUN], "dataset"),
    "more threads with resume": Case([*TINY, "threads_per_worker=2", "resume=true", RUN], "threads_per_worker"),
    "more eval batches without resume": Case([*TINY, "eval_batches=2", RUN], "already holds a run"),
    "a failed run of another config with resume": Case([*TINY, "seed=3", "resume=true", RUN], "seed",
                                                       prepare=_status("failed")),
    "an interrupted run without resume": Case([*TINY, "checkpoint_every=2", RUN], "resume=true",
                                              prepare=_status("interrupted")),
    "a killed run of another config with resume": Case([*TINY, "resume=true", RUN], "seed", prepare=_only_config(7)),
    "a killed run of another config without resume": Case([*TINY, RUN], "already holds a run",
                                                          prepare=_only_config(7)),
    "torchrun with more processes than gpus": Case([*TINY, RUN], "torchrun started 2", torchrun=2),
    "torchrun with fewer processes than gpus": Case([*TINY, "algorithm=data_parallel", "gpus=2", RUN],
                                                    "torchrun started 1", torchrun=1),
    "torchrun into a finished run without resume": Case([*TINY, "checkpoint_every=2", RUN], "resume=true",
                                                        torchrun=1),
    "the results directory is a file": Case([*TINY, "hydra.run.dir={run}/summary.json"], "summary.json"),
    "resume of the same run is a no-op": Case([*TINY, "checkpoint_every=2", "resume=true", RUN], None, code=0),
    "resume with other run-control keys is a no-op": Case([*TINY, "timeout_s=77", "save_weights=true",
                                                           "resume=true", RUN], None, code=0),
    # Class 6: what resume trusts is verified; damaged records are unfinished and run again.
    "a truncated metrics file beside an ok summary": Case([*TINY, "checkpoint_every=2", "resume=true", RUN], None,
                                                          code=0, prepare=_truncate("metrics.jsonl"), kept=False,
                                                          redone=True),
    "a missing metrics file beside an ok summary": Case([*TINY, "checkpoint_every=2", "resume=true", RUN], None,
                                                        code=0, prepare=lambda run: (run / "metrics.jsonl").unlink(),
                                                        kept=False, redone=True),
    "a summary that is a JSON list": Case([*TINY, "checkpoint_every=2", "resume=true", RUN], None, code=0,
                                          prepare=_write("summary.json", "[1, 2]"), kept=False, redone=True),
    "a summary that is a JSON string": Case([*TINY, "checkpoint_every=2", "resume=true", RUN], None, code=0,
                                            prepare=_write("summary.json", '"ok"'), kept=False, redone=True),
    "a summary whose status is a number": Case([*TINY, "checkpoint_every=2", "resume=true", RUN], None, code=0,
                                               prepare=_write("summary.json", '{"status": 5}'), kept=False,
                                               redone=True),
    "a summary that is not JSON": Case([*TINY, "checkpoint_every=2", "resume=true", RUN], None, code=0,
                                       prepare=_write("summary.json", '{"status": "ok", '), kept=False, redone=True),
    "a summary that is not UTF-8": Case([*TINY, "checkpoint_every=2", "resume=true", RUN], None, code=0,
                                        prepare=lambda run: (run / "summary.json").write_bytes(b"\xff\xfe\x00"),
                                        kept=False, redone=True),
    "a config.yaml that is not YAML": Case([*TINY, "checkpoint_every=2", "resume=true", RUN], None, code=0,
                                           prepare=_write("config.yaml", "steps: [4\n: :"), kept=False, redone=True),
    "a config.yaml that is a list": Case([*TINY, "checkpoint_every=2", "resume=true", RUN], None, code=0,
                                         prepare=_write("config.yaml", "- 1\n- 2\n"), kept=False, redone=True),
    "an edited config.yaml": Case([*TINY, "checkpoint_every=2", "resume=true", RUN], None, code=0,
                                  prepare=lambda run: (run / "config.yaml").write_text(
                                      (run / "config.yaml").read_text() + "# edited\n"), kept=False, redone=True),
    "a checkpoint whose worker file is missing": Case([*TINY, "checkpoint_every=2", "resume=true", RUN], "rank0.pt",
                                                      prepare=lambda run: [
                                                          (run / "summary.json").unlink(),
                                                          (run / "checkpoints" / "step2" / "rank0.pt").unlink()]),
    # Class 8: a stale RANK / WORLD_SIZE without torchrun is ignored, with a notice.
    "a stale RANK and WORLD_SIZE": Case([*TINY, "hydra.run.dir={run}.new"], None, code=0,
                                        env={"RANK": "1", "WORLD_SIZE": "2"}),
    "a stale torchrun environment without its run id": Case(
        [*TINY, "algorithm=data_parallel", "gpus=2", "hydra.run.dir={run}.new"], None, code=0,
        env={"RANK": "0", "WORLD_SIZE": "4", "LOCAL_RANK": "0", "MASTER_ADDR": "10.255.255.1", "MASTER_PORT": "1"}),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_records_catalogue(case, finished_run, tmp_path):
    spec = CASES[case]
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    spec.prepare(run)
    before = snapshot(run)
    args = [a.replace("{run}", str(run)) for a in spec.args]
    if spec.torchrun:
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(spec.torchrun),
                   "--master-port", "0", str(REPO / "run.py"), *args]
        outcome = run_case(command, tmp_path, env=spec.env)
    else:
        outcome = run_py(args, tmp_path, env=spec.env)
    if spec.named is not None and spec.torchrun:
        # torchrun reports a worker's non-zero exit with its own traceback and exit status 1;
        # ours is the one error line, from rank 0 only.
        errors = [line for line in outcome.error_lines if line.startswith("error: ")]
        assert outcome.returncode != 0 and len(errors) == 1 and spec.named in errors[0], outcome.stderr[-3000:]
    elif spec.named is not None:
        assert_one_error(outcome, spec.named, spec.code)
    else:
        assert outcome.returncode == spec.code, outcome.stderr[-3000:]
        assert "Traceback" not in outcome.stdout + outcome.stderr, outcome.stderr[-3000:]
    if spec.kept:
        assert snapshot(run) == before
    if spec.redone:
        assert "already finished" not in outcome.stdout
        summary = read_summary(run)
        assert summary["status"] == "ok" and summary["steps_completed"] == 4
        assert len((run / "metrics.jsonl").read_text().splitlines()) == 4
    if spec.env.get("RANK"):
        assert "notice: RANK/WORLD_SIZE" in outcome.stdout
        assert read_summary(Path(f"{run}.new"))["status"] == "ok"


def test_a_second_process_on_a_locked_run_directory_names_the_holder(finished_run, tmp_path):
    """A run directory in use (locked by a live process) is refused with the holder's pid."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before = snapshot(run)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from mpbench.run_dirs import DirLock; DirLock.acquire(Path(sys.argv[1]), '');"
                               "print('locked', flush=True); time.sleep(60)", str(run)],
                              cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        outcome = run_py([*TINY, "checkpoint_every=2", "resume=true", f"hydra.run.dir={run}"], tmp_path)
        assert_one_error(outcome, f"pid {holder.pid}")
        outcome = run_py(["-m", *TINY, "resume=true", f"hydra.sweep.dir={run}"], tmp_path)
        assert_one_error(outcome, f"pid {holder.pid}")
    finally:
        holder.kill()
        holder.wait()
    # The lock dies with its holder, however it ends: the resume then goes through.
    before.pop(".mpbench.lock", None)
    outcome = run_py([*TINY, "checkpoint_every=2", "resume=true", f"hydra.run.dir={run}"], tmp_path)
    assert outcome.returncode == 0 and "already finished ok" in outcome.stdout, outcome.stderr
    after = snapshot(run)
    after.pop(".mpbench.lock", None)
    assert after == before


def test_checkpoint_on_a_full_file_system_fails_in_one_line_and_leaves_no_temporaries(tmp_path):
    """The file system is "full" for any file above 60 kB (RLIMIT_FSIZE, see
    tests/catalogue.with_file_size_limit): the records fit, a checkpoint does not."""
    run = tmp_path / "run"
    outcome = run_case([sys.executable, str(REPO / "run.py"), *TINY, "checkpoint_every=2", f"hydra.run.dir={run}"],
                       tmp_path, preexec=with_file_size_limit(60_000))
    assert outcome.returncode == 1 and "Traceback" not in outcome.stdout + outcome.stderr, outcome.stderr
    summary = read_summary(run)
    assert summary["status"] == "failed" and "cannot write checkpoint" in summary["reason"]
    assert "rank0.pt" in summary["reason"] and "\n" not in summary["reason"]
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]
    assert not list((run / "checkpoints").glob("step*/rank*.pt"))


def test_records_that_do_not_fit_are_one_line_naming_the_file(tmp_path):
    """Not even config.yaml fits: one error line naming it, exit 2, no temporary left."""
    run = tmp_path / "run"
    outcome = run_case([sys.executable, str(REPO / "run.py"), *TINY, f"hydra.run.dir={run}"], tmp_path,
                       preexec=with_file_size_limit(100))
    assert_one_error(outcome, "config.yaml")
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]
    assert not (run / "summary.json").exists()


def test_progress_in_a_log_file_is_plain_lines(tmp_path):
    """stderr to a file (a CI log): periodic plain lines, no carriage-return redraws."""
    log = tmp_path / "log.txt"
    with open(log, "w") as f:
        result = subprocess.run([sys.executable, str(REPO / "run.py"), *TINY, "steps=20", "eval_every=10",
                                 f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, stdout=f, stderr=f, timeout=300)
    assert result.returncode == 0
    text = log.read_text()
    assert "\r" not in text
    steps = [line for line in text.splitlines() if line.startswith("train: step ")]
    assert steps[-1].startswith("train: step 20/20") and 2 <= len(steps) <= 11, steps
    assert os.path.getsize(log) < 5000


# Class 2: the report over a tree holding broken runs beside a finished one: listed, and written.
REPORT_CASES = {
    "a killed run": lambda run: (run / "summary.json").unlink(),
    "an empty run directory": lambda run: shutil.rmtree(run) or run.mkdir(),
    "a summary that is a list": _write("summary.json", "[]"),
    "a summary without status": _write("summary.json", '{"final": {"eval_loss": 1.0}}'),
    "a summary with final as a list": _write("summary.json", '{"status": "ok", "final": [1, 2]}'),
    "a summary that is not JSON": _write("summary.json", "{"),
    "a truncated metrics file": _truncate("metrics.jsonl"),
    "a config that is not YAML": _write("config.yaml", "a: [1\n: :"),
}


@pytest.mark.parametrize("case", REPORT_CASES, ids=list(REPORT_CASES))
def test_report_catalogue(case, finished_run, tmp_path):
    tree = tmp_path / "sweep"
    shutil.copytree(finished_run, tree / "0_backprop_g1")
    shutil.copytree(finished_run, tree / "1_backprop_g1")
    REPORT_CASES[case](tree / "1_backprop_g1")
    before = snapshot(tree)
    outcome = run_case([sys.executable, "-m", "analysis.report", str(tree)], REPO)
    assert outcome.returncode == 0 and "Traceback" not in outcome.stdout + outcome.stderr, outcome.stderr[-3000:]
    page = (tree / "report" / "report.md").read_text()
    assert "0_backprop_g1" in page and "1_backprop_g1" in page
    after = snapshot(tree)
    assert {k: v for k, v in after.items() if not k.startswith("report/")} == before


def test_a_worker_that_stops_responding_is_named_as_the_cause(tmp_path):
    """SIGSTOP one worker mid-run: the run fails within timeout_s, blaming the silent worker
    (the one that left no report), not the healthy one that timed out waiting for it."""
    run = tmp_path / "run"
    process = subprocess.Popen([sys.executable, str(REPO / "run.py"), *TINY, "algorithm=data_parallel", "gpus=2",
                                "steps=100000", "eval_every=10", "timeout_s=8", f"hydra.run.dir={run}"],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        while not (run / "metrics.jsonl").exists():
            assert process.poll() is None, process.communicate()
            time.sleep(0.05)
        workers = sorted(int(p.name) for p in Path("/proc").glob("[0-9]*") if p.name.isdigit()
                         and _parent(p) == process.pid and b"spawn_main" in (p / "cmdline").read_bytes())
        assert len(workers) == 2
        os.kill(workers[-1], signal.SIGSTOP)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 1 and "Traceback" not in stderr, stderr[-3000:]
    summary = read_summary(run)
    silent = summary["failed_rank"]
    assert f"rank {silent} stopped responding" in summary["reason"], summary["reason"]
    assert not (run / "workers" / f"rank{silent}.json").exists()
    assert (run / "workers" / f"rank{1 - silent}.json").exists()


def _parent(proc: Path) -> int | None:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None
