"""`visuomotor export`: a run's checkpoint in the Hub layout with a generated model card; the card's
train command rebuilds the run's configs; --push-to-hub --dry-run lists the uploads and touches no
network."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest
from fixtures import TINY_DIFFUSION, make_store

from visuomotor.cli import build_parser, main

TRAIN = ["--steps", "2", "-t", "save_every=2", "-t", "log_every=1", "-t", "warmup_steps=1", "--no-progress"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("export")
    store = root / "s.zarr"
    make_store(store, episodes=3, lengths=[20, 16, 18], camera=False, tasks=["reach", "push", "reach"])
    out = root / "run"
    args = [
        "train",
        "--policy",
        "diffusion",
        "--data",
        str(store),
        "--out",
        str(out),
        *TINY_DIFFUSION,
        *TRAIN,
    ]
    assert main([*args, "-t", "seed=3"]) == 0
    return out


def fake_eval(path: Path, policy: str, successes: int = 7) -> Path:
    """An eval JSON with the fields `visuomotor eval --json` writes."""
    data = {
        "env": "test-env-v0",
        "policy": policy,
        "episodes": 10,
        "successes": successes,
        "success_rate": successes / 10,
        "ci95": [0.397, 0.892],
        "per_task": {},
        "seeds": {"base": 1_000_000, "first": 1_100_000, "last": 1_100_009},
    }
    path.write_text(json.dumps(data))
    return path


def test_export_writes_checkpoint_and_card(run_dir, tmp_path, capsys):
    out = tmp_path / "model"
    eval_json = fake_eval(tmp_path / "e.json", f"{run_dir} (n_action_steps=2)")
    assert main(["export", str(run_dir), str(out), "--eval-json", str(eval_json)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "config.json",
        "eval.json",
        "model.safetensors",
    ]
    assert not list(tmp_path.glob(".exporting-*"))
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: visuomotor\n")
    for text in (
        "diffusion (preset `cpu`)",
        "step 2 (last)",
        "`observation.state` [4]",
        f"| store | `{(run_dir.parent / 's.zarr').resolve()}` |",
        "| episodes | 3 (in the store at export) |",
        "| tasks | reach; push |",
        "| cameras the policy sees | none (low-dimensional state only) |",
        "`horizon=8`",
        "Success **70.0%** (95% Wilson interval [0.397, 0.892]; 7/10 episodes)",
        "seeds 1100000-1100009 (reporting seeds)",
    ):
        assert text in card, text
    from visuomotor.policies import load_policy

    assert load_policy(out).config.horizon == 8  # the export is a loadable checkpoint


def test_card_command_rebuilds_the_run_configs(run_dir, tmp_path):
    """Parse the card's command with our CLI and build its configs as `train` does: they are run.json's."""
    from visuomotor.configs import apply_overrides, parse_overrides, to_dict
    from visuomotor.keys import image_key
    from visuomotor.policies import make_config
    from visuomotor.policies.common.card import DATA_FIELDS
    from visuomotor.train import preset_train_config

    out = tmp_path / "model"
    assert main(["export", str(run_dir), str(out)]) == 0
    card = (out / "README.md").read_text()
    command = card.split("```bash\n")[1].split("\n```")[0]
    argv = shlex.split(command)
    assert argv[:2] == ["visuomotor", "train"] and "Not evaluated at export" in card
    args = build_parser().parse_args(argv[1:])
    assert (args.policy, args.preset, Path(args.out)) == ("diffusion", "cpu", run_dir.resolve())
    policy_over = parse_overrides(args.policy_override)
    cams = [] if args.cameras == "none" else args.cameras.split(",")
    policy_over["image_keys"] = json.dumps([image_key(c) for c in cams])
    built = apply_overrides(make_config(args.policy, args.preset), policy_over)
    config = to_dict(built)
    train = to_dict(
        apply_overrides(preset_train_config(args.preset, built), parse_overrides(args.train_override))
    )
    saved = json.loads((run_dir / "run.json").read_text())
    assert args.data == saved["data"] and train == saved["train_config"]
    assert {k: v for k, v in config.items() if k not in DATA_FIELDS} == {
        k: v for k, v in saved["policy_config"].items() if k not in DATA_FIELDS
    }


def test_push_to_hub_dry_run_lists_the_uploads_and_uses_no_network(run_dir, tmp_path, capsys, monkeypatch):
    import huggingface_hub

    def no_network(*args, **kwargs):
        raise AssertionError("a dry run must not reach the Hub")

    monkeypatch.setattr(huggingface_hub, "HfApi", no_network)
    out = tmp_path / "model"
    eval_json = fake_eval(tmp_path / "e.json", str(run_dir))
    argv = [
        "export",
        str(run_dir),
        str(out),
        "--eval-json",
        str(eval_json),
        "--push-to-hub",
        "me/dp",
        "--dry-run",
    ]
    assert main(argv) == 0
    listing = capsys.readouterr().out.splitlines()
    assert not out.exists() and listing[0].startswith("dry run: nothing written or uploaded")
    names = [line.split()[0] for line in listing[1:]]
    assert names == ["config.json", "model.safetensors", "README.md", "eval.json"]
    for line, name in zip(listing[1:], names, strict=True):
        assert line.endswith(f"-> https://huggingface.co/me/dp/blob/main/{name}")
    assert f"from {eval_json}" in listing[4] and "generated" in listing[3]


def test_push_uploads_exactly_the_listed_files(run_dir, tmp_path, monkeypatch):
    """The real push path with the Hub client replaced by a recorder (no network here)."""
    import huggingface_hub

    calls = []

    class Recorder:
        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs))
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(self, **kwargs):
            calls.append(("upload_folder", kwargs["repo_id"], kwargs))

    monkeypatch.setattr(huggingface_hub, "HfApi", Recorder)
    out = tmp_path / "model"
    assert main(["export", str(run_dir), str(out), "--push-to-hub", "me/dp", "--private"]) == 0
    (_, repo, create), (_, repo2, upload) = calls
    assert repo == repo2 == "me/dp" and create["private"] is True and create["repo_type"] == "model"
    assert upload["folder_path"] == out
    assert upload["allow_patterns"] == ["config.json", "model.safetensors", "README.md"]


def test_export_refuses_what_it_cannot_stand_behind(run_dir, tmp_path, capsys):
    out = tmp_path / "model"
    other = fake_eval(tmp_path / "scripted.json", "scripted")
    assert main(["export", str(run_dir), str(out), "--eval-json", str(other)]) == 2
    assert "evaluated 'scripted', which is not a checkpoint directory here" in capsys.readouterr().err
    retrained = tmp_path / "retrained"  # another checkpoint: its recorded weights differ
    shutil.copytree(run_dir / "checkpoints" / "last" / "pretrained_model", retrained)
    meta = json.loads((retrained / "config.json").read_text())
    (retrained / "config.json").write_text(json.dumps({**meta, "weights_sha256": "0" * 64}))
    assert main(["export", str(run_dir), str(out), "--eval-json", str(fake_eval(other, str(retrained)))]) == 2
    assert "whose weights are not those of" in capsys.readouterr().err
    missing = tmp_path / "e.json"
    missing.write_text(json.dumps({"env": "x", "policy": str(run_dir)}))
    assert main(["export", str(run_dir), str(out), "--eval-json", str(missing)]) == 2
    assert "missing field(s) ['episodes', 'successes', 'success_rate', 'ci95']" in capsys.readouterr().err
    out.mkdir()
    assert main(["export", str(run_dir), str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["export", str(run_dir / "checkpoints"), str(tmp_path / "m2")]) == 2
    assert "not a training run directory (no run.json)" in capsys.readouterr().err
    assert not (tmp_path / "m2").exists()
