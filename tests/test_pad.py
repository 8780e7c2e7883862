"""PAD's own behaviour: image tokens never see action tokens, one timestep noises both modalities, the
future frames of a window (the last one repeated past an episode's end), action-free windows train the
image branch only, the ablation without image prediction, and clear errors for bad settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fixtures import IMAGE_KEY, make_store

from visuomotor.datasets.sampler import SequenceSampler
from visuomotor.datasets.stats import compute_stats
from visuomotor.policies import get_policy_entry, make_config
from visuomotor.policies.pad.model import PadDiT

# Pixels, one action token: the mechanics under test; the cpu preset's own latents and per-step tokens
# are tested where named.
TINY = {
    "hidden_dim": 32,
    "depth": 2,
    "num_heads": 2,
    "patch_size": 8,
    "horizon": 8,
    "future_offsets": (2, 4),
    "autoencoder_steps": 0,
    "action_tokens": "one",
}
KEYS = ["observation.state", IMAGE_KEY]
TINY_LATENTS = {k: str(v) for k, v in TINY.items()} | {
    "future_offsets": "[2, 4]",
    "image_keys": f'["{IMAGE_KEY}"]',
    "patch_size": "4",
    "autoencoder_steps": "2",
    "autoencoder_factor": "2",
    "autoencoder_width": "8",
}
"""`train` overrides (strings, as the command line gives them): TINY on a 2-step frame autoencoder's latents."""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store, _ = make_store(
        tmp_path_factory.mktemp("pad") / "s.zarr", episodes=2, lengths=[12, 10], image_hw=16, tasks=["a", "b"]
    )
    compute_stats(store)
    return store


def build(store, **fields):
    config = make_config(
        "pad",
        "cpu",
        image_keys=(IMAGE_KEY,),
        input_shapes={k: list(store.shape(k)) for k in KEYS},
        action_dim=store.shape("action")[0],
        tasks=store.tasks,
        **{**TINY, **fields},
    )
    return get_policy_entry("pad").load()[0](config, {k: store.attrs["stats"][k] for k in [*KEYS, "action"]})


def batch(policy, store, idx):
    sample = SequenceSampler(store, policy.config.window_spec()).sample(np.asarray(idx))
    return {k: torch.from_numpy(v) for k, v in sample.items()}


@pytest.mark.parametrize("groups", [1, 2])
def test_image_tokens_never_see_the_action_tokens(groups):
    torch.manual_seed(0)
    net = PadDiT(image_hw=(16, 16), in_channels=9, out_channels=6, patch=8, action_in=5, action_out=4,
                 n_action_tokens=2, dim=32, depth=2, heads=2, groups=groups)  # fmt: skip
    for p in net.parameters():  # away from adaLN-Zero's identity start, so every path carries signal
        torch.nn.init.normal_(p, std=0.2)
    images, actions = torch.randn(2, groups, 9, 16, 16), torch.randn(2, 2, 5)
    t, cond = torch.tensor([3, 7]), torch.randn(2, 32)
    eps_images, eps_actions = net(images, actions, t, cond)
    other_images, other_actions = net(images, actions + 5.0, t, cond)
    assert torch.equal(eps_images, other_images)  # changing the actions leaves the image prediction alone
    assert not torch.allclose(eps_actions, other_actions)
    _, seen = net(images + 1.0, actions, t, cond)
    assert not torch.allclose(eps_actions, seen)  # ... while the actions see the images


def test_one_timestep_noises_the_future_frames_and_the_actions(store):
    policy = build(store).train()
    steps = []
    add_noise = policy.train_scheduler.add_noise
    policy.train_scheduler.add_noise = lambda x, n, t: steps.append(t.clone()) or add_noise(x, n, t)
    policy.compute_loss(batch(policy, store, [0, 1, 2, 3]))
    assert len(steps) == 2 and torch.equal(steps[0], steps[1])


def test_future_frames_are_channel_stacked_and_repeat_the_last_frame_past_the_episode_end(store):
    policy = build(store, future_offsets=(2, 4, 6))
    assert policy.config.window_spec().key_offsets == {IMAGE_KEY: (0, 2, 4, 6)}
    first_episode = store.episode(0)[IMAGE_KEY]  # 12 frames
    windows = SequenceSampler(store, policy.config.window_spec())
    anchors = [i for i in range(len(windows)) if windows.sample(np.array([i]))["frame_index"][0] == 9]
    sample = batch(policy, store, anchors[:1])
    frames = sample[IMAGE_KEY][0].numpy()  # frames 9, 11, then 13 and 15 past the end: frame 11 again
    for got, want in zip(frames, [9, 11, 11, 11], strict=True):
        assert np.array_equal(got, first_episode[want])
    stacked = policy.frames(sample, 4)
    assert stacked.shape == (1, 4, 3, 16, 16) and stacked.min() >= -1 and stacked.max() <= 1
    assert stacked[:, 1:].flatten(1, 2).shape == (1, 9, 16, 16)  # the future frames on channels


