"""Our `datasets/` folder must never shadow Hugging Face `datasets` (architecture.md §Layout), and the CLI
answers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECK = (
    "import datasets, sys; assert hasattr(datasets, 'load_dataset'), datasets.__file__; "
    "print(datasets.__file__)"
)


@pytest.mark.parametrize(
    "argv",
    [
        [sys.executable, "-c", CHECK],  # sys.path[0] == "" (the repository root)
        [sys.executable, "-c", f"import runpy, sys; sys.path.insert(0, {str(ROOT)!r}); exec({CHECK!r})"],
    ],
    ids=["python-c", "root-on-path"],
)
def test_hf_datasets_not_shadowed_from_repo_root(argv):
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "site-packages" in out.stdout


def test_hf_datasets_not_shadowed_with_python_m(tmp_path):
    module = tmp_path / "probe_mod.py"
    module.write_text(CHECK)
    out = subprocess.run(
        [sys.executable, "-m", "probe_mod"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    assert "site-packages" in out.stdout


def test_hf_datasets_not_shadowed_inside_pytest():
    import datasets

    assert hasattr(datasets, "load_dataset"), datasets.__file__
    assert "site-packages" in datasets.__file__


def test_lerobot_imports_hf_datasets_from_repo_root():
    code = "import lerobot.datasets.lerobot_dataset as m, datasets; print(datasets.__file__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "site-packages" in out.stdout


def test_our_datasets_package_is_visuomotor_datasets():
    import visuomotor.datasets as ours

    assert Path(ours.__file__).resolve() == ROOT / "datasets" / "__init__.py"
    assert hasattr(ours, "EpisodeStore")


def test_cli_help_lists_subcommands():
    out = subprocess.run(
        [sys.executable, "-m", "visuomotor.cli", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    for name in ("dataset", "bench", "demo"):
        assert name in out.stdout


@pytest.mark.parametrize("sub", [["dataset", "info"], ["bench"], ["demo"]])
def test_every_subcommand_has_help(sub):
    out = subprocess.run(
        [sys.executable, "-m", "visuomotor.cli", *sub, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout
