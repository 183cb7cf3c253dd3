"""The workers' host allocator keeps freed memory (mpbench/host_memory.py): a freed block stays
resident for the next step instead of faulting its pages in again."""

import subprocess
import sys

import pytest

from mpbench.host_memory import host_allocator_policy

PROGRAM = """
import resource, sys
from mpbench.host_memory import keep_freed_host_memory
if sys.argv[1] == "keep":
    assert keep_freed_host_memory()
def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()
before = resident()
block = bytearray(24 << 20)  # 24 MiB, written (zeroed): every page resident
del block
print((resident() - before) >> 20)
"""


def resident_growth_mib(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


@pytest.mark.skipif(not host_allocator_policy().startswith("glibc"), reason="the policy is glibc's")
def test_freed_memory_stays_resident_only_when_kept():
    assert resident_growth_mib("default") < 4  # glibc hands the freed block back
    assert resident_growth_mib("keep") >= 20  # kept for reuse
