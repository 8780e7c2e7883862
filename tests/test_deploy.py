"""The deploy runtime through a stand-in robot (no hardware, no simulator): scheduling with latency
compensation, the safety layer between every action and the robot, holds on stale data or a late or
failing policy, and feature matching before anything moves."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pytest

from visuomotor.real_robot import make_robot
from visuomotor.real_robot.robot import FeatureMap, PolicyInputs, Robot
from visuomotor.real_robot.runtime import (
    ChunkScheduler,
    DeployConfig,
    PolicySource,
    PolicyWorker,
    run_episode,
)
from visuomotor.real_robot.safety import SafetyLayer, SafetyLimits, Workspace

NAMES = ("x.vel", "gripper")


class StandInRobot(Robot):
    """Two joints' positions as scalar features, one 8x8 camera, two velocity-like actions; it records
    every action it is sent."""

    name = "stand-in"

    def __init__(self, freeze_after: int | None = None) -> None:
        self.connected, self.sent, self.t = False, [], 0
        self.freeze_after = freeze_after

    @property
    def observation_features(self) -> dict[str, Any]:
        return {"shoulder.pos": float, "elbow.pos": float, "front": (8, 8, 3)}

    @property
    def action_features(self) -> dict[str, Any]:
        return dict.fromkeys(NAMES, float)

    @property
    def is_connected(self) -> bool:
        return self.connected

    def connect(self) -> None:
        self.connected = True

    def disconnect(self) -> None:
        self.connected = False

    def get_observation(self) -> dict[str, Any]:
        frame_t = self.t if self.freeze_after is None else min(self.t, self.freeze_after)
        return {
            "shoulder.pos": 0.1 * self.t,
            "elbow.pos": 0.0,
            "front": np.full((8, 8, 3), frame_t % 256, np.uint8),
        }

    def send_action(self, action: dict[str, float]) -> dict[str, float]:
        self.sent.append(dict(action))
        self.t += 1
        return action


INPUTS = PolicyInputs(
    ("observation.state",),
    ("observation.images.front",),
    {"observation.state": [2], "observation.images.front": [8, 8, 3]},
    2,
)
LIMITS = SafetyLimits(NAMES, np.array([-1.0, 0.0]), np.array([1.0, 1.0]), np.array([0.5, 1.0]))


def deploy(
    chunk_fn, robot=None, ticks=20, fps=100.0, **cfg
) -> tuple[StandInRobot, Any, SafetyLayer, PolicyWorker]:
    robot = robot or StandInRobot()
    robot.connect()
    fmap = FeatureMap.match(robot, INPUTS)
    safety, worker = SafetyLayer(LIMITS), PolicyWorker(chunk_fn)
    config = DeployConfig(fps=fps, max_ticks=ticks, **cfg)
    log = run_episode(robot, fmap, PolicySource(worker, config), safety, config, lambda: False)
    return robot, log, safety, worker


def assert_every_command_safe(robot: StandInRobot, log: Any) -> None:
    """Finite, within limits, and (unless it is a hold: stay where you are) within the step bound."""
    previous = np.zeros(2)
    for action, bits in zip(robot.sent, log.safety, strict=True):
        a = np.array([action[n] for n in NAMES])
        assert np.isfinite(a).all() and (a >= LIMITS.low).all() and (a <= LIMITS.high).all()
        if not bits & 1:
            assert (np.abs(a - previous) <= LIMITS.max_step + 1e-12).all()
        previous = a


def test_chunks_are_scheduled_from_their_observation_tick_and_past_actions_dropped():
    s = ChunkScheduler("latest")
    s.add(np.arange(5.0)[:, None], obs_tick=10, now_tick=12)  # computed at 10, arrives at 12
    assert s.dropped == 2 and s.pending(12) == 3
    assert s.pop(12)[0] == 2.0 and s.pop(13)[0] == 3.0
    s.add(np.full((3, 1), 9.0), obs_tick=14, now_tick=14)
    assert s.pop(14)[0] == 9.0 and s.pop(20) is None
    avg = ChunkScheduler("average", decay=0.0)
    avg.add(np.zeros((2, 1)), 0, 0)
    avg.add(np.ones((2, 1)), 1, 1)
    assert avg.pop(0)[0] == 0.0 and avg.pop(1)[0] == pytest.approx(0.5)  # the overlap is blended


def test_the_safety_layer_rejects_clips_and_counts_by_rule():
    layer = SafetyLayer(LIMITS)
    assert layer.check(np.array([np.nan, 0.5]), np.zeros(2), {})[0] is None
    action, fired = layer.check(np.array([3.0, -1.0]), np.zeros(2), {})
    assert action.tolist() == [0.5, 0.0] and fired == ["limits", "max_step"]
    action, fired = layer.check(np.array([0.2, 0.5]), np.zeros(2), {})
    assert action.tolist() == [0.2, 0.5] and fired == []
    assert layer.counts == {"non_finite": 1, "limits": 1, "max_step": 1, "workspace": 0}
    box = SafetyLimits(
        NAMES,
        LIMITS.low,
        LIMITS.high,
        np.array([2.0, 2.0]),
        Workspace(("shoulder.pos",), ("x.vel",), (-1.0,), (1.0,)),
    )
    outside = SafetyLayer(box)
    assert outside.check(np.array([0.5, 0.5]), np.zeros(2), {"shoulder.pos": 1.2})[0].tolist() == [0.0, 0.5]
    assert outside.check(np.array([-0.5, 0.5]), np.zeros(2), {"shoulder.pos": 1.2})[0].tolist() == [-0.5, 0.5]


def test_a_safety_file_with_impossible_limits_is_refused(tmp_path):
    path = tmp_path / "safety.json"
    path.write_text(json.dumps({"low": {"x.vel": 1, "gripper": 0}, "high": {"x.vel": -1, "gripper": 1}}))
    with pytest.raises(ValueError, match=r"safety file .*low must be <= high.*x\.vel"):
        SafetyLimits.from_file(path, NAMES)
    path.write_text(json.dumps({"low": {"x.vel": -1}, "high": {"x.vel": 1, "gripper": 1}}))
    with pytest.raises(ValueError, match="every action needs low and high"):
        SafetyLimits.from_file(path, NAMES)
    path.write_text(
        json.dumps(
            {"low": {"x.vel": -1, "gripper": 0}, "high": {"x.vel": 1, "gripper": 1}, "max_step": {"x.vel": 0}}
        )
    )
    with pytest.raises(ValueError, match="max_step must be > 0"):
        SafetyLimits.from_file(path, NAMES)


def test_the_policy_actions_reach_the_robot_on_schedule_through_the_safety_layer():
    def chunk_fn(window, task):
        assert window["observation.state"].shape == (2, 2) and window["observation.images.front"].shape == (
            2,
            8,
            8,
            3,
        )
        return np.tile([0.3, 0.8], (4, 1))

    robot, log, _, worker = deploy(chunk_fn, ticks=30, refill_below=2)
    assert len(robot.sent) == 30 and worker.failures == 0
    moved = [a for a in robot.sent if a["x.vel"] != 0.0]
    assert len(moved) >= 20 and all(a == {"x.vel": 0.3, "gripper": 0.8} for a in moved)
    assert log.holds == 30 - len(moved)  # ticks without a chunk yet hold
    assert_every_command_safe(robot, log)


def test_faults_make_the_robot_hold_and_no_unsafe_command_is_ever_sent():
    rng = np.random.default_rng(0)

    def wild(window, task):
        kind = rng.integers(4)
        if kind == 0:
            return np.full((3, 2), np.nan)
        if kind == 1:
            return rng.uniform(-50, 50, (3, 2))  # far out of limits, large jumps
        if kind == 2:
            raise RuntimeError("the policy crashed")
        time.sleep(0.03)  # late: three ticks at 100 Hz
        return rng.uniform(-1, 1, (3, 2))

    robot, log, safety, worker = deploy(wild, ticks=200)
    assert len(robot.sent) == 200 and worker.failures > 0 and log.holds > 0
    assert safety.counts["non_finite"] > 0 and safety.counts["limits"] > 0
    assert_every_command_safe(robot, log)


def test_a_frozen_camera_holds_the_robot():
    robot, log, _, _ = deploy(
        lambda w, t: np.tile([0.3, 0.8], (4, 1)), robot=StandInRobot(freeze_after=5), ticks=30
    )
    assert all(a == {"x.vel": 0.0, "gripper": 0.0} for a in robot.sent[12:])  # 5 unchanged frames: stale
    assert log.holds >= 18


def test_a_checkpoint_that_does_not_fit_the_robot_is_refused_before_anything_moves():
    robot = StandInRobot()
    bad_camera = PolicyInputs(
        INPUTS.state_keys,
        ("observation.images.wrist",),
        {**INPUTS.input_shapes, "observation.images.wrist": [8, 8, 3]},
        2,
    )
    with pytest.raises(
        ValueError, match=r"camera 'observation.images.wrist'; robot stand-in has \['front'\]"
    ):
        FeatureMap.match(robot, bad_camera)
    small = PolicyInputs(
        INPUTS.state_keys,
        INPUTS.image_keys,
        {**INPUTS.input_shapes, "observation.images.front": [16, 16, 3]},
        2,
    )
    with pytest.raises(ValueError, match=r"trained on \[16, 16, 3\], robot stand-in gives \[8, 8, 3\]"):
        FeatureMap.match(robot, small)
    with pytest.raises(ValueError, match="outputs 3 actions; robot stand-in takes 2"):
        FeatureMap.match(robot, PolicyInputs(INPUTS.state_keys, INPUTS.image_keys, INPUTS.input_shapes, 3))
    with pytest.raises(ValueError, match=r"'observation\.state' of shape \[3\]"):
        FeatureMap.match(
            robot,
            PolicyInputs(
                INPUTS.state_keys, INPUTS.image_keys, {**INPUTS.input_shapes, "observation.state": [3]}, 2
            ),
        )
    robot.action_semantics = "absolute joint positions"
    with pytest.raises(ValueError, match="action semantics differ"):
        FeatureMap.match(robot, INPUTS, "delta end-effector")
    assert sent_nothing(robot)


def sent_nothing(robot: StandInRobot) -> bool:
    return robot.sent == []


def test_unknown_robot_names_are_refused():
    with pytest.raises(ValueError, match="unknown robot 'so101'"):
        make_robot("so101")
    with pytest.raises(ValueError, match="unknown env id"):
        make_robot("sim:metaworld/fly-v3")


def test_a_lerobot_robot_is_built_from_its_config_type_and_driven_through_the_runtime():
    import lerobot_standin

    robot = make_robot("lerobot:standin_follower", robot_id="arm1")
    assert robot.config.id == "arm1" and isinstance(robot.robot, lerobot_standin.StandInFollower)
    robot.connect()
    inputs = PolicyInputs(
        ("observation.state",),
        ("observation.images.front",),
        {"observation.state": [6], "observation.images.front": [8, 8, 3]},
        6,
    )
    fmap = FeatureMap.match(robot, inputs)
    assert fmap.state_names == tuple(f"{m}.pos" for m in lerobot_standin.MOTORS)
    assert robot.hold_action(robot.get_observation()) == dict.fromkeys(fmap.action_names, 10.0)  # stay put
    names = tuple(robot.action_features)
    limits = SafetyLimits(names, np.full(6, -100.0), np.full(6, 100.0), np.full(6, 1.0))
    target = np.full(6, 15.0)
    cfg = DeployConfig(fps=100, max_ticks=10, n_obs_steps=2)
    run_episode(
        robot,
        fmap,
        PolicySource(PolicyWorker(lambda w, t: np.tile(target, (3, 1))), cfg),
        SafetyLayer(limits),
        cfg,
        lambda: False,
    )
    sent = [np.array([a[n] for n in names]) for a in robot.robot.sent]
    # From the present position (10) toward the target (15), at most 1 per tick, the first step included.
    steps = np.diff(np.stack([np.full(6, 10.0), *sent]), axis=0)
    assert len(sent) == 10 and (np.abs(steps) <= 1.0 + 1e-9).all() and np.allclose(sent[-1], 15.0)
    robot.disconnect()
    assert not robot.is_connected


def test_lerobot_robots_refuse_unknown_types_and_missing_calibration():
    import lerobot_standin  # noqa: F401  (registers the stand-in type)

    with pytest.raises(ValueError, match=r"unknown LeRobot robot type 'nonesuch'.*standin_follower"):
        make_robot("lerobot:nonesuch")
    robot = make_robot("lerobot:standin_follower")
    robot.robot.config.calibrated = False
    with pytest.raises(ValueError, match="has no calibration; calibrate it first"):
        robot.connect()
    assert not robot.is_connected


def test_the_fault_benchmark_injects_every_kind_and_counts_no_unsafe_command():
    from visuomotor.eval.bench.deploy import KINDS, _faults

    result = _faults(per_kind=20, fps=400.0)
    assert set(result["injected"]) == set(KINDS) and min(result["injected"].values()) >= 20
    assert result["unsafe_commands_sent"] == {
        "non_finite": 0,
        "out_of_range": 0,
        "step": 0,
        "moved_on_stale": 0,
    }
    fired = result["safety_rules_fired"]
    assert fired["non_finite"] > 0 and fired["limits"] > 0 and fired["max_step"] > 0
    assert result["holds"] > 0 and result["policy_failures"] >= 40
