PY ?= .venv/bin/python

.PHONY: env test test-fast doc-commands bench simulator-accuracy convergence reproduce sweep docs

env:  ## create the environment from the lock file
	test -x $(PY) || python3 -m venv .venv
	.venv/bin/pip install -q -r requirements.lock

test: env  ## every test (what CI runs)
	$(PY) -m pytest

test-fast: env  ## the development loop: everything not marked slow
	$(PY) -m pytest -m "not slow"

doc-commands: env  ## every command of the README's and docs' command blocks, at tiny scale (after editing a doc)
	$(PY) -m pytest tests/test_readme_commands.py -n 0 -rs

bench: env  ## speed benchmarks: each prints ratios measured side by side in one run
	$(PY) -m benchmarks.trainer_overhead
	$(PY) -m benchmarks.pipeline_speedup
	$(PY) -m benchmarks.stale_gradient_speedup
	$(PY) -m benchmarks.descendants_speedup
	$(PY) -m benchmarks.local_critic_speedup
	$(PY) -m benchmarks.simulator_speed

simulator-accuracy: env  ## measured vs simulated step time, every family, 1 and 2 workers (about 30 minutes)
	$(PY) -m benchmarks.simulator_accuracy --rounds 2

convergence: env  ## eval loss of ouroboros K=2..5 vs backprop after the same steps (emulated)
	$(PY) -m benchmarks.stale_convergence

reproduce: env  ## every paper table at quick scale: results/paper/ and docs/REPRODUCTION.md (python -m analysis.paper --list)
	MPBENCH_DATA_DIR=$${MPBENCH_DATA_DIR:-../shared/datasets} $(PY) -m analysis.paper --all --scale quick

sweep: env  ## the main job
	$(PY) run.py -m experiment=default_sweep

docs: env  ## regenerate docs/configuration.md from the settings classes
	$(PY) -c "import algorithms, models, mpbench.config_docs as d; d.write()"
