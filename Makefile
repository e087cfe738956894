# Every target sets up (or reuses) the virtual environment outside the clone first:
# tools/install/setup_env.sh prints its python.
SHELL := /bin/bash
SETUP := tools/install/setup_env.sh

.PHONY: demo demo-topdown test test-slow bench env setup lint

setup:
	@$(SETUP) >/dev/null

# The main job: generate SynthPeople, train the multitask R-CNN's basic-level recipe with periodic
# evaluation, evaluate on every level, analyse keypoint errors, draw predictions, print a summary.
demo:
	@PY=$$($(SETUP)) && $$PY tools/main_job.py

# The same for the top-down HRNet on ground-truth boxes (output/main_job_topdown).
demo-topdown:
	@PY=$$($(SETUP)) && $$PY tools/main_job.py --pipeline topdown

# The default test suite (10-20 minutes on a 2-core CPU; includes the memorisation checks).
test:
	@PY=$$($(SETUP)) && $$PY -m pytest -m "not slow" tests projects/TopDown/tests

# Slower tests (longer training runs), kept out of the default suite.
test-slow:
	@PY=$$($(SETUP)) && $$PY -m pytest -m slow tests projects/TopDown/tests

# ruff (ruff.toml) on the .py files changed since .ci/lint_base (or LINT_BASE=<commit>), uncommitted
# ones included, in its own small venv, not the torch one (see tools/lint.sh).
lint:
	@tools/lint.sh

bench:
	@PY=$$($(SETUP)) && for b in benchmarks/bench_*.py; do $$PY $$b || exit 1; done

env:
	@PY=$$($(SETUP)) && $$PY -m multitask_pose.env
