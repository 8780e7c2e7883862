"""`visuomotor demo`: the quickstart's commands, from the cameras by default and from state on request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from visuomotor.cli import main


@pytest.fixture
def commands(monkeypatch):
    """Every command the demo hands to the CLI, run by a stand-in that writes the evaluation report."""
    seen: list[list[str]] = []

    def stand_in(argv: list[str]) -> int:
        seen.append(argv)
        if argv[0] == "eval":
            path = Path(argv[argv.index("--json") + 1])
            path.parent.mkdir(parents=True, exist_ok=True)
            report = {"success_rate": 0.9, "ci95": [0.7, 0.97], "episodes": 20}
            with open(path, "w") as f:
                json.dump(report, f)
        return 0

    monkeypatch.setattr("visuomotor.cli.main", stand_in)
    return seen


def _flags(argv: list[str], name: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == name]


def test_the_demo_trains_from_both_cameras_and_proprio_by_default(commands, tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d")]) == 0
    collect, info, train, evaluate = commands
    assert [c[0] for c in commands] == ["collect", "dataset", "train", "eval"] and info[1] == "info"
    assert _flags(collect, "--camera") == ["corner2", "gripperPOV"] and _flags(collect, "--camera-pose") == [
        "dp3"
    ]
    # no input flags: the run takes the store's cameras and proprio, never the privileged state
    assert "--cameras" not in train and "-o" not in train and _flags(train, "--steps") == ["1500"]
    assert "--video" in evaluate
    assert "success rate 90%" in capsys.readouterr().out


def test_from_state_trains_on_the_privileged_state(commands, tmp_path):
    assert main(["demo", "--from-state", "--steps", "7", "--out", str(tmp_path / "d")]) == 0
    collect, _, train, _ = commands
    assert "--camera" not in collect
    assert _flags(train, "--cameras") == ["none"] and _flags(train, "-o") == [
        "state_keys=observation.environment_state"
    ]
    assert _flags(train, "--steps") == ["7"]


def test_other_simulators_collect_their_default_camera(commands, tmp_path):
    assert main(["demo", "--env", "robosuite/Lift", "--out", str(tmp_path / "d")]) == 0
    assert "--camera" not in commands[0] and "--camera-pose" not in commands[0]
