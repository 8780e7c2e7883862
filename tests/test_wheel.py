"""What a user installs: a wheel built from this tree, installed into a fresh virtual environment outside
the repository, trains and evaluates on its own.

The editable install the other tests run against resolves modules from the source folders, so a module
left out of the wheel would pass them all. Here only the heavy third-party dependencies come from the
project's environment (one `.pth` line naming its site-packages); every `visuomotor` module must come from
the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "runs", "data", "out", ".ruff_cache"
)

# Run inside the installed environment: imports every registry entry and reports where each module
# came from.
PROBE = """
import importlib, json, sys
import visuomotor
from visuomotor.cli import COMMANDS
from visuomotor.commands.bench import BENCHMARKS
from visuomotor.eval.policies import REFERENCE_POLICIES
from visuomotor.policies import REGISTRY
from visuomotor.sim.registry import REGISTRY as ENVS, get_spec

for module_name, _ in COMMANDS.values():
    importlib.import_module(module_name)
for module_name in BENCHMARKS.values():
    importlib.import_module(module_name)
for entry in REGISTRY.values():
    entry.load()
for env_id in ENVS:
    get_spec(env_id)
importlib.import_module("visuomotor.sim.metaworld_env")
importlib.import_module("visuomotor.sim.robosuite_env")
files = {n: m.__file__ for n, m in sys.modules.items() if n.startswith("visuomotor") and m.__file__}
print(json.dumps({"policies": sorted(REGISTRY), "references": sorted(REFERENCE_POLICIES), "files": files}))
"""


def _build_wheel(tmp: Path) -> Path:
    """The wheel, built (without build isolation: no network) from a copy of the tree."""
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=SKIP)
    code = "from setuptools import build_meta; print(build_meta.build_wheel('dist'))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=source, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return source / "dist" / out.stdout.strip().splitlines()[-1]


def _fresh_venv(tmp: Path, wheel: Path) -> Path:
    """A new venv with the wheel installed and the project's third-party packages visible."""
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # A plain path line: the project's site-packages joins sys.path after the venv's own, and its
    # .pth files (the editable install's finder among them) are not run.
    Path(purelib, "project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", str(wheel)]
    out = subprocess.run(install, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return venv


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    return _fresh_venv(tmp, _build_wheel(tmp))


def _run(venv: Path, argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_wheel_holds_every_module_and_the_type_marker(installed):
    wheel = next((installed.parent / "source" / "dist").glob("*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    folders = {"core": "visuomotor", "datasets": "visuomotor/datasets", "eval": "visuomotor/eval"}
    folders |= {"policies": "visuomotor/policies", "real_robot": "visuomotor/real_robot"}
    folders |= {"sim": "visuomotor/sim"}
    expected = {
        f"{target}/{path.relative_to(ROOT / folder).as_posix()}"
        for folder, target in folders.items()
        for path in (ROOT / folder).rglob("*.py")
    }
    assert expected - names == set(), "modules missing from the wheel"
    assert "visuomotor/py.typed" in names


def test_installed_package_imports_every_registry_entry_from_the_wheel(installed, tmp_path):
    out = _run(installed, [str(installed / "bin" / "python"), "-c", PROBE], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["policies"] == ["carp", "diffusion", "expo", "pad"] and "scripted" in report["references"]
    outside = {name: f for name, f in report["files"].items() if not f.startswith(str(installed))}
    assert outside == {}, "visuomotor modules imported from outside the installed wheel"


def test_installed_cli_collects_trains_and_evaluates(installed, tmp_path):
    cli = str(installed / "bin" / "visuomotor")
    out = _run(installed, [cli, "--help"], tmp_path)
    assert out.returncode == 0 and "train" in out.stdout, out.stderr[-3000:]

    env, store, run = "metaworld/reach-v3", tmp_path / "s.zarr", tmp_path / "run"
    collect = ["collect", "--env", env, "--episodes", "1", "--out", str(store), "--workers", "1"]
    train = ["train", "--policy", "carp", "--data", str(store), "--out", str(run), "--steps", "4"]
    train += ["--no-progress", "--cameras", "none", "-o", "state_keys=observation.environment_state"]
    train += ["-o", "tokenizer_steps=2"]
    evaluate = ["eval", "--checkpoint", str(run), "--env", env, "--episodes", "1", "--max-steps", "10"]
    evaluate += ["--workers", "1", "--json", str(tmp_path / "eval.json")]
    steps = [[cli, *collect], [cli, *train], [cli, *evaluate]]
    for argv in steps:
        out = _run(installed, argv, tmp_path)
        assert out.returncode == 0, f"{argv[1]}: {out.stderr[-3000:]}"
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["episodes"] == 1 and report["mean_inference_ms"] > 0
