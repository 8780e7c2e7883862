"""The policy server and client: the same actions as in-process inference, validation of every request,
authentication, and a server that keeps answering whatever a client sends."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request

import msgpack
import numpy as np
import pytest
import torch
from fixtures import IMAGE_KEY, make_store
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from visuomotor.cli import main
from visuomotor.datasets.stats import compute_stats
from visuomotor.policies import get_policy_entry, make_config
from visuomotor.real_robot.remote import PolicyClient, ProtocolError, RemotePolicy, RemotePolicyError
from visuomotor.real_robot.remote.protocol import check_observation, decode_array, encode_array, pack, unpack
from visuomotor.real_robot.remote.server import PolicyServer, check_exposure, metadata_of

TOKEN = "a-long-enough-test-token"


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    """A small CARP image policy (greedy decoding: deterministic, so remote and local must agree)."""
    path = tmp_path_factory.mktemp("store") / "s.zarr"
    store, _ = make_store(
        path, episodes=3, lengths=[20, 24, 18], image_hw=16, tasks=["reach", "push", "reach"]
    )
    compute_stats(store)
    keys = ["observation.state", IMAGE_KEY]
    config = make_config(
        "carp",
        "cpu",
        image_keys=(IMAGE_KEY,),
        input_shapes={k: list(store.shape(k)) for k in keys},
        action_dim=store.shape("action")[0],
        tasks=store.tasks,
    )
    stats = {k: store.attrs["stats"][k] for k in [*keys, "action"]}
    policy = get_policy_entry("carp").load()[0](config, stats).eval()
    return policy, metadata_of(policy, hashlib.sha256(b"weights").hexdigest())


def window(meta, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for key, spec in meta.inputs.items():
        if spec["dtype"] == "uint8":
            out[key] = rng.integers(0, 256, spec["shape"], dtype=np.uint8)
        else:
            out[key] = rng.uniform(0.5, 2.0, spec["shape"]).astype(np.float32)
    return out


def test_arrays_round_trip_and_malformed_arrays_are_named():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert np.array_equal(decode_array(encode_array(a), "x"), a)
    wire = encode_array(a)
    with pytest.raises(ProtocolError, match=r"x: 44 bytes of data for float32 \[3, 4\], expected 48"):
        decode_array(wire | {"data": wire["data"][:-4]}, "x")
    with pytest.raises(ProtocolError, match="x: dtype must be float32 or uint8, got 'object'"):
        decode_array(wire | {"dtype": "object"}, "x")
    with pytest.raises(ProtocolError, match="shape must be a list"):
        decode_array(wire | {"shape": [3, -4]}, "x")
    with pytest.raises(ProtocolError, match="arrays on the wire"):
        encode_array(np.zeros(2, np.float64))


def test_messages_are_plain_msgpack_maps_within_the_size_limit():
    assert unpack(pack({"type": "reset", "id": 3}), 100) == {"type": "reset", "id": 3}
    with pytest.raises(ProtocolError, match="extension type 42"):
        unpack(msgpack.packb({"type": msgpack.ExtType(42, b"x")}), 100)
    with pytest.raises(ProtocolError, match="exceeds the limit of 10"):
        unpack(pack({"type": "reset", "pad": "x" * 20}), 10)
    with pytest.raises(ProtocolError, match="text frame"):
        unpack("hello", 100)
    with pytest.raises(ProtocolError, match="not a msgpack message"):
        unpack(b"\xc1", 100)
    with pytest.raises(ProtocolError, match="a map with a string 'type'"):
        unpack(pack([1, 2]), 100)


def test_observations_are_checked_key_by_key_against_the_metadata(policy):
    _, meta = policy
    good = {k: encode_array(v) for k, v in window(meta).items()}
    obs, task = check_observation({"observation": good, "task": "push"}, meta)
    assert set(obs) == set(meta.inputs) and task == "push"
    state = window(meta)["observation.state"]
    with pytest.raises(
        ProtocolError, match=r"'observation.state': expected float32 \[2, 4\], got float32 \[2, 3\]"
    ):
        check_observation({"observation": good | {"observation.state": encode_array(state[:, :3])}}, meta)
    nan = state.copy()
    nan[0, 0] = np.nan
    with pytest.raises(ProtocolError, match=r"'observation\.state': holds NaN"):
        check_observation(
            {"observation": good | {"observation.state": encode_array(nan)}, "task": "push"}, meta
        )
    with pytest.raises(ProtocolError, match=rf"missing \['{IMAGE_KEY}'\], unexpected \['extra'\]"):
        check_observation({"observation": {"observation.state": good["observation.state"], "extra": 1}}, meta)
    with pytest.raises(ProtocolError, match="'task' must be one of the policy's 2 tasks, got 'fly'"):
        check_observation({"observation": good, "task": "fly"}, meta)


def test_remote_actions_equal_in_process_inference(policy):
    model, meta = policy
    server = PolicyServer(model, meta)
    with server.serve_in_background() as url, PolicyClient(url) as client:
        assert client.metadata == meta
        w = window(meta)
        chunk = client.infer(w, task="push")
        local = model.predict_action_chunk(
            {k: torch.from_numpy(v)[None] for k, v in w.items()} | {"task": ["push"]}
        )
        expected = local[0, meta.n_obs_steps - 1 :].numpy()
        assert chunk.actions.shape == (meta.n_actions, meta.action_dim)
        np.testing.assert_allclose(chunk.actions, expected, rtol=1e-5, atol=1e-6)
        assert 0 < chunk.inference_ms < chunk.round_trip_ms
        # One frame at a time through RemotePolicy: the same actions as the local policy's select_action.
        remote, frames = RemotePolicy(client), [window(meta, seed=s) for s in range(5)]
        model.reset()
        for f in frames:
            frame = {k: v[-1] for k, v in f.items()}
            mine = remote.select_action(frame | {"task": "reach"})
            theirs = model.select_action(
                {k: torch.from_numpy(v)[None] for k, v in frame.items()} | {"task": ["reach"]}
            )
            np.testing.assert_allclose(mine, theirs[0].numpy(), rtol=1e-5, atol=1e-6)


def test_bad_requests_get_error_replies_and_the_server_keeps_answering(policy):
    model, meta = policy
    server = PolicyServer(model, meta)
    with server.serve_in_background() as url:
        with connect(url) as raw:
            unpack(raw.recv(5), 1 << 20)  # metadata
            errors = []
            for junk in (b"\x00garbage", pack({"type": "fly", "id": 1}), pack({"type": "infer", "id": 2})):
                raw.send(junk)
                reply = unpack(raw.recv(5), 1 << 20)
                assert reply["type"] == "error"
                errors.append(reply["error"])
            assert "not a msgpack message" in errors[0] or "a map with a string 'type'" in errors[0]
            assert "unknown message type 'fly'" in errors[1]
            assert "'observation' must be a map" in errors[2]
        with PolicyClient(url) as client:
            with pytest.raises(RemotePolicyError, match="'task' must be one of"):
                client.infer(window(meta), task="fly")
            assert client.infer(window(meta), task="push").actions.shape == (meta.n_actions, meta.action_dim)
            client.reset()
        health = json.loads(
            urllib.request.urlopen(url.replace("ws://", "http://") + "/health", timeout=5).read()
        )
        assert health["status"] == "ok" and health["errors"] == 4 and health["checkpoint"] == meta.checkpoint


def test_an_idle_or_slow_client_does_not_stall_the_others(policy):
    model, meta = policy
    server = PolicyServer(model, meta)
    with server.serve_in_background() as url, connect(url) as idle, connect(url) as unread:
        unread.send(pack({"type": "infer", "id": 1, "task": "push", "observation": {}}))  # reply never read
        with PolicyClient(url, timeout=10) as client:
            for _ in range(3):
                client.infer(window(meta), task="push")
        assert idle.protocol.state.name == "OPEN"


def test_a_token_is_required_when_set_and_compared_exactly(policy):
    model, meta = policy
    server = PolicyServer(model, meta, token=TOKEN)
    with server.serve_in_background() as url:
        for token in (None, "wrong-token-of-some-length", TOKEN + "x"):
            with pytest.raises(RemotePolicyError, match="refused the connection: missing or wrong token"):
                PolicyClient(url, token=token)
        with PolicyClient(url, token=TOKEN) as client:
            assert client.infer(window(meta), task="push").actions.shape[0] == meta.n_actions
        with pytest.raises(urllib.error.HTTPError, match="401"):
            urllib.request.urlopen(url.replace("ws://", "http://") + "/", timeout=5)
        assert server.counts["refused"] >= 3


def test_listening_beyond_localhost_needs_a_token(tmp_path, capsys):
    check_exposure("127.0.0.1", None)
    check_exposure("::1", None)
    with pytest.raises(ValueError, match=r"refusing to listen on 0\.0\.0\.0 without a token"):
        check_exposure("0.0.0.0", None)
    with pytest.raises(ValueError, match="at least 16 characters"):
        check_exposure("0.0.0.0", "short")
    check_exposure("0.0.0.0", TOKEN)
    # The CLI refuses before it loads anything (the checkpoint does not even exist).
    assert main(["serve", "--checkpoint", str(tmp_path / "none"), "--host", "0.0.0.0"]) == 2
    assert "refusing to listen on 0.0.0.0 without a token" in capsys.readouterr().err
    (tmp_path / "token").write_text("\n")
    assert main(["serve", "--checkpoint", str(tmp_path), "--token-file", str(tmp_path / "token")]) == 2
    assert "the file is empty" in capsys.readouterr().err


def test_a_client_whose_server_is_gone_gets_a_clear_error(policy):
    model, meta = policy
    server = PolicyServer(model, meta)
    with server.serve_in_background() as url:
        client = PolicyClient(url, timeout=5)
    with pytest.raises(ConnectionError, match="went away"):
        client.infer(window(meta), task="push")
    with pytest.raises(ConnectionError, match="no policy server at"):
        PolicyClient(url, timeout=2)


def test_fuzzed_messages_are_all_refused_and_the_server_keeps_answering(policy):
    import random

    from visuomotor.eval.bench.server import _mutations

    model, meta = policy
    valid = {
        "type": "infer",
        "id": 1,
        "task": "push",
        "observation": {k: encode_array(v) for k, v in window(meta).items()},
    }
    server = PolicyServer(model, meta)
    rng, replies, closed = random.Random(0), [], 0
    kinds = set()
    with server.serve_in_background() as url, PolicyClient(url) as client:
        raw = connect(url, max_size=None)
        unpack(raw.recv(5), 1 << 20)
        for _ in range(300):
            kind, data = _mutations(valid, meta, rng)
            kinds.add(kind)
            raw.send(data)
            try:
                replies.append((kind, unpack(raw.recv(5), 1 << 20)))
            except ConnectionClosed:  # over the size limit
                closed += 1
                raw = connect(url, max_size=None)
                unpack(raw.recv(5), 1 << 20)
        raw.close()
        assert client.infer(window(meta), task="push").actions.shape == (meta.n_actions, meta.action_dim)
    assert len(replies) + closed == 300 and closed > 0 and len(kinds) == 9
    # A flipped byte inside the data can leave a valid request; every other kind is invalid by construction.
    assert all(r["type"] == "error" for kind, r in replies if kind != "bytes_flipped")
