"""A small process pool for simulator work (rollouts, collection), built for MuJoCo on a few CPU cores.

Why not `concurrent.futures.ProcessPoolExecutor`: we need to (a) stop workers at once on Ctrl-C and
report what was saved, which the executor only allows through private attributes, (b) keep one env and
one renderer alive per worker across tasks (module-level state in the worker), and (c) have workers
exit by themselves when the parent is SIGKILLed instead of lingering as orphans.

- Start method `forkserver`: never fork a parent that has loaded torch/MuJoCo/OpenGL state (threads,
  GL contexts); the fork server preloads the simulator modules once so each worker starts in well under
  a second instead of re-importing them like `spawn` would.
- Workers ignore SIGINT: a terminal's Ctrl-C reaches the whole process group, and the parent alone
  decides how to shut down (it terminates the workers after committing what it has).
- Workers poll their parent between tasks and exit when it is gone (SIGKILL leaves no orphans).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import multiprocessing as mp
import os
import queue
import signal
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from visuomotor.errors import InvalidInputError

logger = logging.getLogger(__name__)

_POLL_S = 0.5
DEFAULT_PRELOAD = ("numpy", "torch", "visuomotor.sim")


class RemoteTraceback(Exception):
    """Carries a worker's formatted traceback as the `__cause__` of the re-raised exception."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class WorkerDiedError(RuntimeError):
    """A worker process exited without returning its result (crash, OOM kill, segfault in the simulator)."""


