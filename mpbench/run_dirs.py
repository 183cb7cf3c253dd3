"""Run directories: unique names, one process at a time, and a finished run's records kept.

Three rules protect what a run leaves behind:

1. **Unique names.** The default directories (results/runs/<time>_..., results/sweeps/<time>)
   go through the `unique_dir` resolver, which creates the directory with an atomic mkdir and
   appends .2, .3, ... when another job took the name, so jobs started in the same second (a job
   array, two terminals) never share one.
2. **One process per directory.** A run directory is locked while its run is set up, trained and
   recorded, and a sweep directory while its sweep runs (`DirLock`: flock on .mpbench.lock,
   released when the process ends, however it ends). A second process is refused in one line
   naming the holder.
3. **Records are never replaced implicitly.** A directory holding a run's records is reused only
   by `resume=true` with the same config (`claim_run_dir`); a finished run is not run again,
   anything else continues or starts over there. A single run into a directory of another run
   is refused with the command that moves it aside; a resumed sweep whose grid changed finds
   each point's own directory by its config, and writes a new point beside a directory that
   holds another config (<name>.2).
"""

from __future__ import annotations

import copy
import itertools
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mpbench.errors import ConfigError
from mpbench.records import read_json, records_problem

LOCK_NAME = ".mpbench.lock"
RECORD_NAMES = ("config.yaml", "summary.json", "metrics.jsonl", "workers", "checkpoints", "weights")

# Keys that control how a run is executed or reported, not what it computes: a run resumed with
# other values of these is still the same run.
RUN_CONTROL_KEYS = ("resume", "fault", "timeout_s", "checkpoint_every", "save_weights", "report", "worker_limit")


class DirectoryInUse(ConfigError):
    """Another live process holds the directory's lock."""


def unique_dir(base: str) -> str:
    """The OmegaConf resolver `${unique_dir:'<path>'}`: `base`, or `base`.2, .3, ... if taken.

    Creating the directory is what reserves the name; Hydra caches the value, so every job of a
    sweep sees the same one. A directory that cannot be created is returned as it is, for Hydra
    to report."""
    path = Path(base)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for n in itertools.count(1):
            candidate = path if n == 1 else path.with_name(f"{path.name}.{n}")
            try:
                candidate.mkdir()
                return str(candidate)
            except FileExistsError:
                continue
    except OSError:
        return base
    raise AssertionError("unreachable")


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("unique_dir", unique_dir, use_cache=True, replace=True)


def _holder() -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
    command = " ".join(sys.argv)[:200]
    return f"pid {os.getpid()} on {socket.gethostname()} since {started} ({command})"


@dataclass
class DirLock:
    """An exclusive lock on a directory, held by this process until `release` or its end."""

    path: Path
    fd: int

    @classmethod
    def acquire(cls, directory: Path, retry_as: str) -> DirLock:
        """Lock `directory` (created if missing); `retry_as` says, in the error, what to do instead."""
        import fcntl

        directory.mkdir(parents=True, exist_ok=True)
        path = directory / LOCK_NAME
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 4096).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise DirectoryInUse(f"{directory} is in use by {holder}; wait until it ends, or {retry_as}") from None
            try:  # a holder that released in between removed the file: lock the new one instead
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, _holder().encode())
                return cls(path, fd)
            os.close(fd)

    def release(self) -> None:
        """Remove the lock file while still holding it, so the next process locks a fresh one."""
        if self.fd < 0:
            return
        self.path.unlink(missing_ok=True)
        os.close(self.fd)
        self.fd = -1


def holds_records(directory: Path) -> bool:
    return any((Path(directory) / name).exists() for name in RECORD_NAMES)


def _essence(config: dict) -> dict:
    """The keys that make a run what it is (run control aside), every added setting filled in."""
    return {k: v for k, v in _with_added_settings(config).items() if k not in RUN_CONTROL_KEYS}


# Settings added after runs were recorded, with the value that does what those runs did: a run
# recorded before a key existed is a run of that value (so that upgrading the suite keeps its
# finished runs; a run of any other value is another config). Add a line with each new setting.
ADDED_SETTINGS = {("simulator", "profile_rows"): 256,  # earlier: the whole batch timed (the same up to 256 rows)
                  ("simulator", "worker_speed"): 1.0,
                  ("simulator", "profile"): None,  # earlier: a profile in cache_dir (now the sweep's or the run's own)
                  ("autocast",): False, ("compile",): False}


def _with_added_settings(config: dict) -> dict:
    config = copy.deepcopy(config)
    for path, value in ADDED_SETTINGS.items():
        section = config
        for key in path[:-1]:
            section = section.get(key) if isinstance(section.get(key), dict) else None
            if section is None:
                break
        if section is not None:
            section.setdefault(path[-1], value)
    return config


def recorded_config(run_dir: Path) -> dict | None:
    """The resolved config in `run_dir`/config.yaml (with the settings added since at the values
    it ran with: ADDED_SETTINGS); None if missing or unreadable."""
    try:
        config = OmegaConf.to_container(OmegaConf.load(Path(run_dir) / "config.yaml"), resolve=True)
    except Exception:  # noqa: BLE001 - missing, not YAML, not a mapping, unresolvable: not usable
        return None
    return _with_added_settings(config) if isinstance(config, dict) else None


