"""Client of the policy server (architecture.md §Remote inference).

    from visuomotor.real_robot.remote import PolicyClient
    with PolicyClient("127.0.0.1:8765", token=None) as client:
        chunk = client.infer(window, task="pull the drawer open")   # window: key -> (To, ...) array
        chunk.actions                                               # (n, action_dim), from the newest frame on

`RemotePolicy` wraps a client in the Policy interface (`reset`, `select_action` with one frame per
call), keeping the observation history and action queue on the client's side, as a local policy does.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from visuomotor.errors import InvalidInputError
from visuomotor.real_robot.remote.protocol import PolicyMetadata, decode_array, encode_array, pack, unpack

MAX_REPLY_BYTES = 64 << 20


class RemotePolicyError(InvalidInputError):
    """The server answered a request with an error (the message is the server's)."""


@dataclass(frozen=True)
class RemoteChunk:
    actions: np.ndarray
    """(n, action_dim) float32, the first one for the newest frame of the request."""
    inference_ms: float
    """Time the server spent in the policy."""
    round_trip_ms: float
    """Time from sending the request to decoding the reply, on this side."""


def websocket_url(address: str) -> str:
    """`HOST:PORT` -> `ws://HOST:PORT`; ws:// and wss:// URLs pass through."""
    if address.startswith(("ws://", "wss://")):
        return address
    if "://" in address:
        raise InvalidInputError(f"policy server address {address!r}: use HOST:PORT, ws://... or wss://...")
    return f"ws://{address}"


class PolicyClient:
    """A connection to a policy server; `metadata` is what the server said on connect."""

    def __init__(
        self, address: str, token: str | None = None, timeout: float = 30.0, ssl: Any = None
    ) -> None:
        from websockets.exceptions import InvalidStatus
        from websockets.sync.client import connect

        self.url = websocket_url(address)
        self.timeout = timeout
        headers = {"Authorization": f"Bearer {token}"} if token else None
        try:
            self._ws = connect(
                self.url,
                additional_headers=headers,
                max_size=MAX_REPLY_BYTES,
                compression=None,
                open_timeout=timeout,
                ssl=ssl,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            reason = "missing or wrong token" if status == 401 else f"HTTP {status}"
            raise RemotePolicyError(f"policy server at {self.url} refused the connection: {reason}") from None
        except OSError as exc:
            raise ConnectionError(f"no policy server at {self.url}: {exc}") from None
        self.metadata = PolicyMetadata.from_wire(unpack(self._recv(), MAX_REPLY_BYTES))
        self._next_id = 0

    def _recv(self) -> bytes | str:
        from websockets.exceptions import ConnectionClosed

        try:
            return self._ws.recv(timeout=self.timeout)
        except ConnectionClosed as exc:
            raise ConnectionError(f"the policy server at {self.url} went away ({exc})") from None
        except TimeoutError:
            raise ConnectionError(
                f"the policy server at {self.url} did not answer in {self.timeout} s"
            ) from None

    def _request(self, message: dict[str, Any]) -> dict[str, Any]:
        from websockets.exceptions import ConnectionClosed

        self._next_id += 1
        message["id"] = self._next_id
        try:
            self._ws.send(pack(message))
        except ConnectionClosed as exc:
            raise ConnectionError(f"the policy server at {self.url} went away ({exc})") from None
        reply = unpack(self._recv(), MAX_REPLY_BYTES)
        if reply["type"] == "error":
            raise RemotePolicyError(f"policy server at {self.url}: {reply.get('error')}")
        if reply.get("id") != self._next_id:
            raise ConnectionError(
                f"the policy server at {self.url} answered request {reply.get('id')}, not {self._next_id}"
            )
        return reply

    def infer(self, window: Mapping[str, np.ndarray], task: str | None = None) -> RemoteChunk:
        """Actions for an observation window: every input key with its last To frames, oldest first."""
        t0 = time.perf_counter()
        obs = {key: encode_array(np.asarray(value)) for key, value in window.items()}
        reply = self._request({"type": "infer", "observation": obs, "task": task})
        actions = decode_array(reply.get("actions"), "reply 'actions'")
        return RemoteChunk(actions, float(reply.get("inference_ms", 0.0)), (time.perf_counter() - t0) * 1e3)

    def reset(self) -> None:
        """Tell the server an episode starts (it keeps no history; this is for its log)."""
        self._request({"type": "reset"})

    def close(self) -> None:
        self._ws.close()

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class RemotePolicy:
    """A policy server behind the Policy interface: one frame in, one action out, a new chunk every
    `n_action_steps` actions; the first frame of an episode is repeated to fill the history."""

    def __init__(self, client: PolicyClient, n_action_steps: int | None = None) -> None:
        self.client = client
        meta = client.metadata
        self.n_action_steps = n_action_steps or meta.n_action_steps
        if not 1 <= self.n_action_steps <= meta.n_actions:
            raise InvalidInputError(
                f"n_action_steps must be in [1, {meta.n_actions}], got {self.n_action_steps}"
            )
        self.reset()

    def reset(self) -> None:
        self._history: deque[dict[str, np.ndarray]] = deque(maxlen=self.client.metadata.n_obs_steps)
        self._queue: deque[np.ndarray] = deque()

    def select_action(self, obs: Mapping[str, Any]) -> np.ndarray:
        """`obs`: key -> one frame (or a batch of one), plus optionally "task"."""
        meta = self.client.metadata
        frame = {k: _one_frame(obs, k, meta.inputs[k]["shape"][1:]) for k in meta.inputs}
        if not self._history:
            self._history.extend([frame] * meta.n_obs_steps)
        else:
            self._history.append(frame)
        if not self._queue:
            window = {k: np.stack([f[k] for f in self._history]) for k in meta.inputs}
            task = obs.get("task")
            task = task[0] if isinstance(task, list | tuple) else task
            self._queue.extend(self.client.infer(window, task).actions[: self.n_action_steps])
        return self._queue.popleft()


def _one_frame(obs: Mapping[str, Any], key: str, frame_shape: list[int]) -> np.ndarray:
    if key not in obs:
        raise InvalidInputError(f"observation is missing '{key}'")
    value = np.asarray(obs[key].detach().cpu() if hasattr(obs[key], "detach") else obs[key])
    if list(value.shape) == [1, *frame_shape]:
        value = value[0]
    return value.astype(np.uint8 if value.dtype == np.uint8 else np.float32)