def test_action_free_windows_train_the_image_branch_only(store):
    torch.manual_seed(0)
    policy = build(store).train()
    data = batch(policy, store, [0, 1, 2, 3])
    data["action_mask"] = torch.zeros(4)
    loss, logs = policy.compute_loss(data)
    loss.backward()
    assert logs["action_loss"] == 0.0 and logs["image_loss"] > 0
    action_head = policy.net.action_head.linear.weight.grad
    image_head = policy.net.image_head.linear.weight.grad
    assert action_head is None or action_head.abs().sum() == 0
    assert image_head.abs().sum() > 0
    # In a mixed batch the masked windows' actions do not count: change them and the loss stays.
    half = dict(data, action_mask=torch.tensor([1.0, 1.0, 0.0, 0.0]))
    losses = []
    for shift in ((0.0, 0.0), (0.0, 9.0), (9.0, 0.0)):  # added to windows (0-1, 2-3)'s actions
        actions = data["action"].clone()
        actions[:2] += shift[0]
        actions[2:] += shift[1]
        torch.manual_seed(1)
        losses.append(policy.compute_loss(dict(half, action=actions))[1]["action_loss"])
    assert losses[1] == losses[0] and losses[2] != losses[0]


def test_the_ablation_has_no_image_branch(store):
    policy = build(store, predict_images=False)
    assert policy.net.image_head is None
    _, logs = policy.compute_loss(batch(policy, store, [0, 1]))
    assert "image_loss" not in logs
    policy.eval()
    data = batch(policy, store, [0])
    chunk = policy.predict_action_chunk({k: data[k][:, :1] for k in KEYS} | {"task": ["a"]})
    assert chunk.shape == (1, 8, 2) and policy.predicted_frames is None and policy.policy_view(None) is None


def test_predicted_frames_come_out_as_images_for_videos(store):
    policy = build(store).eval()
    assert (policy.policy_view(None) == 128).all() and policy.policy_view(None).shape == (16, 32, 3)
    data = batch(policy, store, [0])
    policy.predict_action_chunk({k: data[k][:, :1] for k in KEYS} | {"task": ["a"]})
    assert policy.predicted_frames.shape == (1, 2, 1, 16, 16, 3) and policy.predicted_frames.dtype == np.uint8
    assert policy.policy_view(None).shape == (16, 32, 3)  # t+2 and t+4 side by side
    policy.reset()  # a new episode: no prediction yet
    assert policy.predicted_frames is None


def test_bad_settings_are_named(store):
    with pytest.raises(ValueError, match=r"future_offsets \(4, 8, 16\) run past the action chunk"):
        build(store, horizon=12, future_offsets=(4, 8, 16))
    with pytest.raises(ValueError, match="PAD predicts camera frames: it needs at least one camera"):
        make_config("pad", "cpu", input_shapes={"observation.state": [4]}, action_dim=2).validate_inputs()
    with pytest.raises(ValueError, match="not divisible by patch_size 6"):
        build(store, patch_size=6)
    policy = build(store).eval()
    with pytest.raises(KeyError, match=f"missing '{IMAGE_KEY}'"):
        policy.predict_action_chunk({"observation.state": torch.zeros(1, 1, 4), "task": ["a"]})


def test_the_paper_preset_is_the_dit_xl_network():
    config = make_config("pad", "paper", image_keys=(IMAGE_KEY,), action_dim=4,
                         input_shapes={"observation.state": [4], IMAGE_KEY: [64, 64, 3]}, tasks=["a", "b"])  # fmt: skip
    with torch.device("meta"):  # sizes only: no memory, no time
        policy = get_policy_entry("pad").load()[0](config)
    params = sum(p.numel() for p in policy.parameters())
    assert len(policy.net.blocks) == 28 and policy.config.hidden_dim == 1152
    assert 670e6 < params < 685e6  # the notes count 677.4M for PAD's XL/2
    assert policy.net.grid == (16, 16)  # 256 image tokens, as XL/2 on 32x32 latents


def video_store(path, tasks=("c",), with_state=False, camera=IMAGE_KEY):
    """Action-free episodes: frames (and optionally the state), no actions."""
    from visuomotor.datasets import EpisodeStore

    store = EpisodeStore.create(path, fps=10)
    rng = np.random.default_rng(5)
    for task in tasks:
        data = {camera: rng.integers(1, 256, (14, 16, 16, 3), dtype=np.uint8)}
        if with_state:
            data["observation.state"] = rng.normal(size=(14, 4)).astype(np.float32)
        store.append_episode(data, task=task)
    return path


def test_video_windows_join_the_batch_with_their_action_loss_masked(store, tmp_path):
    from visuomotor.video_data import mix_video, open_video

    policy_config = build(store).config
    video = open_video(policy_config, str(video_store(tmp_path / "v.zarr")), resume=False)
    assert policy_config.tasks == ["a", "b", "c"] and video.state_keys == ("observation.state",)
    robot = SequenceSampler(store, policy_config.window_spec()).sample(np.arange(3))
    mixed = mix_video(robot, video.sampler.sample(np.arange(2)), video)
    assert mixed["action_mask"].tolist() == [1, 1, 1, 0, 0]
    assert mixed["task_index"][3:].tolist() == [2, 2]  # task "c" in the run's vocabulary
    assert (mixed["action"][3:] == 0).all() and (mixed["observation.state"][3:] == 0).all()
    assert mixed[IMAGE_KEY].shape == (5, 3, 16, 16, 3) and (mixed[IMAGE_KEY][3:] > 0).all()
    with pytest.raises(ValueError, match=r"no camera 'observation\.images\.top'"):
        open_video(
            build(store).config,
            str(video_store(tmp_path / "side.zarr", camera="observation.images.side")),
            False,
        )


