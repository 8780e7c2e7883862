"""The env registry: ids, task sets, specs and error messages; no simulator is built here."""

from __future__ import annotations

import subprocess
import sys

import pytest

from visuomotor.sim import REGISTRY, TASK_SETS, EnvSpec, expand_env_id, get_spec, list_env_ids, make_env


def test_ids_cover_all_metaworld_tasks_and_robosuite() -> None:
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    ids = list_env_ids()
    assert len(ids) == len(set(ids))
    assert list_env_ids("metaworld") == [f"metaworld/{name}" for name in ALL_V3_ENVIRONMENTS]
    assert len(list_env_ids("metaworld")) == 50
    assert {"robosuite/Lift", "robosuite/Stack", "robosuite/PickPlaceCan"} <= set(list_env_ids("robosuite"))
    assert set(ids) == set(REGISTRY)


def test_task_sets_match_metaworld_benchmarks() -> None:
    from metaworld.env_dict import MT10_V3, MT50_V3

    assert expand_env_id("metaworld/MT10") == [f"metaworld/{name}" for name in MT10_V3]
    assert expand_env_id("metaworld/MT50") == [f"metaworld/{name}" for name in MT50_V3]
    assert expand_env_id("metaworld/reach-v3") == ["metaworld/reach-v3"]
    assert expand_env_id("robosuite/Lift") == ["robosuite/Lift"]
    for ids in TASK_SETS.values():
        assert all(env_id in REGISTRY for env_id in ids)


def test_specs_are_consistent() -> None:
    instructions = [spec.instruction for spec in REGISTRY.values()]
    assert all(text and text == text.strip() for text in instructions)
    assert len(set(instructions)) == len(instructions), "two tasks share an instruction"
    for env_id, spec in REGISTRY.items():
        assert isinstance(spec, EnvSpec) and spec.env_id == env_id and get_spec(env_id) is spec
        assert set(spec.default_cameras) <= set(spec.valid_cameras)
        assert spec.max_episode_steps > 0 and spec.fps > 0 and spec.action_semantics
    mw = get_spec("metaworld/pick-place-v3")
    assert (mw.state_dim, mw.env_state_dim, mw.action_dim, mw.fps) == (4, 39, 4, 80)
    assert mw.default_cameras == ("corner2",)
    rs = get_spec("robosuite/Lift")
    assert (rs.state_dim, rs.action_dim, rs.fps) == (9, 7, 20)


@pytest.mark.parametrize("fn", [expand_env_id, get_spec, make_env])
def test_unknown_env_id_lists_valid_ids_and_task_sets(fn) -> None:
    with pytest.raises(ValueError) as err:
        fn("metaworld/pick-plcae-v3")
    message = str(err.value)
    assert "pick-plcae-v3" in message
    assert "metaworld/pick-place-v3" in message and "robosuite/Lift" in message
    assert "metaworld/MT10" in message and "metaworld/MT50" in message


def test_task_set_is_not_a_single_env() -> None:
    with pytest.raises(ValueError, match="expand_env_id"):
        make_env("metaworld/MT10", render=False)


def test_unknown_camera_lists_valid_cameras() -> None:
    with pytest.raises(ValueError) as err:
        make_env("metaworld/reach-v3", cameras=("corner2", "wrist"))
    message = str(err.value)
    assert "wrist" in message and "corner2" in message and "gripperPOV" in message
    with pytest.raises(ValueError) as err:  # robosuite cameras are checked before robosuite is imported
        make_env("robosuite/Lift", cameras=("corner2",))
    assert "agentview" in str(err.value) and "robot0_eye_in_hand" in str(err.value)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="camera pose"):
        make_env("metaworld/reach-v3", camera_pose="nowhere")
    with pytest.raises(ValueError, match="camera pose"):
        make_env("robosuite/Lift", camera_pose="lerobot")
    with pytest.raises(ValueError, match="image_size"):
        make_env("metaworld/reach-v3", image_size=0)
    with pytest.raises(ValueError, match="max_episode_steps"):
        make_env("metaworld/reach-v3", max_episode_steps=0)


def test_import_is_light_and_simulators_load_lazily() -> None:
    # Importing the package, listing ids and building a Metaworld env must not import robosuite
    # (~5 s); the import alone must not import any simulator or mujoco.
    code = (
        "import sys\n"
        "import visuomotor.sim as s\n"
        "s.expand_env_id('metaworld/MT10')\n"
        "assert not {'mujoco', 'metaworld', 'robosuite'} & set(sys.modules), sorted(sys.modules)\n"
        "s.make_env('metaworld/reach-v3', render=False).reset(seed=0)\n"
        "assert 'metaworld' in sys.modules and 'robosuite' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
