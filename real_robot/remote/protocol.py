"""The policy server's wire format (architecture.md §Remote inference): msgpack maps over WebSocket
binary frames, arrays as `{"dtype", "shape", "data"}` with raw little-endian bytes. Nothing here can
build an object from the wire: msgpack decodes only maps, lists, strings, numbers and bytes (extension
types are refused), and arrays are read with `numpy.frombuffer` from an allowed dtype.

Messages (every one a map with a "type"):
    server -> client on connect   {"type": "metadata", ...}             see `PolicyMetadata.to_wire`
    client -> server              {"type": "infer", "id": int, "observation": {key: array}, "task": str}
                                  {"type": "reset", "id": int}          an episode starts (acknowledged)
    server -> client              {"type": "actions", "id", "actions": array (n, A), "inference_ms"}
                                  {"type": "ack", "id"}  /  {"type": "error", "id", "error": str}

An observation holds the policy's last To frames of every input key, oldest first, so the server keeps
no per-client state; `actions` are the chunk's actions from the current (newest) frame on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from visuomotor.errors import InvalidInputError

PROTOCOL_VERSION = 1
DTYPES = ("float32", "uint8")
"""Array dtypes on the wire: low-dim values and actions are float32, images uint8."""
MAX_DIM = 1 << 14
"""Largest size of one array axis accepted."""


class ProtocolError(InvalidInputError):
    """A message that does not follow the protocol or does not fit the policy; the message says what."""


@dataclass(frozen=True)
class PolicyMetadata:
    """What a client needs to talk to a policy: its inputs (shape per request, dtype), its actions, its
    timing. Sent on connect; every request is checked against it."""

    inputs: dict[str, dict[str, Any]]
    """key -> {"shape": [To, *frame], "dtype": "float32" | "uint8"}."""
    action_dim: int
    n_obs_steps: int
    horizon: int
    n_action_steps: int
    tasks: list[str]
    checkpoint: str
    """Checkpoint id: the policy name and the first 16 hex digits of its weights' SHA-256."""
    policy: str
    extra: dict[str, Any] = field(default_factory=dict)
    """Recording facts when the checkpoint has them (fps, action semantics, env id)."""

    @property
    def n_actions(self) -> int:
        """Actions per response: the chunk from the current frame on."""
        return self.horizon - self.n_obs_steps + 1

    def request_bytes(self) -> int:
        """Size of the largest valid request (the observation's raw bytes plus room for the map)."""
        raw = sum(math.prod(s["shape"]) * np.dtype(s["dtype"]).itemsize for s in self.inputs.values())
        return raw + 64 * 1024

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": "metadata",
            "protocol": PROTOCOL_VERSION,
            "policy": self.policy,
            "checkpoint": self.checkpoint,
            "inputs": self.inputs,
            "action_dim": self.action_dim,
            "n_obs_steps": self.n_obs_steps,
            "horizon": self.horizon,
            "n_action_steps": self.n_action_steps,
            "n_actions": self.n_actions,
            "tasks": self.tasks,
            "extra": self.extra,
        }

    @classmethod
    def from_wire(cls, msg: dict[str, Any]) -> PolicyMetadata:
        if msg.get("type") != "metadata" or msg.get("protocol") != PROTOCOL_VERSION:
            raise ProtocolError(
                f"expected metadata of protocol {PROTOCOL_VERSION}, got type {msg.get('type')!r} "
                f"protocol {msg.get('protocol')!r}"
            )
        try:
            return cls(
                inputs=dict(msg["inputs"]),
                action_dim=int(msg["action_dim"]),
                n_obs_steps=int(msg["n_obs_steps"]),
                horizon=int(msg["horizon"]),
                n_action_steps=int(msg["n_action_steps"]),
                tasks=list(msg["tasks"]),
                checkpoint=str(msg["checkpoint"]),
                policy=str(msg["policy"]),
                extra=dict(msg.get("extra") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"malformed metadata: {exc!r}") from None


# ---------------------------------------------------------------------------------------------- bytes
def pack(message: dict[str, Any]) -> bytes:
    return msgpack.packb(message, use_bin_type=True)


def unpack(data: bytes | str, max_bytes: int) -> dict[str, Any]:
    """One message from the wire: a msgpack map with a string "type", at most `max_bytes` long."""
    if not isinstance(data, bytes | bytearray):
        raise ProtocolError("messages are binary msgpack frames, got a text frame")
    if len(data) > max_bytes:
        raise ProtocolError(f"message of {len(data)} bytes exceeds the limit of {max_bytes}")
    try:
        # unpackb bounds every string, binary, list and map by the length of `data` itself.
        msg = msgpack.unpackb(data, raw=False, strict_map_key=True, ext_hook=_refuse_ext)
    except ProtocolError:
        raise
    except Exception as exc:  # msgpack reports malformed input with several exception types
        raise ProtocolError(f"not a msgpack message: {type(exc).__name__}: {exc}") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolError(f"a message is a map with a string 'type', got {type(msg).__name__}")
    return msg


def _refuse_ext(code: int, _data: bytes) -> Any:
    raise ProtocolError(f"msgpack extension type {code} is not allowed")


def encode_array(array: np.ndarray) -> dict[str, Any]:
    a = np.ascontiguousarray(array)
    if a.dtype.name not in DTYPES:
        raise ProtocolError(f"arrays on the wire are {' or '.join(DTYPES)}, got {a.dtype}")
    return {
        "dtype": a.dtype.name,
        "shape": list(a.shape),
        "data": a.astype(a.dtype.newbyteorder("<")).tobytes(),
    }


def decode_array(value: Any, where: str) -> np.ndarray:
    """An array from its wire map, checked: allowed dtype, sane shape, byte count that matches."""
    if not isinstance(value, dict) or set(value) != {"dtype", "shape", "data"}:
        raise ProtocolError(f"{where}: an array is a map of dtype, shape and data")
    dtype, shape, data = value["dtype"], value["shape"], value["data"]
    if dtype not in DTYPES:
        raise ProtocolError(f"{where}: dtype must be {' or '.join(DTYPES)}, got {dtype!r}")
    if (
        not isinstance(shape, list)
        or len(shape) > 8
        or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= MAX_DIM for d in shape)
    ):
        raise ProtocolError(
            f"{where}: shape must be a list of at most 8 sizes in [0, {MAX_DIM}], got {shape!r}"
        )
    if not isinstance(data, bytes):
        raise ProtocolError(f"{where}: data must be bytes, got {type(data).__name__}")
    expected = math.prod(shape) * np.dtype(dtype).itemsize
    if len(data) != expected:
        raise ProtocolError(f"{where}: {len(data)} bytes of data for {dtype} {shape}, expected {expected}")
    return np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype).reshape(shape)


