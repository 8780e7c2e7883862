#!/usr/bin/env bash
# Set up (idempotent) and run the lint and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MUJOCO_GL="${MUJOCO_GL:-osmesa}" PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-osmesa}"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/pytest --durations=10 "$@"
