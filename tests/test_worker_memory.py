"""A worker's peak memory is its own (mpbench/worker_memory.py): a launcher holding a large
allocation spawns a small worker, and the worker's recorded peak stays small."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli import REPO

MIB = 1 << 20
HELD_MIB = 1024

# The launcher (run.py as a user starts it) first holds HELD_MIB of written memory, then runs a smoke run.
LAUNCHER = f"""
import runpy, sys, torch
held = torch.ones({HELD_MIB} * {MIB} // 4)  # every page written: resident in the launcher
sys.argv = ["run.py", *sys.argv[1:]]
sys.path.insert(0, {str(REPO)!r})  # as `python run.py` puts its own folder first
try:
    runpy.run_path({str(REPO / "run.py")!r}, run_name="__main__")
finally:
    resident = [l for l in open("/proc/self/status") if l.startswith("VmRSS:")][0].split()[1]
    print("launcher_resident_kib", resident, held.sum().item() > 0)
"""


@pytest.mark.slow  # a 1 GiB launcher and a run: ~25 s
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="Linux /proc: the launcher's size is read there")
def test_a_small_worker_of_a_large_launcher_records_its_own_peak(tmp_path):
    run_dir = tmp_path / "run"
    done = subprocess.run([sys.executable, "-c", LAUNCHER, "experiment=smoke", "gpus=1",
                           f"hydra.run.dir={run_dir}"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    launcher_kib = int(done.stdout.split("launcher_resident_kib")[1].split()[0])
    assert launcher_kib * 1024 > HELD_MIB * MIB  # the premise: the launcher is large
    summary = json.loads((run_dir / "summary.json").read_text())
    peak, baseline = summary["peak_memory_bytes_per_worker"][0], summary["baseline_memory_bytes_per_worker"][0]
    assert "VmHWM" in summary["memory_measure"]
    # The worker (interpreter, torch, a 2-layer GPT) holds a few hundred MiB, not the launcher's GiB.
    assert 0 < baseline <= peak < HELD_MIB * MIB // 2, (baseline, peak)
    assert peak - baseline < 128 * MIB, (baseline, peak)
