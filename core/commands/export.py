"""Export a training run's checkpoint as a Hub-layout model directory with a generated model card.

OUT gets the run's checkpoint (best, else last: `config.json` + `model.safetensors`, its checksum
verified), a `README.md` model card (policy, data, preset and key config, success with its 95% interval
when --eval-json is given, and the `visuomotor train` command that rebuilds the run's configs) and the
eval JSON as `eval.json`. OUT is written under a hidden name and renamed into place, so it is complete
or absent. --push-to-hub uploads exactly those files to a Hub model repository; --dry-run writes and
uploads nothing and lists what would go where.

    visuomotor export runs/mt10_dp out/mt10_dp --eval-json out/dp.json --push-to-hub me/mt10-dp --dry-run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path
from typing import Any

from visuomotor.errors import InvalidInputError, MissingKeyError, MissingPathError, PathExistsError

CARD_NAME = "README.md"
EVAL_NAME = "eval.json"
EVAL_FIELDS = ("env", "policy", "episodes", "successes", "success_rate", "ci95")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run", metavar="RUN", help="a training run directory (its best, else last checkpoint)"
    )
    parser.add_argument("out", metavar="OUT", help="new directory to write the model into")
    parser.add_argument("--eval-json", metavar="E", help="`visuomotor eval --json` of this checkpoint")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="upload OUT to this Hub model repository")
    parser.add_argument("--private", action="store_true", help="create the Hub repository as private")
    parser.add_argument(
        "--dry-run", action="store_true", help="write and upload nothing; list what would go where"
    )


def run(args: argparse.Namespace) -> int:
    from visuomotor.policies.common.card import render_card

    out = Path(args.out)
    if out.exists():
        raise PathExistsError(f"{out}: already exists; choose a new OUT")
    info, facts = gather(Path(args.run), args.eval_json)
    files = {
        "config.json": info.directory / "config.json",
        "model.safetensors": info.weights,
        CARD_NAME: render_card(facts),
    }
    if args.eval_json:
        files[EVAL_NAME] = Path(args.eval_json)
    if args.dry_run:
        print(dry_run_listing(files, out, args.push_to_hub))
        return 0
    write_export(files, out)
    print(f"wrote {out}: {', '.join(files)}")
    if args.push_to_hub:
        print(f"uploaded to {push(out, list(files), args.push_to_hub, args.private)}")
    return 0


def gather(run_dir: Path, eval_json: str | None) -> tuple[Any, Any]:
    """The checkpoint (weights verified) and every fact its card states."""
    from visuomotor.configs import to_dict
    from visuomotor.policies import inspect_checkpoint, make_config
    from visuomotor.policies.common.card import DATA_FIELDS, CardFacts, changed_fields, train_command
    from visuomotor.policies.common.saved import verify_weights
    from visuomotor.rundir import RunDir
    from visuomotor.train import preset_train_config

    run_json = RunDir(run_dir).run_json
    if not run_json.is_file():
        raise MissingPathError(f"{run_dir}: not a training run directory (no run.json)")
    if read_json(run_json, ()).get("kind") == "online":
        raise InvalidInputError(f"{run_json}: an online (expo) run; export describes offline training runs")
    record = read_json(run_json, ("policy", "preset", "data", "policy_config", "train_config"))
    info = inspect_checkpoint(run_dir)
    verify_weights(info)
    preset = record["preset"]
    policy_defaults = to_dict(make_config(info.policy, preset))
    train_defaults = to_dict(preset_train_config(preset, info.config))
    config = to_dict(info.config)
    episodes, tasks = store_facts(record["data"], config)
    facts = CardFacts(
        policy=info.policy,
        preset=preset,
        checkpoint=checkpoint_name(info.directory),
        weights_sha256=info.weights_digest(),
        config=config,
        # The cameras have their own rows; the device is the machine's, not the recipe's.
        changed=changed_fields(config, policy_defaults, (*DATA_FIELDS, "image_keys", "device")),
        train=record["train_config"],
        dataset=info.dataset,
        store=record["data"],
        episodes=episodes,
        tasks=tasks,
        command=train_command(record, str(run_dir.resolve()), policy_defaults, train_defaults),
        evaluation=None if eval_json is None else checked_evaluation(Path(eval_json), info),
        tags=_suite_tags(str(info.dataset.get("env_id", ""))),
    )
    return info, facts


def _suite_tags(env_id: str) -> list[str]:
    """The simulators of an env id ("metaworld/reach-v3,robosuite/Lift" -> metaworld, robosuite)."""
    return list(dict.fromkeys(part.split("/")[0] for part in env_id.split(",") if "/" in part))


def read_json(path: Path, fields: tuple[str, ...]) -> dict[str, Any]:
    """A JSON object with `fields`; errors name the file and the field."""
    if not path.is_file():
        raise MissingPathError(f"{path}: not found")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{path}: invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path}: expected a JSON object")
    missing = [f for f in fields if f not in data]
    if missing:
        raise MissingKeyError(f"{path}: missing field(s) {missing}")
    return data


def checkpoint_name(directory: Path) -> str:
    """ "step 3000 (best)" for RUN/checkpoints/best/pretrained_model (a link to step-0003000)."""
    step_dir = directory.parent
    step = directory.resolve().parent.name
    label = step.removeprefix("step-").lstrip("0") or "0"
    return f"step {label} ({step_dir.name})" if step_dir.name in ("best", "last") else f"step {label}"


def store_facts(data: str, config: dict[str, Any]) -> tuple[int | None, list[str]]:
    """Episodes and task texts of the training store, when it is still there; else the config's tasks."""
    from visuomotor.datasets import EpisodeStore

    if not Path(data).exists():
        return None, list(config.get("tasks") or [])
    store = EpisodeStore.open(data)
    return store.num_episodes, store.tasks


