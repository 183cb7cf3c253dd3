PY ?= .venv/bin/python

.PHONY: env test bench sweep

env:  ## create the environment from the lock file
	test -x $(PY) || python3 -m venv .venv
	.venv/bin/pip install -q -r requirements.lock

test: env
	$(PY) -m pytest

bench: env  ## speed benchmarks: each prints ratios measured side by side in one run
	$(PY) -m benchmarks.trainer_overhead
	$(PY) -m benchmarks.pipeline_speedup

sweep: env  ## the main job
	$(PY) run.py -m experiment=default_sweep
