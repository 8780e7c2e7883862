"""`visuomotor bench server`: the policy server's round trip against in-process inference, with 4 clients
at once, and a fuzzing run against a live `visuomotor serve` process.

Latency: a Diffusion Policy (`cpu` preset, DDIM-10) for MT10 from state (39-d) and from one 64x64
camera plus the 4-d proprio state (the shapes of `bench latency`) is saved as a checkpoint and served by
`visuomotor serve` in its own process on 127.0.0.1. The same requests go to the in-process policy and
to the server, interleaved, so noise hits both alike; then 4 client threads send at once. p50/p99 in ms.

Fuzzing: the image policy's server (with one denoising step, so that the run's time goes to the
server's checks rather than to inference), with a token, gets malformed messages from an authenticated client:
random bytes, valid requests truncated or with bytes flipped, wrong types in every field, wrong dtypes,
shapes, byte counts and NaNs, unknown keys and types, and messages over the size limit; plus handshakes
without or with a wrong token. Counted: replies that were not errors (an accepted malformed request),
connections accepted without the token, hangs (no reply within 10 s) and whether the server process is
still alive; after every 1,000 messages a valid client must still get its actions.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

TOKEN = "bench-server-token-0123456789"
HANG_S = 10.0


def _policy(image: bool):
    from visuomotor.eval.bench.latency import build

    return build("diffusion", {"sampler": "ddim", "num_inference_steps": 10}, image=image)


def _start_server(
    checkpoint: Path, token_file: Path | None, overrides: tuple[str, ...] = ()
) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "visuomotor.cli", "serve", "--checkpoint", str(checkpoint), "--port", "0"]
    if token_file is not None:
        cmd += ["--token-file", str(token_file)]
    for override in overrides:
        cmd += ["-o", override]
    log_path = (
        checkpoint.parent / f"{checkpoint.name}.serve.log"
    )  # a file: a full pipe would block the server
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=log_file, text=True, env=os.environ.copy()
        )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "serving ... at ws://127.0.0.1:PORT (Ctrl-C stops)"
    if " at ws://" not in line:
        proc.kill()
        raise RuntimeError(f"visuomotor serve did not start: {line}{log_path.read_text()[-2000:]}")
    return proc, line.split(" at ")[1].split()[0]


def _window(meta: Any, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        k: rng.integers(0, 256, s["shape"], dtype=np.uint8)
        if s["dtype"] == "uint8"
        else rng.normal(size=s["shape"]).astype(np.float32)
        for k, s in meta.inputs.items()
    }


def _percentiles(ms: list[float]) -> dict[str, float]:
    s = sorted(ms)
    return {"p50": statistics.median(s), "p99": s[min(len(s) - 1, int(0.99 * len(s)))], "n": len(s)}


def _latency(policy: Any, url: str, requests: int) -> dict[str, Any]:
    import torch

    from visuomotor.real_robot.remote import PolicyClient

    rng = np.random.default_rng(0)
    local, remote, server_ms = [], [], []
    with PolicyClient(url) as client:
        meta = client.metadata
        task = meta.tasks[0]
        for i in range(requests + 3):
            w = _window(meta, rng)
            t0 = time.perf_counter()
            with torch.inference_mode():
                policy.predict_action_chunk(
                    {k: torch.from_numpy(v)[None] for k, v in w.items()} | {"task": [task]}
                )
            t1 = time.perf_counter()
            chunk = client.infer(w, task)
            if i >= 3:  # warm-up
                local.append((t1 - t0) * 1e3)
                remote.append(chunk.round_trip_ms)
                server_ms.append(chunk.inference_ms)
    return {
        "in_process_ms": _percentiles(local),
        "round_trip_ms": _percentiles(remote),
        "server_inference_ms": _percentiles(server_ms),
    }


def _concurrent(url: str, clients: int, requests: int) -> dict[str, Any]:
    from visuomotor.real_robot.remote import PolicyClient

    times: list[float] = []
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        with PolicyClient(url) as client:
            for _ in range(requests):
                chunk = client.infer(_window(client.metadata, rng), client.metadata.tasks[0])
                with lock:
                    times.append(chunk.round_trip_ms)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(s,)) for s in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"clients": clients, "round_trip_ms": _percentiles(times), "requests_per_s": len(times) / wall}


# ---------------------------------------------------------------------------------------------- fuzzing
KINDS = (
    "random_bytes",
    "truncated",
    "bytes_flipped",
    "field_wrong_type",
    "array_field_wrong_type",
    "array_inconsistent",
    "non_finite",
    "unknown_key_or_type",
    "oversized",
)
"""Kinds of malformed message. Every kind but `bytes_flipped` is invalid by construction; a flipped
byte inside an image's or a state's data leaves a valid request (another image), so that kind may be
answered with actions."""


def _mutations(valid: dict[str, Any], meta: Any, rng: random.Random) -> tuple[str, bytes]:
    """One malformed message (its kind, its bytes), of a randomly chosen kind."""
    kind = rng.randrange(len(KINDS))
    return KINDS[kind], _mutate(kind, valid, meta, rng)


def _mutate(kind: int, valid: dict[str, Any], meta: Any, rng: random.Random) -> bytes:
    from visuomotor.real_robot.remote.protocol import pack

    good = pack(valid)
    key = rng.choice(list(meta.inputs))
    junk_values: list[Any] = [
        None,
        True,
        -1,
        2**63,
        1.5,
        "x",
        b"\x00",
        [],
        {},
        [1, "a"],
        {"a": 1},
        float("nan"),
    ]
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 200))
    if kind == 1:
        return good[: rng.randrange(1, len(good))]
    if kind == 2:
        b = bytearray(good)
        for _ in range(rng.randrange(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    msg = json.loads(json.dumps({k: v for k, v in valid.items() if k != "observation"}))
    msg["observation"] = {k: dict(v) for k, v in valid["observation"].items()}
    if kind == 3:
        msg[rng.choice(["type", "id", "task", "observation"])] = rng.choice(junk_values)
    elif kind == 4:
        msg["observation"][key][rng.choice(["dtype", "shape", "data"])] = rng.choice(junk_values)
    elif kind == 5:
        arr = msg["observation"][key]
        choice = rng.randrange(4)
        if choice == 0:
            arr["dtype"] = rng.choice(["float64", "int64", "object", "<U4", "uint16"])
        elif choice == 1:
            arr["shape"] = [d + rng.choice([-1, 1]) for d in arr["shape"]]
        elif choice == 2:
            arr["data"] = arr["data"][: -rng.randrange(1, 5)]
        else:
            shape = meta.inputs[key]["shape"]
            arr["shape"], arr["data"] = [*shape, 1], arr["data"]  # an extra axis, same bytes
    elif kind == 6:
        if meta.inputs[key]["dtype"] != "float32":
            key = next(k for k, s in meta.inputs.items() if s["dtype"] == "float32")
        values = np.frombuffer(msg["observation"][key]["data"], np.float32).copy()
        values[rng.randrange(values.size)] = rng.choice([np.nan, np.inf, -np.inf])
        msg["observation"][key]["data"] = values.tobytes()
    elif kind == 7:
        if rng.random() < 0.5:
            msg["observation"]["observation.unknown"] = msg["observation"].pop(key)
        else:
            msg["type"] = rng.choice(["infer2", "", "eval", "__import__", "x" * 1000])
    else:
        msg["observation"][key]["data"] = b"\x00" * (meta.request_bytes() + 1)  # over the size limit
    return pack(msg)


def _fuzz(url: str, proc: subprocess.Popen, messages: int, handshakes: int) -> dict[str, Any]:
    from websockets.exceptions import ConnectionClosed, InvalidStatus
    from websockets.sync.client import connect

    from visuomotor.real_robot.remote import PolicyClient
    from visuomotor.real_robot.remote.protocol import encode_array, unpack

    headers = {"Authorization": f"Bearer {TOKEN}"}
    rng, nprng = random.Random(0), np.random.default_rng(0)
    probe = PolicyClient(url, token=TOKEN)
    meta = probe.metadata
    valid = {
        "type": "infer",
        "id": 1,
        "task": meta.tasks[0],
        "observation": {k: encode_array(v) for k, v in _window(meta, nprng).items()},
    }
    counts: dict[str, Any] = {"messages": 0, "closed_by_server": 0, "hangs": 0}
    counts |= {"valid_checks": 0, "valid_failures": 0}
    replies = {kind: {"error": 0, "actions": 0} for kind in KINDS}
    ws = connect(url, additional_headers=headers, max_size=None, compression=None)
    unpack(ws.recv(HANG_S), 1 << 24)
    t0 = time.perf_counter()
    while counts["messages"] < messages:
        kind, data = _mutations(valid, meta, rng)
        counts["messages"] += 1
        try:
            ws.send(data)
            reply = unpack(ws.recv(HANG_S), 1 << 24)
            replies[kind]["error" if reply["type"] == "error" else "actions"] += 1
        except TimeoutError:
            counts["hangs"] += 1
        except ConnectionClosed:  # over the size limit: the server closes this connection; reconnect
            counts["closed_by_server"] += 1
            ws = connect(url, additional_headers=headers, max_size=None, compression=None)
            unpack(ws.recv(HANG_S), 1 << 24)
        if counts["messages"] % 1000 == 0:
            counts["valid_checks"] += 1
            try:
                probe.infer(_window(meta, nprng), meta.tasks[0])
            except Exception:
                counts["valid_failures"] += 1
    fuzz_s = time.perf_counter() - t0
    ws.close()
    unauthenticated = {"attempts": 0, "accepted": 0}
    for i in range(handshakes):
        token = [None, "wrong", TOKEN[:-1], TOKEN + "x", TOKEN.upper()][i % 5]
        unauthenticated["attempts"] += 1
        try:
            connect(url, additional_headers={"Authorization": f"Bearer {token}"} if token else None).close()
            unauthenticated["accepted"] += 1
        except InvalidStatus:
            pass
    probe.infer(_window(meta, nprng), meta.tasks[0])  # still answering
    probe.close()
    invalid_accepted = sum(r["actions"] for kind, r in replies.items() if kind != "bytes_flipped")
    return counts | {
        "replies_by_kind": replies,
        "invalid_by_construction_accepted": invalid_accepted,
        "seconds": fuzz_s,
        "unauthenticated": unauthenticated,
        "server_alive": proc.poll() is None,
    }


def run_benchmark(json_path: str | None, quick: bool = False) -> dict[str, Any]:
    requests, clients_requests = (5, 3) if quick else (200, 50)
    messages, handshakes = (2000, 50) if quick else (100_000, 2000)
    out: dict[str, Any] = {"benchmark": "server", "date": time.strftime("%Y-%m-%d"), "quick": quick}
    with tempfile.TemporaryDirectory(prefix="bench_server_") as tmp:
        token_file = Path(tmp) / "token"
        token_file.write_text(TOKEN)
        for name, image in (("state", False), ("image", True)):
            policy = _policy(image)
            policy.save_pretrained(Path(tmp) / name)
            proc, url = _start_server(Path(tmp) / name, None)
            try:
                out[name] = _latency(policy, url, requests)
                if image:
                    out[f"{name}_4_clients"] = _concurrent(url, 4, clients_requests)
            finally:
                proc.terminate()
                proc.wait(10)
        # One denoising step: the fuzz run measures the server's checks, not the policy's speed.
        proc, url = _start_server(Path(tmp) / "image", token_file, ("num_inference_steps=1",))
        try:
            out["fuzz"] = _fuzz(url, proc, messages, handshakes)
        finally:
            proc.terminate()
            proc.wait(10)
    if json_path:
        Path(json_path).write_text(json.dumps(out, indent=2))
    return out
