"""Episode store, sequence sampler, normalisation statistics and converters (`visuomotor.datasets`).

This folder sits at the repository root, so when Python runs from the root (`python -c`, `python -m`,
pytest's rootdir insertion) the root is on `sys.path` and a plain `import datasets` would find this
folder instead of Hugging Face `datasets`, which LeRobot needs. The guard below hands such an import over
to the real package (architecture.md §Layout); `tests/test_packaging.py` keeps it honest.
"""

from __future__ import annotations

if __name__ == "datasets":  # imported under the wrong name, from the repository root
    import importlib as _importlib
    import os as _os
    import sys as _sys

    _root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))

    def _not_root(entry: str) -> bool:
        return _os.path.abspath(entry or _os.curdir) != _root

    del _sys.modules["datasets"]
    _saved_path = list(_sys.path)
    _sys.path[:] = [p for p in _sys.path if _not_root(p)]
    try:
        # Python's import machinery returns sys.modules[name] after this module body runs,
        # so the caller receives Hugging Face `datasets`, not this file.
        _sys.modules["datasets"] = _importlib.import_module("datasets")
    finally:
        _sys.path[:] = _saved_path
else:
    from visuomotor.datasets.sampler import SequenceSampler, WindowSpec, split_episodes
    from visuomotor.datasets.store import EpisodeStore, StoreError, is_image_key

    __all__ = [
        "EpisodeStore",
        "SequenceSampler",
        "StoreError",
        "WindowSpec",
        "is_image_key",
        "split_episodes",
    ]
