"""The deploy runtime: a fixed-rate control loop that never waits for inference (architecture.md §Robots).

Each tick t (period dt = 1/fps) the loop reads an observation, hands the last To frames to the policy
worker when it is idle, takes any chunk the worker finished, and sends the action scheduled for t
through the safety layer. A chunk computed from the observation of tick s holds the actions for ticks
s, s+1, ...: those already in the past when it arrives are dropped (latency compensation), and where
two chunks overlap they are blended (`average`, ACT-style exponential weights favouring the older
chunk; or `latest`). The robot holds (its hold action) when no action is scheduled for the tick (a late
policy), when the observation is stale (a camera whose frame has not changed for `frozen_ticks` ticks, or
a read slower than `max_observation_age`), or when the policy failed; it moves again as soon as fresh
actions arrive.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from visuomotor.real_robot.controls import Controls
from visuomotor.real_robot.robot import FeatureMap, Robot
from visuomotor.real_robot.safety import SafetyLayer

log = logging.getLogger(__name__)

ChunkFn = Callable[[dict[str, np.ndarray], str | None], np.ndarray]
"""Observation window (key -> (To, ...)) and task -> actions (n, A) from the newest frame on."""


class ChunkScheduler:
    """Actions by control tick, filled from chunks as they arrive."""

    def __init__(self, blend: str = "average", decay: float = 0.01) -> None:
        if blend not in ("average", "latest"):
            raise ValueError(f"blend must be 'average' or 'latest', got {blend!r}")
        self.blend, self.decay = blend, decay
        self._slots: dict[int, list[np.ndarray]] = {}
        self.dropped = 0

    def add(self, actions: np.ndarray, obs_tick: int, now_tick: int) -> None:
        """Schedule `actions[k]` at tick obs_tick + k, dropping the ones before now_tick."""
        for k, action in enumerate(actions):
            tick = obs_tick + k
            if tick < now_tick:
                self.dropped += 1
                continue
            if self.blend == "latest":
                self._slots[tick] = [action]
            else:
                self._slots.setdefault(tick, []).append(action)

    def pending(self, tick: int) -> int:
        """Ticks from `tick` on that have an action."""
        return sum(1 for t in self._slots if t >= tick)

    def pop(self, tick: int) -> np.ndarray | None:
        for old in [t for t in self._slots if t < tick]:
            del self._slots[old]
        candidates = self._slots.pop(tick, None)
        if not candidates:
            return None
        if len(candidates) == 1:
            return candidates[0]
        weights = np.exp(-self.decay * np.arange(len(candidates)))  # oldest chunk first, heaviest
        # Averaged as offsets from the oldest chunk, so chunks that agree give their action exactly (a plain
        # weighted mean of equal values can land an ulp away, depending on how numpy sums).
        stacked = np.stack(candidates)
        return stacked[0] + np.average(stacked - stacked[0], axis=0, weights=weights)


class PolicyWorker:
    """Runs the policy beside the loop, one request at a time; never blocks the caller."""

    def __init__(self, chunk_fn: ChunkFn) -> None:
        self.chunk_fn = chunk_fn
        self._lock = threading.Lock()
        self._busy = False
        self._result: tuple[int, np.ndarray | None, float] | None = None
        self.failures = 0

    def submit(self, window: dict[str, np.ndarray], task: str | None, tick: int) -> bool:
        with self._lock:
            if self._busy or self._result is not None:  # a finished chunk waits to be taken first
                return False
            self._busy = True
        threading.Thread(target=self._run, args=(window, task, tick), daemon=True).start()
        return True

    def _run(self, window: dict[str, np.ndarray], task: str | None, tick: int) -> None:
        t0 = time.perf_counter()
        try:
            actions: np.ndarray | None = np.asarray(self.chunk_fn(window, task), np.float64)
        except Exception:
            log.exception("the policy failed; the robot holds until it answers again")
            actions = None
        with self._lock:
            self._result = (tick, actions, (time.perf_counter() - t0) * 1e3)
            self._busy = False

    def take(self) -> tuple[int, np.ndarray | None, float] | None:
        with self._lock:
            result, self._result = self._result, None
        if result is not None and result[1] is None:
            self.failures += 1
        return result

    def wait_idle(self, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while self._busy and time.monotonic() < end:
            time.sleep(0.001)


@dataclass
class DeployConfig:
    fps: float = 10.0
    n_obs_steps: int = 2
    blend: str = "average"
    dry_run: bool = False
    frozen_ticks: int = 5
    """A camera frame identical for this many ticks makes the observation stale."""
    max_observation_age: float = 0.5
    """A get_observation() slower than this (s) makes the observation stale."""
    max_ticks: int | None = None
    task: str | None = None
    refill_below: int = 0
    """Ask for a new chunk when at most this many future ticks have actions: 0 = only when none are
    left; `deploy` uses (actions per chunk - n_action_steps), so a chunk replaces the last one after
    n_action_steps of it, as `eval` replans, and the rest covers the inference time."""


@dataclass
class EpisodeLog:
    frames: list[dict[str, np.ndarray]] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    timestamps: list[float] = field(default_factory=list)
    safety: list[int] = field(default_factory=list)
    """Per tick: bit 0 hold, bits 1.. the safety rules that fired (RULES order)."""
    holds: int = 0
    late_ticks: int = 0
    periods: list[float] = field(default_factory=list)
    """Per tick: seconds from the tick's scheduled start to the end of its work."""

    def record(self, frame: dict[str, np.ndarray], action: np.ndarray, t: float, safety_bits: int) -> None:
        self.frames.append(frame)
        self.actions.append(action.astype(np.float32))
        self.timestamps.append(t)
        self.safety.append(safety_bits)


