"""What every case of the fault catalogues checks: the project's promise, from the outside.

A case runs a command (run.py, torchrun, analysis.report) in its own session, as a user or a
cluster would, and then checks the promise: the exit status; on an error, exactly one
`error:` line naming the key or file; no traceback; the records that existed before are
byte-identical; and no process of the case is left alive.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.cli import REPO


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def session_alive(session: int) -> list[int]:
    """Processes still running in session `session` (the case's own, started with setsid)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


def run_case(command: list[str], cwd: Path, env: dict | None = None, timeout: float = 300,
             preexec=None) -> Outcome:
    """Run `command` in a new session; afterwards no process of that session may be alive."""
    process = subprocess.Popen(command, cwd=cwd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=preexec is None,
                               preexec_fn=preexec)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    deadline = time.time() + 10
    while session_alive(process.pid) and time.time() < deadline:
        time.sleep(0.1)
    left = session_alive(process.pid)
    if left:
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left alive after {command}: {left}"
    return Outcome(process.returncode, stdout, stderr)


def run_py(args: list[str], cwd: Path, **kwargs) -> Outcome:
    return run_case([sys.executable, str(REPO / "run.py"), *args], cwd, **kwargs)


def with_file_size_limit(limit_bytes: int):
    """A preexec function: no file this process (and its workers) writes may exceed the limit,
    the way a full disk stops a write (RLIMIT_FSIZE; writes then fail with EFBIG, since
    SIGXFSZ is ignored). Needs no root, unlike mounting a small tmpfs."""
    import resource

    def limit() -> None:
        os.setsid()
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return limit


def snapshot(directory: Path) -> dict[str, str]:
    """Every file under `directory` and the SHA-256 of its bytes."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(directory).rglob("*")) if p.is_file()}


def assert_one_error(outcome: Outcome, named: str, code: int = 2) -> None:
    """The promise for bad input: exit `code`, one `error:` line naming `named`, no traceback."""
    assert outcome.returncode == code, (outcome.returncode, outcome.stderr[-2000:])
    assert "Traceback" not in outcome.stdout + outcome.stderr, outcome.stderr[-3000:]
    lines = outcome.error_lines
    assert len(lines) == 1 and lines[0].startswith("error: "), outcome.stderr[-2000:]
    assert named in lines[0], lines[0]
