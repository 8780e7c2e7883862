"""The policy server: one loaded policy answering observation windows with action chunks over WebSocket
(architecture.md §Remote inference).

Each connection is a coroutine, so a client that is slow to send or to read stalls only itself; the
policy runs on one inference thread (requests queue for it), which keeps the event loop free for the
other clients and for `/health`. Every request is checked against the policy's metadata before the
policy sees it, and every failure becomes an error reply: nothing a client sends can stop the server.
With a token, the WebSocket handshake itself is refused (HTTP 401) unless it carries
`Authorization: Bearer <token>`, compared in constant time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from pathlib import Path
from typing import Any

import numpy as np

from visuomotor.errors import InvalidInputError
from visuomotor.real_robot.remote.protocol import (
    PolicyMetadata,
    ProtocolError,
    check_observation,
    encode_array,
    message_id,
    pack,
    unpack,
)

log = logging.getLogger(__name__)

MIN_TOKEN_CHARS = 16


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a token (anyone who can reach the port could drive
    the robot's policy), and refuse tokens too short to resist guessing."""
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise InvalidInputError(
            f"the token must have at least {MIN_TOKEN_CHARS} characters, got {len(token)}"
        )
    if not is_loopback(host) and token is None:
        raise InvalidInputError(
            f"refusing to listen on {host} without a token: anyone who can reach it could query the policy. "
            "Give --token-file FILE (clients send it as a bearer token), or serve on 127.0.0.1"
        )


def read_token(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        token = Path(path).read_text().strip()
    except FileNotFoundError:
        raise InvalidInputError(f"--token-file {path}: no such file") from None
    if not token:
        raise InvalidInputError(f"--token-file {path}: the file is empty")
    return token


def metadata_of(policy: Any, weights_sha256: str, extra: dict[str, Any] | None = None) -> PolicyMetadata:
    """The metadata of a loaded policy: inputs with the per-request shape [To, *frame], its actions and
    timing, and a checkpoint id from its weights' SHA-256 (`CheckpointInfo.weights_digest()`)."""
    c = policy.config
    inputs = {
        key: {
            "shape": [c.n_obs_steps, *c.input_shapes[key]],
            "dtype": "uint8" if key in c.image_keys else "float32",
        }
        for key in c.input_keys
    }
    return PolicyMetadata(
        inputs=inputs,
        action_dim=c.action_dim,
        n_obs_steps=c.n_obs_steps,
        horizon=c.horizon,
        n_action_steps=c.n_action_steps,
        tasks=list(c.tasks),
        checkpoint=f"{policy.name}-{weights_sha256[:16]}",
        policy=policy.name,
        extra=dict(extra or {}),
    )


class PolicyServer:
    """Answers requests for one policy; `serve` / `serve_in_background` put it on a socket."""

    def __init__(self, policy: Any, metadata: PolicyMetadata, token: str | None = None) -> None:
        self.policy = policy
        self.metadata = metadata
        self.token = token
        self.max_bytes = metadata.request_bytes()
        self.counts = {"requests": 0, "errors": 0, "refused": 0}
        self._inference = ThreadPoolExecutor(max_workers=1, thread_name_prefix="policy")

    # ------------------------------------------------------------------ HTTP side of the handshake
    def process_request(self, connection: Any, request: Any) -> Any:
        if request.path == "/health":
            body = {"status": "ok", "checkpoint": self.metadata.checkpoint, **self.counts}
            return connection.respond(HTTPStatus.OK, json.dumps(body) + "\n")
        if self.token is not None:
            sent = request.headers.get("Authorization", "")
            if not hmac.compare_digest(sent.encode(), f"Bearer {self.token}".encode()):
                self.counts["refused"] += 1
                return connection.respond(HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token\n")
        return None

    # ------------------------------------------------------------------ one connection
    async def handle(self, connection: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        with contextlib.suppress(ConnectionClosed):
            await connection.send(pack(self.metadata.to_wire()))
            async for data in connection:
                await connection.send(pack(await self.reply(data)))

    async def reply(self, data: bytes | str) -> dict[str, Any]:
        """The reply to one message; never raises."""
        self.counts["requests"] += 1
        mid = None
        try:
            msg = unpack(data, self.max_bytes)
            mid = message_id(msg)
            if msg["type"] == "infer":
                obs, task = check_observation(msg, self.metadata)
                loop = asyncio.get_running_loop()
                actions, ms = await loop.run_in_executor(self._inference, self.infer, obs, task)
                return {"type": "actions", "id": mid, "actions": encode_array(actions), "inference_ms": ms}
            if msg["type"] == "reset":
                return {"type": "ack", "id": mid}
            raise ProtocolError(f"unknown message type {msg['type'][:64]!r}; expected 'infer' or 'reset'")
        except ProtocolError as exc:
            self.counts["errors"] += 1
            return {"type": "error", "id": mid, "error": str(exc)}
        except Exception:
            self.counts["errors"] += 1
            log.exception("request failed inside the policy server")
            return {"type": "error", "id": mid, "error": "internal error in the policy server (see its log)"}

    def infer(self, obs: dict[str, np.ndarray], task: str | None) -> tuple[np.ndarray, float]:
        """Actions (n, A) from the current frame on, and the inference time in ms (inference thread)."""
        t0 = time.perf_counter()
        actions = self.policy.chunk_from_window(obs, task)
        return actions, (time.perf_counter() - t0) * 1e3

    # ------------------------------------------------------------------ sockets
    async def serve(self, host: str, port: int, ssl: Any = None, ready: Any = None) -> None:
        """Listen until cancelled; `ready(port)` is called once the socket is bound."""
        from websockets.asyncio.server import serve

        check_exposure(host, self.token)
        async with serve(
            self.handle,
            host,
            port,
            process_request=self.process_request,
            max_size=self.max_bytes,
            compression=None,
            ssl=ssl,
            logger=log,
        ) as server:
            bound = next(iter(server.sockets)).getsockname()[1]
            log.info("serving %s on %s:%d", self.metadata.checkpoint, host, bound)
            if ready is not None:
                ready(bound)
            await asyncio.Future()  # until cancelled

    @contextlib.contextmanager
    def serve_in_background(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
        """Serve from a thread for the duration of the block; yields the ws:// URL (tests, benchmarks)."""
        loop = asyncio.new_event_loop()
        bound: list[int] = []
        started = threading.Event()

        def ready(p: int) -> None:
            bound.append(p)
            started.set()

        task = loop.create_task(self.serve(host, port, ready=ready))
        task.add_done_callback(lambda _t: started.set())

        def run() -> None:
            # The end of the block cancels the task; a failure to start is re-raised from task.result().
            with contextlib.suppress(asyncio.CancelledError, Exception):
                loop.run_until_complete(task)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        started.wait(30)
        if not bound:
            thread.join(5)
            task.result()  # raises what stopped the server from starting
        try:
            yield f"ws://{host}:{bound[0]}"
        finally:
            loop.call_soon_threadsafe(task.cancel)
            thread.join(10)
            loop.close()