def same_run(run_dir: Path, config: dict) -> bool:
    """Whether `run_dir` holds a run of `config` (the resolved config), run-control keys aside."""
    previous = recorded_config(run_dir)
    return previous is not None and _essence(previous) == _essence(config)


def finished_ok(run_dir: Path, config: dict) -> bool:
    """Whether `run_dir` holds a successful run of `config` whose records are intact (resume
    skips it): summary.json says ok, and the files it vouches for match their digests."""
    if not same_run(run_dir, config):
        return False
    try:
        summary = read_json(Path(run_dir) / "summary.json")
    except (OSError, ValueError):
        return False
    return records_problem(run_dir, summary) is None and summary.get("status") == "ok"


def differing_keys(run_dir: Path, config: dict) -> str:
    """The top-level keys whose values differ from `run_dir`'s config, for an error message."""
    previous = recorded_config(run_dir)
    if previous is None:
        return "its config.yaml cannot be read"
    previous, config = _essence(previous), _essence(config)
    keys = sorted(k for k in set(previous) | set(config) if previous.get(k) != config.get(k))
    return "its config differs in " + ", ".join(keys[:6]) + (", ..." if len(keys) > 6 else "")


def _status(run_dir: Path) -> str:
    try:
        summary = read_json(Path(run_dir) / "summary.json")
        return f"status {summary['status']}"
    except (OSError, ValueError, TypeError, KeyError):
        return "unfinished"


@dataclass
class Claim:
    """What this process may do in the run directory it locked."""

    run_dir: Path
    lock: DirLock
    action: str  # "new": start a run; "continue": the same run, unfinished; "done": finished ok
    note: str | None = None  # said on the console: where and why a run went beside another


def claim_run_dir(run_dir: Path, config: dict, resume: bool, in_sweep: bool) -> Claim:
    """Lock the directory this run will use and decide what happens there (rules 2 and 3).

    In a sweep, `run_dir` is the point's numbered directory; a resumed sweep first looks for a
    sibling that holds this config (a grid whose points moved), and a point whose directory holds
    another run goes beside it. A single run never moves: it is refused instead."""
    run_dir = Path(run_dir)
    if in_sweep and resume and not same_run(run_dir, config):
        sibling = next((d for d in sorted(run_dir.parent.iterdir()) if d.is_dir() and same_run(d, config)), None)
        if sibling is not None:
            _remove_if_empty(run_dir)  # made by Hydra for this point, which lives in its sibling
            run_dir = sibling
    lock = DirLock.acquire(run_dir, "choose another hydra.sweep.dir" if in_sweep else "choose another hydra.run.dir")
    if not holds_records(run_dir):
        return Claim(run_dir, lock, "new")
    if resume and finished_ok(run_dir, config):
        return Claim(run_dir, lock, "done")
    if resume and same_run(run_dir, config):
        return Claim(run_dir, lock, "continue")
    if resume and recorded_config(run_dir) is None:
        return Claim(run_dir, lock, "new")  # damaged records cannot be vouched for: start over
    why = f"{run_dir} already holds a run ({_status(run_dir)}; {differing_keys(run_dir, config)})" if resume \
        else f"{run_dir} already holds a run ({_status(run_dir)})"
    if in_sweep:
        lock.release()
        beside = Path(unique_dir(str(run_dir)))
        return Claim(beside, DirLock.acquire(beside, "choose another hydra.sweep.dir"), "new",
                     note=f"{why}: this run goes beside it, into {beside.name}")
    lock.release()
    hint = "" if resume else "pass resume=true to continue it with the same config, "
    raise ConfigError(f"{why}; its records are never replaced: {hint}choose another hydra.run.dir, or move it "
                      f"aside with: mv {run_dir} {run_dir}.old")


def _remove_if_empty(directory: Path) -> None:
    try:
        directory.rmdir()
    except OSError:
        pass


def sweep_runs(sweep_dir: Path) -> int:
    """How many runs a sweep directory already holds."""
    return sum(1 for d in Path(sweep_dir).iterdir() if d.is_dir() and holds_records(d)) if Path(sweep_dir).is_dir() else 0


class SweepGuard(Callback):
    """The Hydra callback that holds a sweep directory for its sweep (rules 2 and 3): locked
    while the sweep runs; one that already holds runs is continued only with resume=true."""

    def __init__(self) -> None:
        self.lock: DirLock | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:  # Hydra turns a callback's exception into a warning: say it and exit here
            self.lock = DirLock.acquire(sweep_dir, "choose another hydra.sweep.dir")
            held = sweep_runs(sweep_dir)
            if held and OmegaConf.select(config, "resume") is not True:
                self.lock.release()
                raise ConfigError(f"{sweep_dir} already holds a sweep ({held} runs); add resume=true to continue "
                                  f"or extend it (finished runs are kept), or choose another hydra.sweep.dir")
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        except OSError as err:
            print(f"error: cannot use the sweep directory {sweep_dir}: {err.strerror or err}; choose a writable "
                  f"hydra.sweep.dir", file=sys.stderr)
            raise SystemExit(2) from None

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.lock is not None:
            self.lock.release()
