"""The model card (`README.md`) written beside an exported checkpoint (architecture.md §Training runs
and checkpoints): what the policy is, what data it learned from, how well it did, and the command that
trained it, in the Hugging Face Hub's layout (YAML metadata, then Markdown).

Pure text from facts gathered elsewhere (`visuomotor export`, `core/commands/export.py`): nothing here
reads files, so every line of a card can be tested from a dict. Success is stated only with its episode
count, 95% interval and seed range (architecture.md §Numbers; §Evaluation, Seed protocol).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from visuomotor.keys import IMAGE_PREFIX

REPORTING_SEED_OFFSET = 100_000
"""Seeds from 1,000,000 + this on are reporting seeds (architecture.md §Evaluation, Seed protocol)."""

DATA_FIELDS = ("input_shapes", "action_dim", "tasks")
"""Policy config fields a run takes from its store, not from the command line."""


@dataclass(frozen=True)
class CardFacts:
    """Everything a card says, gathered from the checkpoint, run.json, the store and an eval JSON."""

    policy: str
    preset: str
    checkpoint: str
    """Which checkpoint of the run, e.g. "step 3000 (best)"."""
    weights_sha256: str
    config: dict[str, Any]
    """The policy config as saved in the checkpoint."""
    changed: dict[str, Any]
    """Policy config fields that differ from the preset (data-derived fields excluded)."""
    train: dict[str, Any]
    """run.json's train_config."""
    dataset: dict[str, Any]
    """The checkpoint's dataset facts (fps, env id, action space, cameras, image size)."""
    store: str
    episodes: int | None
    """Episodes in the store when exported; None when the store is not there."""
    tasks: list[str]
    command: str
    evaluation: dict[str, Any] | None = None
    """An eval JSON (`visuomotor eval --json`), checked to be of this checkpoint."""
    tags: list[str] = field(default_factory=list)


def render_card(facts: CardFacts) -> str:
    """The whole README.md."""
    env = facts.dataset.get("env_id") or "an unrecorded environment"
    parts = [
        _front_matter(facts),
        f"# {facts.policy} policy for {env}\n",
        f"A `{facts.policy}` policy trained with visuomotor from demonstrations. This directory is a "
        "complete checkpoint: `config.json` (the config) and `model.safetensors` (the weights with the "
        f"normalisation statistics; sha256 `{facts.weights_sha256}`, checked on load). Evaluate it with\n",
        f"    visuomotor eval --checkpoint DIR --env {facts.dataset.get('env_id') or 'ENV'} --episodes 50\n",
        _policy_section(facts),
        _data_section(facts),
        _evaluation_section(facts.evaluation),
        "## How it was made\n",
        "Reconstructed from the run's `run.json` (the configs the run used), on the same store it "
        "reproduces them:\n",
        "```bash\n" + facts.command + "\n```\n",
    ]
    return "\n".join(parts)


def _front_matter(facts: CardFacts) -> str:
    tags = list(dict.fromkeys(["robotics", "visuomotor", facts.policy, *facts.tags]))
    lines = ["---", "library_name: visuomotor", "pipeline_tag: robotics", "tags:"]
    lines += [f"- {t}" for t in tags]
    return "\n".join([*lines, "---", ""])


def _table(rows: Sequence[tuple[str, Any]]) -> str:
    body = [f"| {name} | {_cell(value)} |" for name, value in rows]
    return "\n".join(["| | |", "|---|---|", *body, ""])


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _policy_section(facts: CardFacts) -> str:
    c, t = facts.config, facts.train
    inputs = "; ".join(f"`{k}` {list(v)}" for k, v in c.get("input_shapes", {}).items())
    action = facts.dataset.get("action_space", {}).get("semantics") or f"{c.get('action_dim')}-d"
    rows = [
        ("policy", f"{facts.policy} (preset `{facts.preset}`)"),
        ("checkpoint", facts.checkpoint),
        ("inputs", inputs or "none recorded"),
        ("action", action),
        (
            "history / horizon / actions per chunk",
            f"{c.get('n_obs_steps')} / {c.get('horizon')} / {c.get('n_action_steps')}",
        ),
        (
            "task conditioning",
            f"{len(c.get('tasks') or [])} tasks" if len(c.get("tasks") or []) > 1 else "none",
        ),
        (
            "training",
            f"{t.get('steps')} steps, batch {t.get('batch_size')}, lr {t.get('lr')}, seed {t.get('seed')}",
        ),
    ]
    changed = ", ".join(f"`{k}={_value(v)}`" for k, v in facts.changed.items()) or "nothing"
    return "\n".join(["## Policy\n", _table(rows), f"Changed from the `{facts.preset}` preset: {changed}.\n"])