def test_training_with_video_data_and_its_bad_inputs(store, tmp_path):
    from visuomotor.train import train

    video = str(video_store(tmp_path / "v.zarr", with_state=True))
    over = {k: str(v) for k, v in TINY.items()} | {
        "future_offsets": "[2, 4]",
        "image_keys": f'["{IMAGE_KEY}"]',
    }
    fast = {"steps": "2", "batch_size": "4", "video_data": video, "warmup_steps": "1"}
    common = {"preset": "cpu", "progress": False, "train_overrides": fast}
    summary = train("pad", store.path, tmp_path / "run", policy_overrides=over, **common)
    assert summary["steps"] == 2
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    psnr = [m for m in metrics if "frame_psnr" in m]  # predicted vs real future frames, at the checkpoint
    assert len(psnr) == 1 and 0 < psnr[0]["frame_psnr"] < 60
    assert len(list((tmp_path / "run" / "pictures").glob("step_*.png"))) == 1
    saved = json.loads((tmp_path / "run" / "run.json").read_text())
    assert saved["train_config"]["video_data"] == video and saved["policy_config"]["tasks"] == ["a", "b", "c"]
    cameras = {"image_keys": f'["{IMAGE_KEY}"]'}
    with pytest.raises(ValueError, match="a DiffusionConfig has nothing to learn from action-free video"):
        train("diffusion", store.path, tmp_path / "dp", policy_overrides=cameras, **common)
    with pytest.raises(ValueError, match="the store holds no actions"):
        train("pad", video, tmp_path / "only_video", policy_overrides=over, **common)


