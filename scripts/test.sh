#!/usr/bin/env bash
# Set up (idempotent) and run the lint and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MUJOCO_GL="${MUJOCO_GL:-osmesa}" PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-osmesa}"
# Two test processes, one per core, each test file kept in one process (module fixtures are built once);
# one torch thread each, since two processes with two spinning OpenMP threads each on two cores run
# several times slower than one thread each.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/pytest -n 2 --dist loadfile --durations=10 "$@"
