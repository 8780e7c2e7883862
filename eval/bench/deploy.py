"""`visuomotor bench deploy`: the deploy runtime under injected faults, and its loop timing.

A pure-Python arm (six position-controlled joints, one 8x8 camera, no simulator, so the figures are the
runtime's own) is driven by a scripted policy through `run_episode` with the safety layer's limits
(joint range [-100, 100], at most 1 per tick). Each fault kind is injected at least 1,000 times:
`nan` (NaN or infinity in a chunk), `out_of_limit` (targets far outside the range), `jump` (a target
far from the present position), `frozen_camera` (the same frame for 8 ticks), `latency` (the policy
answers after 3-6 ticks), `policy_crash` (the policy raises), `dropped_connection` (the policy raises
ConnectionError, as a lost policy server does). Every command the arm receives is checked: a command is
unsafe if it is non-finite, outside the range, more than 1 from the previous command while not a hold,
or not a hold while the camera is frozen. Loop timing: the period from each tick's scheduled start to
the end of its work, p50/p99, at 10 Hz and 30 Hz with a 5 ms policy.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from visuomotor.real_robot.robot import FeatureMap, PolicyInputs, Robot
from visuomotor.real_robot.runtime import DeployConfig, PolicySource, PolicyWorker, Watchdog, run_episode
from visuomotor.real_robot.safety import SafetyLayer, SafetyLimits

JOINTS = tuple(f"joint{i}.pos" for i in range(6))
KINDS = ("nan", "out_of_limit", "jump", "frozen_camera", "latency", "policy_crash", "dropped_connection")
INPUTS = PolicyInputs(
    ("observation.state",),
    ("observation.images.front",),
    {"observation.state": [6], "observation.images.front": [8, 8, 3]},
    6,
)


class FakeArm(Robot):
    """Position-controlled joints that reach their target in one tick; a camera that can freeze."""

    name = "fake-arm"

    def __init__(self) -> None:
        self.positions = np.zeros(6)
        self.sent: list[np.ndarray] = []
        self.frozen_until = -1
        self.tick = 0
        self._frame = 0

    @property
    def observation_features(self) -> dict[str, Any]:
        return {**dict.fromkeys(JOINTS, float), "front": (8, 8, 3)}

    @property
    def action_features(self) -> dict[str, Any]:
        return dict.fromkeys(JOINTS, float)

    @property
    def is_connected(self) -> bool:
        return True

    def connect(self) -> None:
        pass

    def disconnect(self) -> None:
        pass

    def get_observation(self) -> dict[str, Any]:
        if self.tick >= self.frozen_until:
            self._frame = self.tick
        obs: dict[str, Any] = dict(zip(JOINTS, self.positions.tolist(), strict=True))
        obs["front"] = np.full((8, 8, 3), self._frame % 256, np.uint8)
        return obs

    def send_action(self, action: dict[str, float]) -> dict[str, float]:
        self.positions = np.array([action[j] for j in JOINTS])
        self.sent.append(self.positions.copy())
        self.tick += 1
        return action

    def hold_action(self, observation: dict[str, Any]) -> dict[str, float]:
        return {j: float(observation[j]) for j in JOINTS}


def _faulty_policy(arm: FakeArm, rng: np.random.Generator, counts: dict[str, int]):
    """A policy that heads for random targets and injects one fault kind per call, in turn."""
    calls = [0]

    def chunk_fn(window: dict[str, np.ndarray], task: str | None) -> np.ndarray:
        calls[0] += 1
        kind = KINDS[calls[0] % len(KINDS)]
        counts[kind] += 1
        target = np.clip(arm.positions + rng.uniform(-0.5, 0.5, 6), -99, 99)
        chunk = np.tile(target, (4, 1))
        if kind == "nan":
            chunk[rng.integers(4), rng.integers(6)] = rng.choice([np.nan, np.inf, -np.inf])
        elif kind == "out_of_limit":
            chunk[:, rng.integers(6)] = rng.choice([-1, 1]) * rng.uniform(150, 1e6)
        elif kind == "jump":
            chunk[:, rng.integers(6)] += rng.choice([-1, 1]) * rng.uniform(5, 80)
        elif kind == "frozen_camera":
            arm.frozen_until = arm.tick + 8
        elif kind == "latency":
            time.sleep(rng.uniform(3, 6) / 200)
        elif kind == "policy_crash":
            raise RuntimeError("injected policy crash")
        elif kind == "dropped_connection":
            raise ConnectionError("injected: the policy server went away")
        return chunk

    return chunk_fn


def _unsafe(arm: FakeArm, log: Any, limits: SafetyLimits) -> dict[str, int]:
    """Commands that broke a rule, by rule (holds are exempt from the step bound)."""
    unsafe = {"non_finite": 0, "out_of_range": 0, "step": 0, "moved_on_stale": 0}
    previous = np.zeros(6)
    frozen_run, last_frame = 0, None
    for command, bits, frame in zip(arm.sent, log.safety, log.frames, strict=True):
        img = frame["observation.images.front"].tobytes()
        frozen_run = frozen_run + 1 if img == last_frame else 0
        last_frame = img
        hold = bool(bits & 1)
        unsafe["non_finite"] += int(not np.isfinite(command).all())
        unsafe["out_of_range"] += int(((command < limits.low) | (command > limits.high)).any())
        unsafe["step"] += int(not hold and (np.abs(command - previous) > limits.max_step + 1e-9).any())
        unsafe["moved_on_stale"] += int(not hold and frozen_run >= 5)
        previous = command
    return unsafe


def _faults(per_kind: int, fps: float) -> dict[str, Any]:
    arm, rng = FakeArm(), np.random.default_rng(0)
    counts = dict.fromkeys(KINDS, 0)
    limits = SafetyLimits(JOINTS, np.full(6, -100.0), np.full(6, 100.0), np.full(6, 1.0))
    safety, fmap = SafetyLayer(limits), FeatureMap.match(arm, INPUTS)
    worker = PolicyWorker(_faulty_policy(arm, rng, counts))
    cfg = DeployConfig(fps=fps, n_obs_steps=2, refill_below=3)
    t0 = time.perf_counter()
    logs, source, watchdog = [], PolicySource(worker, cfg), Watchdog(cfg)  # one watchdog per deployment
    while min(counts.values()) < per_kind:
        cfg.max_ticks = 500
        logs.append(run_episode(arm, fmap, source, safety, cfg, lambda: False, watchdog))
    merged = _merge(logs)
    return {
        "fps": fps,
        "injected": counts,
        "ticks": len(arm.sent),
        "holds": merged.holds,
        "policy_failures": worker.failures,
        "safety_rules_fired": safety.counts,
        "unsafe_commands_sent": _unsafe(arm, merged, limits),
        "seconds": time.perf_counter() - t0,
    }


def _merge(logs: list[Any]) -> Any:
    from visuomotor.real_robot.runtime import EpisodeLog

    out = EpisodeLog()
    for log in logs:
        out.frames += log.frames
        out.safety += log.safety
        out.holds += log.holds
        out.periods += log.periods
    return out


def _timing(fps: float, seconds: float) -> dict[str, Any]:
    arm = FakeArm()
    limits = SafetyLimits(JOINTS, np.full(6, -100.0), np.full(6, 100.0), np.full(6, 1.0))

    def policy(window: dict[str, np.ndarray], task: str | None) -> np.ndarray:
        time.sleep(0.005)
        return np.tile(arm.positions + 0.1, (4, 1))

    cfg = DeployConfig(fps=fps, n_obs_steps=2, max_ticks=int(seconds * fps), refill_below=2)
    source = PolicySource(PolicyWorker(policy), cfg)
    log = run_episode(arm, FeatureMap.match(arm, INPUTS), source, SafetyLayer(limits), cfg, lambda: False)
    periods = sorted(log.periods)
    return {
        "fps": fps,
        "ticks": len(periods),
        "work_ms_p50": 1e3 * statistics.median(periods),
        "work_ms_p99": 1e3 * periods[int(0.99 * (len(periods) - 1))],
        "late_ticks": log.late_ticks,
    }


def run_benchmark(json_path: str | None, quick: bool = False) -> dict[str, Any]:
    per_kind, seconds = (30, 2.0) if quick else (1000, 30.0)
    out = {
        "benchmark": "deploy",
        "date": time.strftime("%Y-%m-%d"),
        "faults": _faults(per_kind, fps=200.0),
        "timing": [_timing(fps, seconds) for fps in (10.0, 30.0)],
    }
    if json_path:
        Path(json_path).write_text(json.dumps(out, indent=2))
    return out
