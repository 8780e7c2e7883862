"""Paired comparison of two evaluations (`visuomotor compare`)."""

from __future__ import annotations

import json
import math

import pytest
from fixtures import run_cli

from visuomotor.eval.compare import bootstrap_diff_ci, compare, load_episodes, mcnemar_exact


def write_eval(path, outcomes: dict[str, list[bool]], first_seed: int = 1_000_000) -> str:
    """An eval JSON as `visuomotor eval --json` writes it (only what the comparison reads, plus noise)."""
    episodes = [
        {"env_id": task, "episode": i, "seed": first_seed + i, "success": s, "return": 1.0, "length": 3}
        for task, results in outcomes.items()
        for i, s in enumerate(results)
    ]
    path.write_text(json.dumps({"success_rate": 0.5, "episode_results": episodes}))
    return str(path)


def test_mcnemar_exact_matches_the_binomial_tails():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)  # both one-sided tails of 6 coin flips
    assert mcnemar_exact(6, 0) == mcnemar_exact(0, 6)
    assert mcnemar_exact(2, 8) == pytest.approx(2 * (1 + 10 + 45) / 1024)
    assert mcnemar_exact(5, 5) == 1.0  # capped
    with pytest.raises(ValueError, match="discordant"):
        mcnemar_exact(-1, 2)


def test_pairs_follow_task_and_seed_not_file_order():
    a = {("reach", 1): True, ("reach", 2): False, ("push", 1): True, ("push", 9): True}
    b = {("push", 1): False, ("reach", 2): True, ("reach", 1): True, ("door", 1): True}
    c = compare(a, b, rounds=200)
    assert list(c.per_task) == ["reach", "push"]  # A's order
    reach, push = c.per_task["reach"], c.per_task["push"]
    assert (reach.pairs, reach.successes_a, reach.successes_b, reach.only_a, reach.only_b) == (2, 1, 2, 0, 1)
    assert (push.pairs, push.only_a, push.only_b) == (1, 1, 0)
    assert c.overall.pairs == 3 and c.overall.diff == pytest.approx(0.0)
    assert (c.unpaired_a, c.unpaired_b) == (1, 1)
    with pytest.raises(ValueError, match="share no"):
        compare({("reach", 1): True}, {("reach", 2): True})


def test_bootstrap_interval_brackets_the_difference_and_is_reproducible():
    by_task = {
        "t1": [(True, True)] * 30 + [(False, True)] * 12 + [(True, False)] * 3,
        "t2": [(True, True)] * 20,
    }
    lo, hi = bootstrap_diff_ci(by_task, rounds=2000)
    diff = (12 - 3) / 65
    assert lo < diff < hi and lo > 0  # 12 against 3 discordant pairs: B is better
    assert (lo, hi) == bootstrap_diff_ci(by_task, rounds=2000)
    # stratified: a task where both always succeed never moves, so identical policies give [0, 0]
    assert bootstrap_diff_ci({"t": [(True, True), (False, False)]}, rounds=100) == (0.0, 0.0)


def test_cli_prints_the_paired_table_and_writes_json(tmp_path):
    a = write_eval(
        tmp_path / "a.json",
        {"metaworld/reach-v3": [True] * 6 + [False] * 4, "metaworld/push-v3": [True] * 10},
    )
    b = write_eval(tmp_path / "b.json", {"metaworld/reach-v3": [True] * 10, "metaworld/push-v3": [True] * 10})
    code, out, err = run_cli(
        ["compare", a, b, "--names", "dp,carp", "--json", str(tmp_path / "c.json"), "--rounds", "500"]
    )
    assert code == 0, err
    assert "dp" in out and "carp" in out and "+40.0 pt" in out and "+20.0 points" in out
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["names"] == ["dp", "carp"]
    assert data["per_task"]["metaworld/reach-v3"]["only_b"] == 4
    assert data["overall"]["mcnemar_p"] == pytest.approx(2 / 16)
    assert math.isclose(data["overall"]["diff"], 0.2)


def test_bad_evaluation_files_name_the_problem(tmp_path):
    code, _, err = run_cli(["compare", str(tmp_path / "none.json"), str(tmp_path / "none.json")])
    assert code == 2 and "none.json: no such evaluation file" in err
    (tmp_path / "x.json").write_text('{"success_rate": 0.5}')
    with pytest.raises(ValueError, match=r"x\.json: no episode_results"):
        load_episodes(tmp_path / "x.json")
    (tmp_path / "y.json").write_text(json.dumps({"episode_results": [{"env_id": "r", "seed": 1}]}))
    with pytest.raises(ValueError, match=r"y\.json: episode_results\[0\] lacks"):
        load_episodes(tmp_path / "y.json")
    (tmp_path / "z.json").write_text(
        json.dumps({"episode_results": [{"env_id": "r", "seed": 1, "success": 1}]})
    )
    with pytest.raises(ValueError, match="must be true or false"):
        load_episodes(tmp_path / "z.json")
    dup = [{"env_id": "r", "seed": 1, "success": True}] * 2
    (tmp_path / "d.json").write_text(json.dumps({"episode_results": dup}))
    with pytest.raises(ValueError, match="repeats r seed 1"):
        load_episodes(tmp_path / "d.json")
    (tmp_path / "n.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"n\.json: not JSON"):
        load_episodes(tmp_path / "n.json")
    a = write_eval(tmp_path / "a.json", {"r": [True]})
    code, _, err = run_cli(["compare", a, a, "--names", "only-one"])
    assert code == 2 and "--names takes two" in err


def test_evaluations_of_one_policy_on_two_seed_ranges_pool(tmp_path):
    a0 = write_eval(tmp_path / "a0.json", {"r": [True, False]})
    a1 = write_eval(tmp_path / "a1.json", {"r": [False, False]}, first_seed=1_000_002)
    b = write_eval(tmp_path / "b.json", {"r": [True, True, True, False]})
    code, out, err = run_cli(
        ["compare", f"{a0},{a1}", b, "--json", str(tmp_path / "c.json"), "--rounds", "100"]
    )
    assert code == 0, err
    assert "+50.0 points" in out  # 3 of 4 against 1 of 4
    overall = json.loads((tmp_path / "c.json").read_text())["overall"]
    assert overall["pairs"] == 4 and (overall["only_a"], overall["only_b"]) == (0, 2)
    code, _, err = run_cli(["compare", f"{a0},{a0}", b])
    assert code == 2 and "a0.json: r seed 1000000 is already in an earlier file" in err