def _data_section(facts: CardFacts) -> str:
    d = facts.dataset
    cameras, size = d.get("cameras"), d.get("image_size")
    in_store = "unrecorded" if cameras is None else ", ".join(cameras) or "none"
    seen = [k.removeprefix(IMAGE_PREFIX) for k in facts.config.get("image_keys", [])]
    rows = [
        ("store", f"`{facts.store}`"),
        (
            "episodes",
            "unknown (the store was not there at export)"
            if facts.episodes is None
            else f"{facts.episodes} (in the store at export)",
        ),
        ("tasks", "; ".join(facts.tasks) or "unrecorded"),
        ("env", d.get("env_id", "unrecorded")),
        (
            "cameras in the store",
            in_store + (f" at {size} px" if cameras and size else ""),
        ),
        ("cameras the policy sees", ", ".join(seen) or "none (low-dimensional state only)"),
        ("fps", d.get("fps", "unrecorded")),
    ]
    return "\n".join(["## Data\n", _table(rows)])


def _evaluation_section(e: Mapping[str, Any] | None) -> str:
    if e is None:
        return (
            "## Evaluation\n\nNot evaluated at export. `visuomotor eval --checkpoint DIR --env ENV --episodes 50 "
            "--json eval.json`, then `visuomotor export RUN OUT --eval-json eval.json`, puts the figure here.\n"
        )
    seeds = e.get("seeds") or {}
    first, last, base = seeds.get("first"), seeds.get("last"), seeds.get("base", 1_000_000)
    kind = "reporting" if first is not None and first >= base + REPORTING_SEED_OFFSET else "tuning"
    lo, hi = e["ci95"]
    lines = [
        "## Evaluation\n",
        f"Success **{e['success_rate']:.1%}** (95% Wilson interval [{lo:.3f}, {hi:.3f}]; {e['successes']}/"
        f"{e['episodes']} episodes) on `{e['env']}`, evaluation seeds {first}-{last} ({kind} seeds), "
        f"evaluated as `{e['policy']}`; the whole result is `eval.json`.\n",
    ]
    per_task = e.get("per_task") or {}
    if len(per_task) > 1:
        rows = [
            f"| {tid} | {s['success_rate']:.1%} | [{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}] | {s['episodes']} |"
            for tid, s in per_task.items()
        ]
        lines.append(
            "\n".join(["| task | success | 95% interval | episodes |", "|---|---|---|---|", *rows, ""])
        )
    return "\n".join(lines)


def _value(value: Any) -> str:
    """A config value as `-o FIELD=VALUE` spells it (`visuomotor.configs.parse_value` reads it back)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def changed_fields(
    values: Mapping[str, Any], defaults: Mapping[str, Any], skip: Sequence[str] = ()
) -> dict[str, Any]:
    """Fields of `values` (JSON-like) that differ from `defaults`, in `values`' order."""
    return {k: v for k, v in values.items() if k not in skip and defaults.get(k) != v}


def train_command(
    run: Mapping[str, Any], out: str, policy_defaults: Mapping[str, Any], train_defaults: Mapping[str, Any]
) -> str:
    """The `visuomotor train` command that builds run.json's configs again: the preset, the camera
    choice, then `-o` / `-t` for every field that differs from the preset (to_dict'd defaults)."""
    config = run["policy_config"]
    cameras = [k.removeprefix(IMAGE_PREFIX) for k in config.get("image_keys", [])]
    argv = ["visuomotor", "train"]
    if int(run.get("world_size", 1)) > 1:  # architecture.md §Training runs: torchrun, gloo on CPU
        argv = ["torchrun", "--nproc_per_node", str(run["world_size"]), "-m", "visuomotor.cli", "train"]
    argv += ["--policy", run["policy"], "--data", run["data"], "--out", out, "--preset", run["preset"]]
    argv += ["--cameras", ",".join(cameras) or "none"]
    for k, v in changed_fields(config, policy_defaults, (*DATA_FIELDS, "image_keys")).items():
        argv += ["-o", f"{k}={_value(v)}"]
    for k, v in changed_fields(run["train_config"], train_defaults).items():
        argv += ["-t", f"{k}={_value(v)}"]
    return shlex.join(argv)
