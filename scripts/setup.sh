#!/usr/bin/env bash
# One-time, idempotent set-up of a fresh machine: system libraries for offscreen MuJoCo rendering,
# uv, and the locked Python environment in .venv. Safe to run again; it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages: OSMesa / Mesa EGL for headless rendering (DESIGN §6).
SYSTEM_PACKAGES=(libosmesa6 libgl1-mesa-dri libegl-mesa0 libegl1 libglfw3)
missing=()
for pkg in "${SYSTEM_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing system packages: ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# uv resolves and installs the locked set in about a minute; pip's resolver does not finish (DESIGN §6).
if ! command -v uv >/dev/null 2>&1; then
    echo "setup: installing uv"
    python3 -m pip install --quiet "uv>=0.5"
fi
uv sync --frozen --extra dev --python python3.11
echo "setup: done (.venv ready; run commands with 'uv run visuomotor ...')"
