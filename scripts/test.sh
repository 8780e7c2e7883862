#!/usr/bin/env bash
# Set up (idempotent) and run the lint and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MUJOCO_GL="${MUJOCO_GL:-osmesa}" PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-osmesa}"
uv run --frozen ruff check .
uv run --frozen ruff format --check .
uv run --frozen pytest --durations=10 "$@"
