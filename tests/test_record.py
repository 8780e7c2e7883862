"""Episodes on a real arm, without one: keys that start, end, re-record and stop episodes, `visuomotor
record` from a LeRobot teleoperator (stand-in leader and follower arms), the stop that holds the arm
before disconnecting, and a watchdog that stays suspicious across episodes."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import lerobot_standin
import numpy as np
import pytest
from test_deploy import INPUTS, LIMITS, StandInRobot

from visuomotor.cli import main
from visuomotor.datasets import EpisodeStore
from visuomotor.real_robot import make_robot
from visuomotor.real_robot.controls import NEXT, RERECORD, STOP, Controls, decode_keys, keyboard
from visuomotor.real_robot.robot import FeatureMap
from visuomotor.real_robot.runtime import (
    DeployConfig,
    PolicySource,
    PolicyWorker,
    Watchdog,
    hold_and_disconnect,
    run_episode,
    run_episodes,
)
from visuomotor.real_robot.safety import SafetyLayer
from visuomotor.real_robot.teleop import TeleopSource, check_teleop, make_teleop

MOTORS = [f"{m}.pos" for m in lerobot_standin.MOTORS]


def safety_file(tmp_path, max_step: float = 100.0) -> str:
    path = tmp_path / "safety.json"
    doc = {"low": dict.fromkeys(MOTORS, -180.0), "high": dict.fromkeys(MOTORS, 180.0)}
    path.write_text(json.dumps(doc | {"max_step": dict.fromkeys(MOTORS, max_step)}))
    return str(path)


def test_keys_decode_into_episode_events_and_drive_the_controls():
    assert decode_keys("\r \x1b[Cr\x1b[Dq\x1bx") == [NEXT, NEXT, NEXT, RERECORD, RERECORD, STOP, STOP]
    controls = Controls()
    controls.press(NEXT)
    assert controls.wait_start() and not controls.episode_should_end()
    controls.press(RERECORD)
    assert controls.episode_should_end() and controls.take_rerecord()
    assert not controls.episode_should_end() and not controls.take_rerecord()
    controls.press(STOP)
    assert controls.episode_should_end() and not controls.wait_start() and not controls.take_rerecord()


def test_keys_are_read_from_a_terminal_one_at_a_time():
    master, slave = os.openpty()
    controls = Controls()
    with open(slave, "rb", buffering=0) as terminal, keyboard(controls, terminal) as keys:
        assert keys
        os.write(master, b"r")  # no Enter needed: cbreak mode
        for _ in range(100):
            if controls.episode_should_end():
                break
            time.sleep(0.02)
        assert controls.take_rerecord()
    os.close(master)
    with keyboard(controls, open(os.devnull)) as keys:  # not a terminal: no keys
        assert not keys


class KeyedRobot(StandInRobot):
    """Presses a key when it has been sent its n-th action, as an operator would."""

    def __init__(self, controls: Controls, schedule: dict[int, str]) -> None:
        super().__init__()
        self.controls, self.schedule = controls, schedule

    def send_action(self, action: dict[str, float]) -> dict[str, float]:
        sent = super().send_action(action)
        if len(self.sent) in self.schedule:
            self.controls.press(self.schedule[len(self.sent)])
        return sent


class CountingSource:
    """Teleoperator-like: plans 0.01 x the tick, and counts how often it was asked."""

    def __init__(self) -> None:
        self.asked = 0

    def begin(self) -> None:
        pass

    def planned(self, tick: int, frame: dict[str, np.ndarray], stale: bool) -> np.ndarray:
        self.asked += 1
        return np.array([0.01 * tick, 0.5])

    def end(self) -> None:
        pass


def test_start_end_rerecord_and_stop_keys_shape_the_recorded_episodes():
    controls = Controls()
    # Sent actions 1-3 between episodes, then episode 1 (4-8) re-recorded, 9-10 between, episode 1
    # again (11-15), 16-17 between, episode 2 stopped at 20: kept as it is.
    schedule = {3: NEXT, 8: RERECORD, 10: NEXT, 15: NEXT, 17: NEXT, 20: STOP}
    robot = KeyedRobot(controls, schedule)
    robot.connect()
    fmap, kept = FeatureMap.match(robot, INPUTS), []
    between, source = CountingSource(), CountingSource()
    n = run_episodes(
        robot, fmap, source, SafetyLayer(LIMITS), DeployConfig(fps=500, max_ticks=50), controls, 5,
        keys=True, between=between, keep=lambda i, log: kept.append((i, len(log.actions))),
    )  # fmt: skip
    assert n == 2 and kept == [(0, 5), (1, 3)]
    assert between.asked == 3 + 2 + 2 and source.asked == 5 + 5 + 3 and len(robot.sent) == 20


def test_record_from_a_lerobot_teleoperator_into_a_store(tmp_path, capsys):
    out = tmp_path / "demos.zarr"
    args = ["record", "--robot", "lerobot:standin_follower", "--teleop", "lerobot:standin_leader"]
    args += ["--out", str(out), "--task", "stack the cube", "--fps", "200", "--safety", safety_file(tmp_path)]
    # Not a terminal here: no keys, so episodes follow each other and need a step limit.
    assert main([*args, "--episodes", "2"]) == 2
    assert "without a terminal" in capsys.readouterr().err and not out.exists()
    assert main([*args, "--episodes", "2", "--max-steps", "6"]) == 0
    store = EpisodeStore.open(out)
    assert store.num_episodes == 2 and store.tasks == ["stack the cube"]
    episode = store.episode(1)
    assert episode["observation.state"].shape == (6, 6) and episode["observation.images.front"].shape == (
        6,
        8,
        8,
        3,
    )
    # The leader's reads 7..12 of the second episode (10 + 0.5 per read), sent as they came.
    assert np.allclose(episode["action"][:, 0], 10.0 + 0.5 * np.arange(7, 13))
    assert (
        store.attrs["action_space"]["names"] == MOTORS and store.attrs["robot"] == "lerobot:standin_follower"
    )
    assert store.attrs["cameras"] == ["front"]
    # Appending to the same store goes on from there.
    assert main([*args, "--episodes", "1", "--max-steps", "4"]) == 0
    assert EpisodeStore.open(out).num_episodes == 3


def test_a_teleoperator_that_does_not_fit_the_robot_is_refused_before_anything_moves(tmp_path, capsys):
    teleop = make_teleop("lerobot:standin_leader")
    robot = StandInRobot()
    with pytest.raises(ValueError, match=r"missing \['gripper', 'x.vel'\], unexpected \['elbow_flex.pos'"):
        check_teleop(teleop, robot)
    with pytest.raises(ValueError, match="unknown LeRobot teleoperator type 'nope'"):
        make_teleop("lerobot:nope")
    with pytest.raises(ValueError, match="use lerobot:<type>"):
        make_teleop("keyboard")
    args = ["record", "--robot", "sim:metaworld/reach-v3", "--teleop", "lerobot:standin_leader"]
    assert main([*args, "--out", str(tmp_path / "x.zarr"), "--max-steps", "3"]) == 2
    assert "teleoperator lerobot:standin_leader gives actions" in capsys.readouterr().err


def test_a_crash_while_recording_keeps_the_finished_episodes_and_leaves_the_arm_held(tmp_path):
    from visuomotor.real_robot.recording import append_episode
    from visuomotor.real_robot.safety import SafetyLimits

    robot = make_robot("lerobot:standin_follower")
    teleop = make_teleop("lerobot:standin_leader")
    robot.connect()
    teleop.connect()
    fmap = FeatureMap.of_robot(robot)
    limits = SafetyLimits.from_file(safety_file(tmp_path, max_step=0.2), tuple(MOTORS))
    cfg, out = DeployConfig(fps=500, max_ticks=4, n_obs_steps=1), tmp_path / "demos.zarr"
    follower = robot.robot

    def keep(index: int, log: Any) -> None:
        append_episode(out, robot, log, limits, "t", 500, {})
        follower.get_observation = lambda: 1 / 0  # the arm's bus fails in the next episode

    with pytest.raises(ZeroDivisionError):
        try:
            run_episodes(
                robot, fmap, TeleopSource(teleop, fmap), SafetyLayer(limits), cfg, Controls(), 3,
                keys=False, keep=keep,
            )  # fmt: skip
        finally:
            del follower.get_observation  # the bus recovers: the stop can read where the arm is
            hold_and_disconnect(robot, dry_run=False)
    assert EpisodeStore.open(out).num_episodes == 1
    assert follower.sent[-1] == follower.positions and not robot.is_connected  # held, then disconnected
    # The leader ran ahead (10.5, 11, ...); each command moved max_step (0.2) from the last.
    assert np.allclose([a["gripper.pos"] for a in follower.sent[:4]], [10.2, 10.4, 10.6, 10.8])
    assert np.allclose(EpisodeStore.open(out).episode(0)["action"][:, 5], [10.2, 10.4, 10.6, 10.8])


def test_a_camera_frozen_across_an_episode_start_stays_stale(tmp_path):
    robot = StandInRobot(freeze_after=3)
    robot.connect()
    fmap, cfg = FeatureMap.match(robot, INPUTS), DeployConfig(fps=500, max_ticks=10)
    source, watchdog = PolicySource(PolicyWorker(lambda w, t: np.zeros((8, 2))), cfg), Watchdog(cfg)
    run_episode(robot, fmap, source, SafetyLayer(LIMITS), cfg, lambda: False, watchdog)
    second = run_episode(robot, fmap, source, SafetyLayer(LIMITS), cfg, lambda: False, watchdog)
    assert all(bits & 1 for bits in second.safety)  # held from its first tick on
