"""How faithful a round trip through another format is: a store against its copy after, e.g., export to a
LeRobot dataset (images become AV1 video) and conversion back. Low-dimensional arrays must come back
bit-identical; images come back within the video codec's error, reported as PSNR (BENCHMARKS.md, Peers).

    visuomotor dataset convert data/demos.zarr out/demos_lerobot --to lerobot --repo-id local/demos
    visuomotor dataset convert out/demos_lerobot out/demos_back.zarr
    python experiments/roundtrip_fidelity.py data/demos.zarr out/demos_back.zarr
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from visuomotor.datasets import EpisodeStore
from visuomotor.datasets.store import is_image_key
from visuomotor.policies.pad.pictures import psnr


def fidelity(original: EpisodeStore, copy: EpisodeStore) -> dict[str, dict[str, float | bool]]:
    """Per key of the original: low-dim `identical`; images the PSNR over all frames and its worst
    episode."""
    if original.num_episodes != copy.num_episodes or original.num_frames != copy.num_frames:
        raise SystemExit(
            f"{copy.path} has {copy.num_episodes} episodes / {copy.num_frames} frames, "
            f"{original.path} {original.num_episodes} / {original.num_frames}"
        )
    report: dict[str, dict[str, float | bool]] = {}
    for key in original.keys:
        if key not in copy.keys:
            raise SystemExit(f"{copy.path} has no '{key}' (it has {copy.keys})")
        a, b = original.load(key), copy.load(key)
        if not is_image_key(key):
            report[key] = {"identical": bool(a.dtype == b.dtype and np.array_equal(a, b))}
            continue
        per_episode = [
            psnr(a[s:e], b[s:e]) for s, e in zip(original.episode_starts, original.episode_ends, strict=True)
        ]
        report[key] = {"psnr_db": round(psnr(a, b), 2), "worst_episode_psnr_db": round(min(per_episode), 2)}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("original")
    parser.add_argument("copy")
    args = parser.parse_args()
    report = fidelity(EpisodeStore.open(args.original), EpisodeStore.open(args.copy))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
