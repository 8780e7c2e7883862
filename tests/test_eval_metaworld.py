"""Reference policies on a real Metaworld task: the scripted expert succeeds, random does not."""

from __future__ import annotations

import pytest

from visuomotor.eval import EnvConfig, PolicySpec, evaluate


@pytest.mark.slow
def test_scripted_beats_random_on_reach(tmp_path):
    cfg = EnvConfig(render=False)  # reference policies read the state only
    scripted = evaluate("metaworld/reach-v3", PolicySpec(name="scripted"), 3, env_cfg=cfg, workers=2)
    assert scripted.overall.successes >= 2
    assert all(r.length < 500 for r in scripted.episodes if r.success)  # stopped at success
    random = evaluate("metaworld/reach-v3", PolicySpec(name="random"), 2, env_cfg=cfg, workers=2)
    assert random.overall.successes == 0
    assert all(r.length == 500 for r in random.episodes)
    # (Returns are not compared: episodes stop at success, so a failing policy sums more dense reward.)
