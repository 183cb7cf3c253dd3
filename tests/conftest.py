"""Shared test fixtures.

Real datasets live outside the repo (only tiny-shakespeare is shipped). Tests read them from
$MPBENCH_DATA_DIR, the variable a run reads too (data_dir: null), else from `../shared/datasets`
beside the checkout.
"""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def datasets_dir(environ=os.environ) -> Path:
    """Where the tests find the datasets: $MPBENCH_DATA_DIR, else ../shared/datasets. (The tests'
    own variable of before, MPBENCH_TEST_DATA_DIR, still counts when MPBENCH_DATA_DIR is unset.)"""
    for name in ("MPBENCH_DATA_DIR", "MPBENCH_TEST_DATA_DIR"):
        if environ.get(name):
            return Path(environ[name])
    return REPO.parent / "shared" / "datasets"


SHARED_DATASETS = datasets_dir()
# Measured runs get no simulated twin in tests (experiments/config.yaml: simulator.alongside) unless a
# test asks for one: profiling each oversubscribed test run would double the suite's time.
os.environ.setdefault("MPBENCH_SIMULATE_ALONGSIDE", "never")
# Nor a timing run of the reference beside each measured point (experiments/config.yaml: report.retime_steps)
# unless a test asks for one: it would add a run to every point of every test sweep.
os.environ.setdefault("MPBENCH_RETIME_STEPS", "0")


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    if not SHARED_DATASETS.is_dir():
        pytest.fail(f"test datasets not found at {SHARED_DATASETS}; set MPBENCH_DATA_DIR")
    return SHARED_DATASETS