def tiny_vae(path):
    """A two-block AutoencoderKL (frames 2x smaller per side, 4 latent channels) saved as a user's local
    VAE directory is: config.json + safetensors weights."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=16,
    )
    vae.save_pretrained(path, safe_serialization=True)
    return vae.eval()


def test_the_image_branch_works_on_the_latents_of_a_local_vae(store, tmp_path):
    from visuomotor.policies import load_policy

    vae = tiny_vae(tmp_path / "vae")
    policy = build(store, vae_path=str(tmp_path / "vae"), patch_size=2)
    assert policy.net.grid == (4, 4)  # 16 px frames -> 8x8 latents -> patches of 2
    assert policy.net.patch_embed.in_channels == 4 * 3  # t+2 and t+4 latents stacked on the current one
    data = batch(policy, store, [0, 1, 2, 3])
    policy.eval()
    latents = policy.frames(data, 3)
    want = vae.encode(data[IMAGE_KEY][:, :3].flatten(0, 1).permute(0, 3, 1, 2).float() / 127.5 - 1)
    assert torch.allclose(
        latents.flatten(0, 1), want.latent_dist.mode() * vae.config.scaling_factor, atol=1e-5
    )
    policy.train()
    loss, logs = policy.compute_loss(data)
    loss.backward()
    assert torch.isfinite(loss) and logs["image_loss"] > 0
    # The frozen VAE is not the policy's: not trained, not saved.
    vae_params = {id(p) for p in policy.space.vae.parameters()}
    assert not vae_params & {id(p) for p in policy.parameters()}
    assert all(p.grad is None for p in policy.space.vae.parameters())
    policy.eval()
    obs = {k: data[k][:1, :1] for k in KEYS} | {"task": ["a"]}
    chunk = policy.predict_action_chunk(obs, generator=torch.Generator().manual_seed(3))
    assert policy.predicted_frames.shape == (1, 2, 1, 16, 16, 3)  # decoded back to the camera's pixels
    policy.save_pretrained(tmp_path / "ckpt")
    loaded = load_policy(tmp_path / "ckpt")  # finds the VAE again at vae_path
    assert loaded.state_dict().keys() == policy.state_dict().keys()
    again = loaded.predict_action_chunk(obs, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(chunk, again, atol=1e-5)
    assert np.array_equal(loaded.predicted_frames, policy.predicted_frames)


def test_a_vae_path_that_does_not_fit_is_named(store, tmp_path):
    with pytest.raises(ValueError, match=r"vae_path '.*nowhere' has no config\.json"):
        build(store, vae_path=str(tmp_path / "nowhere"))
    tiny_vae(tmp_path / "vae")
    with pytest.raises(
        ValueError, match=r"frames 16x16 do not fit the VAE .*8x8\) cut into patches of patch_size 3"
    ):
        build(store, vae_path=str(tmp_path / "vae"), patch_size=3)
    other = tmp_path / "unet"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    with pytest.raises(ValueError, match="holds a 'UNet2DModel', not an AutoencoderKL"):
        build(store, vae_path=str(other))
    (tmp_path / "vae" / "diffusion_pytorch_model.safetensors").unlink()  # weights only as a pickle: refused
    torch.save({}, tmp_path / "vae" / "diffusion_pytorch_model.bin")
    with pytest.raises(ValueError, match="cannot load its AutoencoderKL weights"):
        build(store, vae_path=str(tmp_path / "vae"))


WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "open", "the", "drawer"]


def text_model(path, kind):
    """A tiny local Hugging Face text model directory with its tokenizer: a CLIP (projected text features),
    a BERT (pooled output) or a DistilBERT (no pooler: mean of the last hidden states)."""
    import transformers as tf

    path.mkdir()
    (path / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    tf.BertTokenizer(str(path / "vocab.txt")).save_pretrained(path)
    small = {"vocab_size": len(WORDS), "hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32}
    torch.manual_seed(0)
    if kind == "clip":
        text = small | {
            "num_hidden_layers": 1,
            "bos_token_id": 2,
            "eos_token_id": 3,
            "max_position_embeddings": 16,
        }
        vision = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
                  "image_size": 8, "patch_size": 4}  # fmt: skip
        model = tf.CLIPModel(tf.CLIPConfig(text_config=text, vision_config=vision, projection_dim=12))
    elif kind == "bert":
        model = tf.BertModel(tf.BertConfig(**small, num_hidden_layers=1))
    else:
        model = tf.DistilBertModel(
            tf.DistilBertConfig(vocab_size=len(WORDS), dim=16, n_layers=1, n_heads=2, hidden_dim=32)
        )
    model.save_pretrained(path)
    return str(path)


def test_tasks_can_be_conditioned_on_a_local_text_models_features(store, tmp_path):
    from visuomotor.policies import load_policy
    from visuomotor.policies.pad.text import encode_texts

    path = text_model(tmp_path / "clip", "clip")
    policy = build(store, text_encoder=path)
    assert policy.config.text_dim == 12  # CLIP's projection width, learned from the model
    assert torch.equal(policy.task_embed.features, encode_texts(path, ["a", "b"]))
    cond = policy.cond({"task": ["a", "b"]}, 2)
    assert not torch.allclose(cond[0], cond[1])
    for p in policy.net.parameters():  # away from adaLN-Zero's start, where the conditioning has no gradient
        torch.nn.init.normal_(p, std=0.05)
    loss, _ = policy.train().compute_loss(batch(policy, store, [0, 1, 2, 3]))
    loss.backward()
    assert policy.task_embed.project.weight.grad.abs().sum() > 0  # the map learns; the features are fixed
    policy.eval().save_pretrained(tmp_path / "ckpt")
    (tmp_path / "clip").rename(tmp_path / "gone")  # acting needs the features only, not the text model
    loaded = load_policy(tmp_path / "ckpt")
    assert torch.equal(loaded.task_embed.features, policy.task_embed.features)
    assert torch.equal(loaded.cond({"task": ["b"]}, 1), policy.cond({"task": ["b"]}, 1))


def test_text_features_from_pooled_or_mean_hidden_states(tmp_path):
    from transformers import AutoModel, AutoTokenizer

    from visuomotor.policies.pad.text import encode_texts

    texts = ["open the drawer", "a", "b b"]
    assert encode_texts(text_model(tmp_path / "bert", "bert"), texts).shape == (3, 16)
    path = text_model(tmp_path / "distil", "distilbert")
    tokens = AutoTokenizer.from_pretrained(path)(texts, padding=True, return_tensors="pt")
    hidden = AutoModel.from_pretrained(path)(**tokens).last_hidden_state  # padded: the mask must count
    mask = tokens["attention_mask"][..., None]
    assert torch.allclose(encode_texts(path, texts), (hidden * mask).sum(1) / mask.sum(1), atol=1e-6)


def test_a_text_encoder_that_does_not_fit_is_named(store, tmp_path):
    with pytest.raises(ValueError, match=r"text_encoder '.*nowhere' has no config\.json"):
        build(store, text_encoder=str(tmp_path / "nowhere"))
    policy = build(store, text_encoder=text_model(tmp_path / "bert", "bert"), text_dim=32)
    with pytest.raises(ValueError, match="gives 16-d features, text_dim is 32"):
        policy.prepare_training()


def test_the_frames_benchmark_scores_each_camera_and_offset_against_copying_the_current_frame(
    store, tmp_path
):
    from visuomotor.errors import InvalidInputError
    from visuomotor.eval.bench import frames

    build(store).save_pretrained(tmp_path / "pad")
    out = frames.run_benchmark(
        str(tmp_path / "f.json"), quick=True, store_path=store.path, checkpoint=str(tmp_path / "pad")
    )
    assert out["windows"] == frames.QUICK_WINDOWS and json.loads((tmp_path / "f.json").read_text()) == out
    assert list(out["psnr"]) == [IMAGE_KEY] and list(out["psnr"][IMAGE_KEY]) == ["t+2", "t+4"]
    # The baseline is the real future against the current frame of the same windows.
    sampler = SequenceSampler(store, build(store).config.window_spec())
    windows = sampler.sample(np.linspace(0, len(sampler) - 1, frames.QUICK_WINDOWS).astype(np.int64))[
        IMAGE_KEY
    ]
    from visuomotor.policies.pad.pictures import psnr

    assert out["psnr"][IMAGE_KEY]["t+4"]["copy_current_db"] == round(psnr(windows[:, 2], windows[:, 0]), 2)
    # A perfect prediction scores inf; copying scores what it scores.
    real = np.stack([windows[:, 1:]], axis=2)
    scored = frames.frame_psnr(
        {"current": windows[:, 0][:, None], "real": real, "predicted": real}, ["cam"], [2, 4]
    )
    assert (
        scored["cam"]["t+2"]["predicted_db"] == float("inf") and scored["cam"]["t+2"]["copy_current_db"] < 60
    )
    # The ablation predicts no frames: its actions are scored, sampled only.
    build(store, predict_images=False).save_pretrained(tmp_path / "ablation")
    ablation = frames.run_benchmark(
        None, quick=True, store_path=store.path, checkpoint=str(tmp_path / "ablation")
    )
    assert ablation["psnr"] is None and list(ablation["actions"]) == ["sampled"]
    assert list(out["actions"]) == ["sampled", "real_future"]
    with pytest.raises(InvalidInputError, match="needs --checkpoint"):
        frames.run_benchmark(None, store_path=store.path)


def test_the_autoencoder_stage_trains_only_the_autoencoder_and_its_latents_feed_the_dit(store):
    policy = build(store, autoencoder_steps=2, autoencoder_factor=2, autoencoder_width=8, patch_size=4)
    assert policy.net.grid == (2, 2)  # 16 px frames -> 8x8 latents -> patches of 4
    assert policy.net.patch_embed.in_channels == 4 * 3  # 4 latent channels, t+2 and t+4 on the current frame
    assert [(s.name, s.steps) for s in policy.training_stages(5)] == [("autoencoder", 2), ("dit", 3)]
    data = batch(policy, store, [0, 1, 2, 3])
    policy.train()
    policy.set_stage("autoencoder")
    loss, logs = policy.compute_loss(data)
    loss.backward()
    assert logs["recon_mse"] > 0 and "action_loss" not in logs
    assert all(p.grad is not None for p in policy.autoencoder.parameters())
    assert all(p.grad is None for p in policy.net.parameters())
    assert not torch.equal(policy.autoencoder.latent_mean, torch.zeros(4))  # running statistics move
    policy.zero_grad(set_to_none=True)
    policy.set_stage("dit")
    loss, logs = policy.compute_loss(data)
    loss.backward()
    assert {"action_loss", "image_loss"} <= logs.keys()
    assert all(p.grad is None for p in policy.autoencoder.parameters())  # frozen: latents carry no gradient
    latents = policy.frames(data, 3)
    assert latents.shape == (4, 3, 4, 8, 8)
    policy.eval()
    obs = {k: data[k][:1, :1] for k in KEYS} | {"task": ["a"]}
    policy.predict_action_chunk(obs, generator=torch.Generator().manual_seed(0))
    assert policy.predicted_frames.shape == (1, 2, 1, 16, 16, 3)  # decoded back to the camera's pixels


def test_a_run_with_the_autoencoder_stage_keeps_it_frozen_after_its_stage_and_in_the_checkpoint(
    store, tmp_path
):
    from safetensors.torch import load_file

    from visuomotor.policies import load_policy
    from visuomotor.train import train

    # the cpu preset's recipe (latents of its own autoencoder, one token per action step), tiny
    over = {k: v for k, v in TINY_LATENTS.items() if k != "action_tokens"}
    fast = {"steps": "5", "batch_size": "4", "warmup_steps": "1", "save_every": "1"}
    train("pad", store.path, tmp_path / "run", policy_overrides=over, preset="cpu", progress=False,
          train_overrides=fast)  # fmt: skip
    weights = {
        step: load_file(tmp_path / "run" / "checkpoints" / f"step-{step:07d}" / "pretrained_model" / "model.safetensors")
        for step in (4, 5)
    }  # fmt: skip
    ae = [k for k in weights[5] if k.startswith("autoencoder.")]
    dit = [k for k in weights[5] if k.startswith("net.")]
    assert ae and dit
    assert all(torch.equal(weights[4][k], weights[5][k]) for k in ae)  # frozen once the DiT trains
    assert any(not torch.equal(weights[4][k], weights[5][k]) for k in dit)
    loaded = load_policy(tmp_path / "run")
    assert loaded.autoencoder is not None and loaded.config.action_tokens == "per_step"
    assert torch.equal(loaded.autoencoder.latent_std, weights[5]["autoencoder.latent_std"])
    pictures = sorted(p.name for p in (tmp_path / "run" / "pictures").iterdir())
    assert pictures[:2] == ["autoencoder_step_0000001.png", "autoencoder_step_0000002.png"]
    assert pictures[2:] == [f"step_{s:07d}.png" for s in (3, 4, 5)]
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [h["step"] for h in history if "recon_psnr" in h] == [1, 2]
    with pytest.raises(ValueError, match="steps must exceed 2, got 2"):
        train("pad", store.path, tmp_path / "short", policy_overrides=over, preset="cpu", progress=False,
              train_overrides=fast | {"steps": "2"})  # fmt: skip


def test_bad_autoencoder_settings_are_named(store, tmp_path):
    with pytest.raises(ValueError, match="autoencoder_factor must be a power of 2"):
        build(store, autoencoder_steps=2, autoencoder_factor=3)
    with pytest.raises(ValueError, match=r"either vae_path .* or autoencoder_steps"):
        build(store, autoencoder_steps=2, vae_path=str(tmp_path))
    with pytest.raises(
        ValueError, match=r"do not fit the frame autoencoder .* 4x4\) cut into patches of patch_size 8"
    ):
        build(store, autoencoder_steps=2, autoencoder_factor=4, patch_size=8)
    with pytest.raises(ValueError, match="autoencoder_steps must be >= 0"):
        build(store, autoencoder_steps=-1)


def test_the_frames_benchmark_scores_the_latent_space_itself_when_there_is_one(store, tmp_path):
    from visuomotor.eval.bench import frames
    from visuomotor.policies.pad.pictures import psnr

    policy = build(store, autoencoder_steps=2, autoencoder_factor=2, autoencoder_width=8, patch_size=4)
    policy.save_pretrained(tmp_path / "pad")
    out = frames.run_benchmark(None, quick=True, store_path=store.path, checkpoint=str(tmp_path / "pad"))
    sampler = SequenceSampler(store, policy.config.window_spec())
    real = sampler.sample(np.linspace(0, len(sampler) - 1, frames.QUICK_WINDOWS).astype(np.int64))[IMAGE_KEY]
    x = torch.from_numpy(real[:, 2]).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        decoded = policy.eval().autoencoder.decode(policy.autoencoder.encode(x))
    pixels = ((decoded.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert out["psnr"][IMAGE_KEY]["t+4"]["autoencoded_db"] == round(psnr(real[:, 2], pixels), 2)
    build(store).save_pretrained(tmp_path / "pixels")
    on_pixels = frames.run_benchmark(
        None, quick=True, store_path=store.path, checkpoint=str(tmp_path / "pixels")
    )
    assert "autoencoded_db" not in on_pixels["psnr"][IMAGE_KEY]["t+4"]


def test_training_pictures_show_the_autoencoders_reconstructions_then_the_predicted_futures(store):
    from visuomotor.policies.pad.pictures import psnr

    policy = build(store, autoencoder_steps=2, autoencoder_factor=2, autoencoder_width=8, patch_size=4)
    windows = batch(policy, store, [0, 5, 9])
    generator = torch.Generator().manual_seed(0)
    policy.eval().set_stage("autoencoder")
    name, metrics, image = policy.training_pictures(windows, generator)
    current = windows[IMAGE_KEY][:, 0].numpy()  # the current frame, (3, 16, 16, 3)
    rebuilt = policy.reconstruct(current)
    assert name == "autoencoder_step" and metrics == {"recon_psnr": psnr(current, rebuilt)}
    assert image.shape == (3 * 16, 2 * 16, 3)  # a row per window: [real | reconstructed] per camera
    assert np.array_equal(image[16:32, :16], current[1]) and np.array_equal(image[16:32, 16:], rebuilt[1])
    assert not np.array_equal(rebuilt, current)  # an untrained autoencoder: the picture shows the loss

    policy.set_stage("dit")
    name, metrics, image = policy.training_pictures(windows, generator)
    assert name == "step" and set(metrics) == {"frame_psnr", "frame_psnr_copy_current"}
    assert image.shape == (3 * 16, 5 * 16, 3)  # current, then real and predicted at t+2 and t+4
    ablation = build(store, autoencoder_steps=2, autoencoder_factor=2, autoencoder_width=8, patch_size=4,
                     predict_images=False).eval()  # fmt: skip
    assert ablation.training_pictures(windows, generator) is None
    ablation.set_stage("autoencoder")  # its autoencoder is shown all the same
    assert ablation.training_pictures(windows, generator)[0] == "autoencoder_step"


def test_the_frames_benchmark_scores_sampled_chunks_and_chunks_given_the_real_future(store, tmp_path):
    from visuomotor.eval.bench import frames

    policy = build(store).eval()
    windows = next(frames._windows(policy, store.path, 4))
    target = policy.normalizer.normalize_key("action", torch.as_tensor(windows["action"]).float())
    chunk = policy.predict_action_chunk(windows, torch.Generator().manual_seed(0))
    expected = ((policy.normalizer.normalize_key("action", chunk) - target) ** 2).mean().item()
    errors = frames.action_errors(policy, store.path, 4)
    assert errors["windows"] == 4 and errors["sampled"]["chunk_mse"] == round(expected, 4)
    # Given the real future, the network sees at every step the real future frames noised to that step's
    # level with one fixed noise draw, never its own predictions.
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    denoise = policy.denoise
    policy.denoise = lambda future, *rest: (
        seen.append((future.clone(), rest[3].clone())) or denoise(future, *rest)
    )
    policy.sample_chunk(windows, torch.Generator().manual_seed(0), real_future=True)
    real = policy.frames(windows, 3)[:, 1:].flatten(1, 2)
    alphas = policy.image_scheduler.alphas_cumprod
    noises = []
    for future, t in seen:
        a = alphas[t].view(-1, 1, 1, 1)
        noises.append((future - a.sqrt() * real) / (1 - a).sqrt())
    assert len(seen) == policy.config.num_inference_steps
    assert all(torch.allclose(n, noises[0], atol=1e-4) for n in noises)
    assert policy.predicted_frames is None  # nothing was predicted to show


def test_bench_frames_runs_the_checkpoint_with_inference_fields_changed(store, tmp_path, capsys):
    from visuomotor.cli import main

    build(store).save_pretrained(tmp_path / "pad")
    report = tmp_path / "frames.json"
    args = ["bench", "frames", "--quick", "--checkpoint", str(tmp_path / "pad"), "--store", str(store.path)]
    assert main([*args, "--json", str(report), "-o", "num_inference_steps=3"]) == 0
    result = json.loads(report.read_text())
    assert result["num_inference_steps"] == 3 and result["overrides"] == {"num_inference_steps": "3"}
    assert main([*args, "-o", "horizon=4"]) == 2  # a training field, not an inference one
    assert main(["bench", "latency", "--quick", "-o", "num_inference_steps=3"]) == 2
    assert "bench frames takes it, not latency" in capsys.readouterr().err


def two_camera_policy(store, **fields):
    """The tiny PAD on two cameras: the store's and a second one (its frames given in each batch)."""
    shapes = {k: list(store.shape(k)) for k in KEYS} | {SECOND: list(store.shape(IMAGE_KEY))}
    config = make_config(
        "pad", "cpu", image_keys=(IMAGE_KEY, SECOND), input_shapes=shapes, action_dim=store.shape("action")[0],
        tasks=store.tasks, **{**TINY, **fields},
    )  # fmt: skip
    stats = {k: store.attrs["stats"][k] for k in [*KEYS, "action"]} | {
        SECOND: store.attrs["stats"][IMAGE_KEY]
    }
    return get_policy_entry("pad").load()[0](config, stats)