def checked_evaluation(path: Path, info: Any) -> dict[str, Any]:
    """An eval JSON of this very checkpoint: a policy label naming another checkpoint (or a reference
    policy) would put someone else's success rate on this card."""
    from visuomotor.policies import inspect_checkpoint

    result = read_json(path, EVAL_FIELDS)
    evaluated = str(result["policy"]).split(" (")[0]  # "DIR (n_action_steps=3)": the overrides follow
    if evaluated.startswith("lerobot:") or not Path(evaluated).exists():
        raise InvalidInputError(
            f"{path} evaluated {result['policy']!r}, which is not a checkpoint directory here (run export "
            f"where eval ran); the card needs an evaluation of {info.directory}"
        )
    if inspect_checkpoint(evaluated).weights_digest() != info.weights_digest():
        raise InvalidInputError(
            f"{path} evaluated {evaluated}, whose weights are not those of {info.directory}"
        )
    return result


def dry_run_listing(files: dict[str, Path | str], out: Path, repo_id: str | None) -> str:
    """What a real run would write into OUT and, with --push-to-hub, upload where."""
    lines = [f"dry run: nothing written or uploaded. {out} would hold:"]
    for name, source in files.items():
        size = len(source.encode()) if isinstance(source, str) else source.stat().st_size
        origin = "generated" if isinstance(source, str) else f"from {source}"
        target = f" -> {hub_url(repo_id, name)}" if repo_id else ""
        lines.append(f"  {name} ({size} bytes, {origin}){target}")
    return "\n".join(lines)


def hub_url(repo_id: str, name: str) -> str:
    from huggingface_hub import constants

    return f"{constants.ENDPOINT}/{repo_id}/blob/main/{name}"


def write_export(files: dict[str, Path | str], out: Path) -> None:
    """Write OUT under a hidden sibling name, then rename it into place (complete or absent)."""
    tmp = out.parent / f".exporting-{out.name}.{os.getpid()}"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp.mkdir()
    try:
        for name, source in files.items():
            if isinstance(source, str):
                (tmp / name).write_text(source)
            else:
                shutil.copyfile(source, tmp / name)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def push(out: Path, names: list[str], repo_id: str, private: bool) -> str:
    """Upload exactly `names` from OUT to the Hub model repository `repo_id` (created if needed)."""
    import huggingface_hub

    api = huggingface_hub.HfApi()
    url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    api.upload_folder(
        repo_id=repo_id,
        folder_path=out,
        repo_type="model",
        allow_patterns=names,
        commit_message=f"visuomotor export of {out.name}",
    )
    return str(url)
