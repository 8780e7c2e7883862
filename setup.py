"""Maps the fixed top-level folders onto one import name, `visuomotor`, and finds every subpackage in
them, so a new subpackage cannot be left out of the wheel (docs/architecture.md §Layout).

Everything else about the package is in pyproject.toml."""

from setuptools import find_packages, setup

FOLDERS = {
    "visuomotor": "core",
    "visuomotor.datasets": "datasets",
    "visuomotor.eval": "eval",
    "visuomotor.policies": "policies",
    "visuomotor.real_robot": "real_robot",
    "visuomotor.sim": "sim",
}

packages = []
for name, folder in FOLDERS.items():
    packages += [name, *(f"{name}.{sub}" for sub in find_packages(folder))]

setup(package_dir=FOLDERS, packages=packages)
