"""Remote inference: a policy server and its client (architecture.md §Remote inference)."""

from visuomotor.real_robot.remote.client import PolicyClient, RemoteChunk, RemotePolicy, RemotePolicyError
from visuomotor.real_robot.remote.protocol import PolicyMetadata, ProtocolError

__all__ = [
    "PolicyClient",
    "PolicyMetadata",
    "ProtocolError",
    "RemoteChunk",
    "RemotePolicy",
    "RemotePolicyError",
]
