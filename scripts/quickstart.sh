#!/usr/bin/env bash
# Set up (idempotent) and run the end-to-end quickstart: `visuomotor demo` on its small default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MUJOCO_GL="${MUJOCO_GL:-osmesa}" PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-osmesa}"
.venv/bin/visuomotor demo "$@"