def _worker_main(
    fn: Callable[[Any], Any],
    initializer: Callable[..., None] | None,
    initargs: tuple,
    tasks: mp.Queue,
    results: mp.Queue,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = mp.parent_process()

    def parent_gone() -> bool:
        return parent is not None and not parent.is_alive()

    try:
        if initializer is not None:
            initializer(*initargs)
    except BaseException as exc:
        results.put((None, False, _pack_exception(exc)))
        return
    while True:
        try:
            item = tasks.get(timeout=_POLL_S)
        except queue.Empty:
            item = ...
        if parent_gone():
            # Nobody reads our results any more; don't block on flushing them.
            results.cancel_join_thread()
            os._exit(0)
        if item is ...:
            continue
        if item is None:
            return
        task_id, payload = item
        try:
            out = (task_id, True, fn(payload))
        except BaseException as exc:
            out = (task_id, False, _pack_exception(exc))
        results.put(out)


def _pack_exception(exc: BaseException) -> tuple[BaseException, str]:
    tb = traceback.format_exc()
    try:
        import pickle

        pickle.dumps(exc)
    except Exception:
        exc = RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc, tb


class SigintFlag:
    """Ctrl-C as a flag that the main loop checks at safe points, instead of a KeyboardInterrupt raised
    wherever the main thread happens to be.

    An asynchronous KeyboardInterrupt can land between a lock's acquire and the `try` that releases it
    (a multiprocessing queue's read lock, tqdm's or logging's lock, zarr's event-loop handshake); the
    cleanup that follows then waits on that lock forever while the workers keep running. Seen as an
    intermittent hang of `collect` after Ctrl-C. A second Ctrl-C interrupts at once: the user insists,
    and the store is crash-safe anyway (an episode is committed by its `episode_ends` entry).
    """

    def __init__(self) -> None:
        self._requested = False
        self._previous: Any = None

    def __enter__(self) -> SigintFlag:
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self._requested:
            raise KeyboardInterrupt
        self._requested = True

    def is_set(self) -> bool:
        return self._requested

    def check(self) -> None:
        """Raise KeyboardInterrupt if Ctrl-C was pressed (call where no lock is held)."""
        if self._requested:
            raise KeyboardInterrupt

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


class WorkerPool:
    """`num_workers` processes running `fn(payload)` on submitted tasks; results come back as they finish.

    Use as a context manager: a normal exit sends every worker a stop signal and joins it; an exception
    (including KeyboardInterrupt) terminates the workers at once.
    """

    def __init__(
        self,
        fn: Callable[[Any], Any],
        num_workers: int,
        initializer: Callable[..., None] | None = None,
        initargs: tuple = (),
        preload: Sequence[str] = (),
    ) -> None:
        if num_workers < 1:
            raise ValueError(f"need at least one worker, got {num_workers}")
        # Headless rendering by default (architecture.md §Rendering); must be in the environment before
        # MuJoCo is imported, and the fork server inherits the environment at its start.
        os.environ.setdefault("MUJOCO_GL", "osmesa")
        if os.environ["MUJOCO_GL"] == "osmesa":
            os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
        ctx = mp.get_context("forkserver")
        # The fork server is started once per process, with the preload list of the first pool; always
        # include torch so that every later pool (eval after collect, in one test session) forks workers
        # with torch already imported instead of importing it in each worker.
        ctx.set_forkserver_preload(list(dict.fromkeys([*DEFAULT_PRELOAD, *preload])))
        self._tasks: mp.Queue = ctx.Queue()
        self._results: mp.Queue = ctx.Queue()
        self._procs = [
            ctx.Process(
                target=_worker_main,
                args=(fn, initializer, initargs, self._tasks, self._results),
                name=f"visuomotor-worker-{i}",
                daemon=True,
            )
            for i in range(num_workers)
        ]
        for p in self._procs:
            p.start()
        self.pending = 0
        self._closed = False

    @property
    def num_workers(self) -> int:
        return len(self._procs)

    def submit(self, task_id: Any, payload: Any) -> None:
        self._tasks.put((task_id, payload))
        self.pending += 1

    def next_result(self, stop: Callable[[], bool] | None = None) -> tuple[Any, Any]:
        """Block until any submitted task finishes; return `(task_id, result)` or re-raise its exception.

        `stop` is polled between waits: when it says so, raise KeyboardInterrupt here, where no queue
        lock is held (see `SigintFlag`).
        """
        if self.pending <= 0:
            raise RuntimeError("next_result() called with no task pending")
        while True:
            if stop is not None and stop():
                raise KeyboardInterrupt
            try:
                task_id, ok, value = self._results.get(timeout=_POLL_S)
            except queue.Empty:
                dead = [p for p in self._procs if not p.is_alive()]
                if dead:
                    p = dead[0]
                    raise WorkerDiedError(
                        f"worker process {p.name} (pid {p.pid}) exited unexpectedly with code {p.exitcode}"
                    ) from None
                continue
            if task_id is not None:
                self.pending -= 1
            if ok:
                return task_id, value
            exc, tb = value
            raise exc from RemoteTraceback(tb)

    def close(self, timeout: float = 30.0) -> None:
        """Stop the workers after the tasks already submitted (results not read are dropped)."""
        if self._closed:
            return
        self._closed = True
        for _ in self._procs:
            self._tasks.put(None)
        for p in self._procs:
            p.join(timeout)
        self.terminate()

    def terminate(self) -> None:
        """Stop every worker now (SIGTERM, then SIGKILL after a grace period)."""
        self._closed = True
        for p in self._procs:
            if p.is_alive():
                p.terminate()
        for p in self._procs:
            p.join(2.0)
            if p.is_alive():
                p.kill()
                p.join(2.0)
        # Don't let a queue feeder thread block interpreter exit on a pipe nobody reads.
        self._tasks.cancel_join_thread()
        self._results.cancel_join_thread()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.terminate()


# ------------------------------------------------------------------------------ envs and seeds for workers
EVAL_SEED_BASE = 1_000_000
"""First evaluation seed; collection seeds count up from 0 and must stay below this."""

DEFAULT_SIM_MODULE = "visuomotor.sim"


def eval_seed(episode: int, seed_offset: int = 0) -> int:
    """Seed of evaluation episode `episode` (the same for every task)."""
    return EVAL_SEED_BASE + seed_offset + episode


@dataclass(frozen=True)
class EnvConfig:
    """How workers build envs (picklable; one env per worker per task)."""

    cameras: tuple[str, ...] | None = None
    """Cameras to render; None -> the env's default (Metaworld: corner2; robosuite: agentview + wrist)."""
    image_size: int = 64
    render: bool = True
    max_episode_steps: int | None = None
    sim_module: str = DEFAULT_SIM_MODULE
    """Module providing `make_env`, `make_expert`, `expand_env_id` (tests pass a fake)."""
    terminate_on_success: bool = True
    """End an episode at its first successful step (collection with settle steps turns this off)."""
    camera_pose: str | None = None
    """Metaworld's corner2 pose ("lerobot", "dp3", "metaworld"); None -> the default (`sim.make_env`)."""


def load_sim(sim_module: str = DEFAULT_SIM_MODULE) -> Any:
    return importlib.import_module(sim_module)


def check_run_args(episodes: int, workers: int) -> None:
    """Validate the --episodes and --workers that `evaluate` and `collect` share (same rules, same words)."""
    if episodes < 1:
        raise InvalidInputError(f"--episodes must be >= 1, got {episodes}")
    if workers < 1:
        raise InvalidInputError(f"--workers must be >= 1, got {workers}")


# --------------------------------------------------------------------------------------------------
# Worker side: module-level state, one env (one renderer) per worker process.


class _EnvSlot:
    """The worker's current env, its policy and the key they were built for."""

    def __init__(self) -> None:
        self.key: Any = None
        self.env: Any = None
        self.extra: Any = None

    def get(self, key: Any, build_env, build_extra=None) -> tuple[Any, Any]:
        if key != self.key:
            self.close()
            self.env = build_env()
            self.extra = build_extra(self.env) if build_extra is not None else None
            self.key = key
        return self.env, self.extra

    def close(self) -> None:
        if self.env is not None:
            try:
                self.env.close()
            except Exception:  # a failing close must not mask the next task's result
                logger.debug("env close failed", exc_info=True)
        self.key = self.env = self.extra = None


SLOT = _EnvSlot()
"""This worker process's env (one renderer per process, architecture.md §Rendering)."""


def worker_init() -> None:
    """Per-worker setup: one torch thread per process (the workers already use every core)."""
    import torch

    torch.set_num_threads(1)
    with contextlib.suppress(RuntimeError):  # already set, or parallel work already ran in this process
        torch.set_num_interop_threads(1)


def make_worker_env(sim: Any, env_id: str, cfg: EnvConfig, seed: int | None = None) -> Any:
    return sim.make_env(
        env_id,
        cameras=None if cfg.cameras is None else tuple(cfg.cameras),
        image_size=cfg.image_size,
        render=cfg.render,
        seed=seed,
        max_episode_steps=cfg.max_episode_steps,
        terminate_on_success=cfg.terminate_on_success,
        # Only when set: robosuite refuses a pose, and test sims take no such argument.
        **({} if cfg.camera_pose is None else {"camera_pose": cfg.camera_pose}),
    )