SECOND = "observation.images.wrist"


def test_separate_camera_tokens_give_each_camera_its_own_patch_tokens(store):
    stacked, separate = two_camera_policy(store), two_camera_policy(store, camera_tokens="separate")
    assert stacked.net.image_pos.shape[1] == 4 and separate.net.image_pos.shape[1] == 8  # 16 px, patch 8
    assert stacked.net.patch_embed.in_channels == 2 * separate.net.patch_embed.in_channels == 2 * 3 * 3
    # frames (B, T, cameras * 3, h, w) holding 10 * time + camera: each group is one camera, time in order
    tagged = (10 * torch.arange(3)[:, None] + torch.arange(2)[None]).repeat_interleave(3, dim=1)
    images = tagged[None, :, :, None, None].expand(1, 3, 6, 2, 2).float().flatten(1, 2)
    groups = separate.token_groups(images)
    assert groups.shape == (1, 2, 9, 2, 2)
    for camera in range(2):
        assert groups[0, camera, :, 0, 0].tolist() == [10.0 * t + camera for t in range(3) for _ in range(3)]
    assert torch.equal(stacked.token_groups(images)[:, 0], images)  # stacked: the channels as they were

    data = batch(build(store), store, [0, 1, 2, 3])  # the windows of the store's one camera
    data[SECOND] = data[IMAGE_KEY].flip(-2)  # the second camera: the same frames upside down
    separate.train()
    loss, logs = separate.compute_loss(data)
    loss.backward()
    assert torch.isfinite(loss) and {"action_loss", "image_loss"} <= logs.keys()
    assert separate.net.group_embed.grad is not None
    separate.eval()
    obs = {k: v[:2, :1] for k, v in data.items() if k in (*KEYS, SECOND)} | {"task": ["a", "b"]}
    chunk = separate.predict_action_chunk(obs, generator=torch.Generator().manual_seed(0))
    assert chunk.shape == (2, 8, store.shape("action")[0])
    assert separate.predicted_frames.shape == (2, 2, 2, 16, 16, 3)  # (B, offsets, cameras, H, W, 3)
    with pytest.raises(ValueError, match="camera_tokens must be stacked or separate, got 'apart'"):
        build(store, camera_tokens="apart")