# ---------------------------------------------------------------------------------------------- requests
def message_id(msg: dict[str, Any]) -> int:
    """The request id, echoed in the reply: a non-negative integer below 2^63, required."""
    value = msg.get("id")
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        shown = value if isinstance(value, int | float) else type(value).__name__
        raise ProtocolError(f"'id' must be an integer in [0, 2^63), got {shown!r}")
    return value


def check_observation(msg: dict[str, Any], meta: PolicyMetadata) -> tuple[dict[str, np.ndarray], str | None]:
    """The observation and task of an "infer" request, every key, dtype, shape and value checked
    against the policy's metadata; ProtocolError naming the key and expected vs got otherwise."""
    obs = msg.get("observation")
    if not isinstance(obs, dict):
        raise ProtocolError("'observation' must be a map of input key -> array")
    missing = sorted(set(meta.inputs) - set(obs))
    unexpected = sorted(k for k in obs if k not in meta.inputs)
    if missing or unexpected:
        raise ProtocolError(f"observation keys: missing {missing}, unexpected {unexpected[:8]}")
    arrays = {}
    for key, spec in meta.inputs.items():
        a = decode_array(obs[key], f"observation '{key}'")
        if a.dtype.name != spec["dtype"] or list(a.shape) != list(spec["shape"]):
            raise ProtocolError(
                f"observation '{key}': expected {spec['dtype']} {list(spec['shape'])}, got {a.dtype} {list(a.shape)}"
            )
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise ProtocolError(f"observation '{key}': holds NaN or infinite values")
        arrays[key] = a
    task = msg.get("task")
    if meta.tasks and len(meta.tasks) > 1:
        if task not in meta.tasks:
            shown = task if isinstance(task, str) and len(task) < 200 else type(task).__name__
            raise ProtocolError(f"'task' must be one of the policy's {len(meta.tasks)} tasks, got {shown!r}")
    elif task is not None and not isinstance(task, str):
        raise ProtocolError(f"'task' must be a string, got {type(task).__name__}")
    return arrays, task
