"""Serve a trained policy for remote inference over WebSocket (msgpack payloads, no pickle). Binds to
127.0.0.1 unless told otherwise; any other address needs --token-file, whose token every client sends
as `Authorization: Bearer <token>`. `GET /health` answers without a token. Clients: `visuomotor deploy
--server HOST:PORT`, or `visuomotor.real_robot.remote.PolicyClient` from Python."""

from __future__ import annotations

import argparse
import asyncio
import logging

from visuomotor.commands import add_policy_override

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="run or checkpoint directory to serve")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any free port)")
    parser.add_argument("--token-file", help="file holding the bearer token clients must send")
    parser.add_argument("--tls-cert", help="serve wss:// with this certificate (PEM) ...")
    parser.add_argument("--tls-key", help="... and this private key (PEM)")
    add_policy_override(parser, "-o num_inference_steps=10")


def run(args: argparse.Namespace) -> int:
    from visuomotor.configs import parse_overrides
    from visuomotor.errors import InvalidInputError
    from visuomotor.policies import inspect_checkpoint, load_policy
    from visuomotor.real_robot.remote.server import PolicyServer, check_exposure, metadata_of, read_token

    token = read_token(args.token_file)
    check_exposure(args.host, token)  # before the (slow) policy load
    if bool(args.tls_cert) != bool(args.tls_key):
        raise InvalidInputError("TLS needs both --tls-cert and --tls-key")
    ssl_context = None
    if args.tls_cert:
        import ssl

        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(args.tls_cert, args.tls_key)
    overrides = parse_overrides(args.policy_override)
    info = inspect_checkpoint(args.checkpoint, overrides)
    policy = load_policy(info.directory, device="cpu", overrides=overrides)
    server = PolicyServer(policy, metadata_of(policy, info.weights_digest(), policy.dataset), token)

    def ready(port: int) -> None:
        scheme = "wss" if ssl_context else "ws"
        print(
            f"serving {server.metadata.checkpoint} at {scheme}://{args.host}:{port} (Ctrl-C stops)",
            flush=True,
        )

    try:
        asyncio.run(server.serve(args.host, args.port, ssl=ssl_context, ready=ready))
    except OSError as exc:
        raise InvalidInputError(f"cannot listen on {args.host}:{args.port}: {exc}") from None
    return 0