def test_camera_features_condition_the_dit_on_each_cameras_current_frames(store, tmp_path):
    from visuomotor.policies import load_policy

    policy = two_camera_policy(store, camera_features=True)
    data = batch(build(store), store, [0, 1, 2, 3])
    data[SECOND] = data[IMAGE_KEY].flip(-2)
    pixels = policy.pixels(data, 3)  # the current frame and two futures per camera; eval: no shift
    cond = policy.conditioning(data, pixels)
    assert not torch.allclose(cond, policy.cond(data, 4))  # the frames add to the task's conditioning
    for camera in range(2):  # each camera's current frame moves it ...
        changed = [x.clone() for x in pixels]
        changed[camera][:, 0] = -changed[camera][:, 0]
        assert not torch.allclose(policy.conditioning(data, changed), cond)
    # ... the future frames do not
    futures_changed = [torch.cat([x[:, :1], torch.zeros_like(x[:, 1:])], dim=1) for x in pixels]
    assert torch.allclose(policy.conditioning(data, futures_changed), cond, atol=1e-6)

    for p in policy.net.parameters():  # away from adaLN-Zero's start, where the conditioning has no gradient
        torch.nn.init.normal_(p, std=0.05)
    loss, _ = policy.train().compute_loss(data)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.camera_features.parameters())
    staged = build(store, camera_features=True, autoencoder_steps=2, autoencoder_factor=2, autoencoder_width=8,
                   patch_size=4)  # fmt: skip
    assert [s.modules for s in staged.training_stages(5)] == [
        ("autoencoder",),
        ("net", "task_embed", "camera_features"),  # trained with the DiT, after the autoencoder
    ]

    policy.eval().save_pretrained(tmp_path / "ckpt")
    loaded = load_policy(tmp_path / "ckpt")
    obs = {k: v[:2, :1] for k, v in data.items() if k in (*KEYS, SECOND)} | {"task": ["a", "b"]}
    chunks = [p.predict_action_chunk(obs, torch.Generator().manual_seed(0)) for p in (policy, loaded)]
    assert torch.equal(chunks[0], chunks[1])


