#!/usr/bin/env bash
# One-time, idempotent set-up of a fresh machine: system libraries for offscreen MuJoCo rendering,
# uv, and the locked Python 3.12 environment in .venv. Safe to run again; it only installs what is
# missing. Set VISUOMOTOR_PYTHON to choose the interpreter yourself.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
    echo "setup: $*" >&2
    exit 1
}

# System packages: OSMesa / Mesa EGL for headless rendering (docs/architecture.md §Rendering).
SYSTEM_PACKAGES=(libosmesa6 libgl1-mesa-dri libegl-mesa0 libegl1 libglfw3)
missing=()
if command -v dpkg-query >/dev/null 2>&1; then
    for pkg in "${SYSTEM_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
elif ! ldconfig -p 2>/dev/null | grep -q "libOSMesa.so"; then
    fail "no OSMesa found and this is not a Debian/Ubuntu system: install your distribution's OSMesa," \
        "Mesa EGL and GLFW libraries (Debian names: ${SYSTEM_PACKAGES[*]}), then run this again"
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing system packages: ${missing[*]}"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || fail "need root to install ${missing[*]}: run" \
            "'apt-get install ${missing[*]}' as root, then run this again"
        SUDO="sudo"
    fi
    $SUDO apt-get update -qq || fail "apt-get update failed; install ${missing[*]} by hand, then run this again"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" ||
        fail "could not install ${missing[*]}; install them by hand, then run this again"
fi

# Python 3.12: $VISUOMOTOR_PYTHON, python3.12 on PATH, a pyenv-installed 3.12, or one uv already has.
# uv is never asked to download an interpreter (pyproject.toml: python-downloads = "never").
is_312() { [ -n "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; }
find_python() {
    local candidate
    for candidate in "${VISUOMOTOR_PYTHON:-}" "$(command -v python3.12 || true)"; do
        is_312 "$candidate" && { echo "$candidate"; return; }
    done
    if command -v pyenv >/dev/null 2>&1; then
        for version in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.12(\.[0-9]+)?$' | sort -rV); do
            candidate="$(pyenv prefix "$version")/bin/python3.12"
            is_312 "$candidate" && { echo "$candidate"; return; }
        done
    fi
    if command -v uv >/dev/null 2>&1; then
        candidate="$(uv python find --no-python-downloads 3.12 2>/dev/null || true)"
        is_312 "$candidate" && { echo "$candidate"; return; }
    fi
    return 0
}
PYTHON="$(find_python)"
if [ -z "$PYTHON" ]; then
    [ -n "${VISUOMOTOR_PYTHON:-}" ] && echo "setup: VISUOMOTOR_PYTHON=$VISUOMOTOR_PYTHON is not a Python 3.12" >&2
    fail "visuomotor needs Python 3.12 and none was found (looked at VISUOMOTOR_PYTHON, python3.12 on" \
        "PATH, pyenv and uv). Install one: 'apt-get install python3.12 python3.12-venv' (Debian 13," \
        "Ubuntu 24.04), 'pyenv install 3.12', or 'uv python install 3.12'; or point VISUOMOTOR_PYTHON at it."
fi

# uv resolves and installs the locked set in about a minute; pip's resolver does not finish. uv is a
# standalone binary: any Python's pip can install it.
if ! command -v uv >/dev/null 2>&1; then
    echo "setup: installing uv"
    { python3 -m pip install --quiet "uv>=0.5" || "$PYTHON" -m pip install --quiet "uv>=0.5"; } ||
        fail "could not install uv with pip; install uv (https://docs.astral.sh/uv/), then run this again"
    hash -r
fi
UV=(uv)
command -v uv >/dev/null 2>&1 || UV=("$PYTHON" -m uv)
# A .venv of another Python (an older visuomotor used 3.11) is replaced by uv, not patched.
# Bytecode compiled once here: where PYTHONDONTWRITEBYTECODE is set, every process (test workers, eval
# workers, CLI subprocesses) would otherwise recompile torch's and LeRobot's sources on import (~25 s
# of CPU each, measured). Already compiled files are skipped on later runs.
"${UV[@]}" sync --frozen --extra dev --compile-bytecode --python "$PYTHON"
echo "setup: done with $("$PYTHON" --version) (.venv ready; run commands with .venv/bin/visuomotor ...)"
