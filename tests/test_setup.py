"""scripts/setup.sh on a machine without a usable Python 3.12: one clear message, nothing installed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ("bash", "dpkg-query", "grep", "id", "sort", "ldconfig", "dirname")


def _bare_path(tmp_path: Path) -> Path:
    """A PATH with the shell tools setup needs and no Python, pyenv or uv on it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    return bin_dir


def test_setup_without_python_312_says_what_to_install_and_installs_nothing(tmp_path):
    bin_dir = _bare_path(tmp_path)
    not_312 = tmp_path / "python3.11"
    not_312.write_text("#!/bin/sh\nexit 1\n")  # any interpreter that is not 3.12 fails setup's probe
    not_312.chmod(0o755)
    venv_before = sorted(os.listdir(ROOT / ".venv")) if (ROOT / ".venv").exists() else None
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "VISUOMOTOR_PYTHON": str(not_312)}
    out = subprocess.run(
        [str(bin_dir / "bash"), str(ROOT / "scripts" / "setup.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"VISUOMOTOR_PYTHON={not_312} is not a Python 3.12" in out.stderr
    assert "visuomotor needs Python 3.12 and none was found" in out.stderr
    assert "apt-get install python3.12" in out.stderr and "pyenv install 3.12" in out.stderr
    assert "installing uv" not in out.stdout  # it stopped before installing anything
    venv_after = sorted(os.listdir(ROOT / ".venv")) if (ROOT / ".venv").exists() else None
    assert venv_after == venv_before