class ActionSource(Protocol):
    """Where a tick's planned action comes from: a policy (`PolicySource`) or a teleoperator."""

    def begin(self) -> None:
        """An episode starts."""

    def planned(self, tick: int, frame: dict[str, np.ndarray], stale: bool) -> np.ndarray | None:
        """The action for `tick` (None: nothing is planned, the robot holds)."""

    def end(self) -> None:
        """The episode is over."""


class PolicySource:
    """Chunks from a `PolicyWorker`, asked for from the last To frames and scheduled by tick."""

    def __init__(self, worker: PolicyWorker, cfg: DeployConfig) -> None:
        self.worker, self.cfg = worker, cfg
        self.begin()

    def begin(self) -> None:
        self.scheduler = ChunkScheduler(self.cfg.blend)
        self.history: deque[dict[str, np.ndarray]] = deque(maxlen=self.cfg.n_obs_steps)

    def planned(self, tick: int, frame: dict[str, np.ndarray], stale: bool) -> np.ndarray | None:
        self.history.extend([frame] * self.cfg.n_obs_steps if not self.history else [frame])
        if not stale and self.scheduler.pending(tick) <= self.cfg.refill_below:
            window = {k: np.stack([f[k] for f in self.history]) for k in frame}
            self.worker.submit(window, self.cfg.task, tick)
        result = self.worker.take()
        if result is not None and result[1] is not None:
            self.scheduler.add(result[1], result[0], tick)
        return self.scheduler.pop(tick)

    def end(self) -> None:
        self.worker.wait_idle()
        self.worker.take()  # a chunk of this episode must not start the next one