def test_the_autoencoder_picture_puts_each_cameras_real_and_reconstructed_frames_side_by_side(store):
    policy = two_camera_policy(store, autoencoder_steps=2, autoencoder_factor=2, autoencoder_width=8,
                               patch_size=4).eval()  # fmt: skip
    windows = batch(build(store), store, [0, 7])
    windows[SECOND] = windows[IMAGE_KEY].flip(-2)  # the second camera: the same frames upside down
    policy.set_stage("autoencoder")
    _, _, image = policy.training_pictures(windows, torch.Generator().manual_seed(0))
    assert image.shape == (2 * 16, 4 * 16, 3)  # per window: first camera real | rebuilt, second's the same
    for c, key in enumerate((IMAGE_KEY, SECOND)):
        real = windows[key][1, 0].numpy()
        assert np.array_equal(image[16:, 32 * c : 32 * c + 16], real)
        assert np.array_equal(image[16:, 32 * c + 16 : 32 * c + 32], policy.reconstruct(real))


def test_a_run_can_reuse_another_runs_frame_autoencoder_and_skip_its_stage(store, tmp_path):
    from visuomotor.policies import load_policy
    from visuomotor.train import train

    over = TINY_LATENTS
    fast = {"steps": "3", "batch_size": "4", "warmup_steps": "1"}
    common = {"preset": "cpu", "progress": False, "train_overrides": fast}
    first, second = tmp_path / "first", tmp_path / "second"
    train("pad", store.path, first, policy_overrides=over, **common)
    summary = train(
        "pad", store.path, second, policy_overrides=over | {"autoencoder_from": str(first)}, **common
    )
    assert summary["steps"] == 3  # all three DiT steps: no autoencoder stage
    history = json.loads((second / "metrics.json").read_text())
    assert all("action_loss" in h for h in history if "loss" in h)
    a, b = load_policy(first), load_policy(second)
    for key, value in a.autoencoder.state_dict().items():  # latent statistics included
        assert torch.equal(value, b.autoencoder.state_dict()[key]), key

    wider = over | {"autoencoder_from": str(first), "autoencoder_width": "16"}
    with pytest.raises(ValueError, match="its autoencoder_width is 8, this run's is 16"):
        train("pad", store.path, tmp_path / "wider", policy_overrides=wider, **common)
    pixels = tmp_path / "pixels"
    train(
        "pad",
        store.path,
        pixels,
        policy_overrides=over | {"autoencoder_steps": "0", "patch_size": "8"},
        **common,
    )
    with pytest.raises(
        ValueError, match="is a PAD run without one: it must be a PAD run that trained a frame"
    ):
        train(
            "pad",
            store.path,
            tmp_path / "x",
            policy_overrides=over | {"autoencoder_from": str(pixels)},
            **common,
        )
    with pytest.raises(FileNotFoundError, match=r"autoencoder_from='.*nowhere': .*nowhere: not found"):
        train(
            "pad",
            store.path,
            tmp_path / "y",
            policy_overrides=over | {"autoencoder_from": str(tmp_path / "nowhere")},
            **common,
        )
    with pytest.raises(ValueError, match="either vae_path or autoencoder_from"):
        build(store, autoencoder_from=str(first), vae_path=str(tmp_path))


