"""Shared test fixtures.

Real datasets live outside the repo (only tiny-shakespeare is shipped). Tests read them from
`../shared/datasets` beside the checkout, or from MPBENCH_TEST_DATA_DIR when set.
"""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = Path(os.environ.get("MPBENCH_TEST_DATA_DIR", REPO.parent / "shared" / "datasets"))
# Measured runs get no simulated twin in tests (experiments/config.yaml: simulator.alongside) unless a
# test asks for one: profiling each oversubscribed test run would double the suite's time.
os.environ.setdefault("MPBENCH_SIMULATE_ALONGSIDE", "never")


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    if not SHARED_DATASETS.is_dir():
        pytest.fail(f"test datasets not found at {SHARED_DATASETS}; set MPBENCH_TEST_DATA_DIR")
    return SHARED_DATASETS