def run_episode(
    robot: Robot,
    fmap: FeatureMap,
    source: ActionSource,
    safety: SafetyLayer,
    cfg: DeployConfig,
    stop: Callable[[], bool],
    watchdog: Watchdog | None = None,
) -> EpisodeLog:
    """One episode: until the robot says it is over (simulated robots), `max_ticks`, or `stop()`.
    Give one `watchdog` to every episode of a deployment, so a camera frozen across an episode's start
    stays stale."""
    from visuomotor.real_robot.safety import RULES

    dt = 1.0 / cfg.fps
    episode, watch = EpisodeLog(), watchdog or Watchdog(cfg)
    previous: np.ndarray | None = None
    tick, start = 0, time.monotonic()
    source.begin()
    while (
        not stop()
        and not getattr(robot, "episode_over", False)
        and (cfg.max_ticks is None or tick < cfg.max_ticks)
    ):
        t0 = time.monotonic()
        raw = robot.get_observation()
        frame = fmap.policy_observation(raw)
        stale = watch.stale(frame, time.monotonic() - t0)
        planned = source.planned(tick, frame, stale)
        hold = fmap.action_vector(robot.hold_action(raw))
        previous = hold if previous is None else previous
        action, fired = (None, []) if planned is None or stale else safety.check(planned, previous, raw)
        held = action is None
        if held:
            action = hold
            episode.holds += 1
            episode.late_ticks += int(planned is None and not stale)
        if not cfg.dry_run:
            action = fmap.action_vector(robot.send_action(fmap.robot_action(action)))
        previous = action
        episode.record(frame, action, t0 - start, int(held) | sum(1 << (1 + RULES.index(r)) for r in fired))
        tick += 1
        now = time.monotonic()
        episode.periods.append(now - (start + (tick - 1) * dt))
        time.sleep(max(0.0, start + tick * dt - now))
    source.end()
    return episode


def run_episodes(
    robot: Robot,
    fmap: FeatureMap,
    source: ActionSource,
    safety: SafetyLayer,
    cfg: DeployConfig,
    controls: Controls,
    episodes: int,
    *,
    keys: bool,
    first_seed: int = 0,
    between: ActionSource | None = None,
    keep: Callable[[int, EpisodeLog], None] = lambda _i, _log: None,
) -> int:
    """Run `episodes` episodes, handing each kept one to `keep(index, log)`; returns how many were kept.

    A simulated robot starts each episode itself on seed `first_seed + index` (`eval`'s seeds). A real
    robot with a terminal waits for the start key; meanwhile `between` (the teleoperator, when
    recording) drives it unrecorded so the operator can reset the scene, else it holds. Without a
    terminal, episodes follow each other. The re-record key discards the episode and runs it again."""
    from visuomotor.real_robot.controls import HELP

    watchdog, kept = Watchdog(cfg), 0
    while kept < episodes and not controls.stopped:
        if hasattr(robot, "start_episode"):
            robot.start_episode(first_seed + kept)
            controls.begin_episode()
        elif keys:
            log.warning("episode %d of %d: press Enter to start (%s)", kept + 1, episodes, HELP)
            if between is not None:
                free = replace(cfg, max_ticks=None)
                run_episode(robot, fmap, between, safety, free, controls.episode_should_end, watchdog)
            if not controls.wait_start():
                break
        else:
            controls.begin_episode()
        episode = run_episode(robot, fmap, source, safety, cfg, controls.episode_should_end, watchdog)
        if controls.take_rerecord():
            log.warning("episode %d discarded: it runs again", kept + 1)
            continue
        keep(kept, episode)
        kept += 1
    return kept


def hold_and_disconnect(robot: Robot, dry_run: bool) -> None:
    """The end of every deployment, however it ends: command the hold action once (a position-
    controlled arm stops where it is rather than finishing its last target), then disconnect."""
    try:
        if robot.is_connected and not dry_run and not getattr(robot, "episode_over", False):
            robot.send_action(robot.hold_action(robot.get_observation()))
    except Exception:
        log.exception("could not send the hold action before disconnecting")
    finally:
        robot.disconnect()


class Watchdog:
    """Stale observations: frozen cameras, slow reads."""

    def __init__(self, cfg: DeployConfig) -> None:
        self.cfg = cfg
        self._last: dict[str, bytes] = {}
        self._same: dict[str, int] = {}

    def stale(self, frame: dict[str, np.ndarray], read_s: float) -> bool:
        frozen = False
        for key, value in frame.items():
            if value.dtype != np.uint8:
                continue
            digest = value.tobytes()
            self._same[key] = self._same.get(key, 0) + 1 if self._last.get(key) == digest else 0
            self._last[key] = digest
            frozen = frozen or self._same[key] >= self.cfg.frozen_ticks
        return frozen or read_s > self.cfg.max_observation_age