def test_the_camera_reliance_diagnostic_finds_the_camera_the_actions_read():
    import importlib.util
    from pathlib import Path
    from types import SimpleNamespace

    path = Path(__file__).resolve().parents[1] / "experiments" / "camera_reliance.py"
    spec = importlib.util.spec_from_file_location("camera_reliance", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    class ReadsTheWrist:  # its chunk is the mean of the wrist camera's pixels: the top camera is ignored
        config = SimpleNamespace(image_keys=("observation.images.top", "observation.images.wrist"))

        def predict_action_chunk(self, batch, generator):
            return (
                batch["observation.images.wrist"]
                .float()
                .mean(dim=(1, 2, 3, 4))[:, None, None]
                .expand(-1, 3, 2)
            )

    rng = np.random.default_rng(0)
    level = np.arange(8, dtype=np.float32)  # window i shows level i, and its demonstrated actions are i
    frames = np.broadcast_to(level[:, None, None, None, None], (8, 1, 4, 4, 3)).astype(np.uint8)
    windows = {
        "observation.images.top": rng.integers(0, 255, (8, 1, 4, 4, 3), dtype=np.uint8),
        "observation.images.wrist": frames.copy(),
        "action": np.broadcast_to(level[:, None, None], (8, 3, 2)).copy(),
    }
    row = module.task_reliance(ReadsTheWrist(), windows, rng, seed=0)
    assert row["as_is"] == 0.0 and row["top_swapped"] == 0.0
    assert row["wrist_swapped"] > 1.0  # another window's wrist frames: another window's actions
