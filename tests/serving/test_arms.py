"""A/B arms: stable assignment, the requested split, one measure, and a live server with two arms."""

from __future__ import annotations

import subprocess
import sys

import pytest

from schemas import attribution
from schemas.tuned import QueryKnobs, TunedConfig, TunedConfigError
from serving import arms
from tests.serving.live import G1, serve, wait_for


def _config(path, similarity="cosine", **knobs) -> str:
    path.write_text(TunedConfig(similarity, {}, QueryKnobs(**knobs)).to_json())
    return str(path)


def test_arms_split_visitors_within_tolerance_and_keep_them(tmp_path):
    both = arms.from_configs((_config(tmp_path / "A.json"), _config(tmp_path / "B.json", popularity_blend=0.5)), 30)
    assert [(a.name, a.share) for a in both] == [("A", 0.3), ("B", 0.7)]
    visitors = [f"visitor-{n}" for n in range(20_000)]
    assigned = [arms.assign(both, v).name for v in visitors]
    share = assigned.count("A") / len(visitors)
    # 20,000 visitors: the binomial standard deviation of the share is 0.0032; 4 of them.
    assert abs(share - 0.3) < 0.013
    # The same in another process (another hash seed, as another worker or a restart).
    script = (
        "from serving import arms; import sys; print(''.join(str(int(arms.position(v) < .3)) for v in sys.argv[1:]))"
    )
    other = subprocess.run([sys.executable, "-c", script, *visitors[:500]], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == "".join("1" if a == "A" else "0" for a in assigned[:500])
    assert arms.assign(both, None).name == "A"  # no visitor id: the control


def test_arms_must_share_one_measure(tmp_path):
    with pytest.raises(TunedConfigError, match="share the similarity measure"):
        arms.from_configs((_config(tmp_path / "A.json"), _config(tmp_path / "B.json", similarity="bm25")), None)
    with pytest.raises(TunedConfigError, match="--split"):
        arms.from_configs((_config(tmp_path / "A.json"), _config(tmp_path / "B.json")), 100)


def test_a_server_with_two_arms_answers_each_visitor_from_its_arm(seeded, tmp_path):
    configs = (_config(tmp_path / "control.json"), _config(tmp_path / "blend.json", popularity_blend=1.0))
    live = serve(seeded, arm_configs=configs, split=50.0)
    try:
        assert wait_for(lambda: live.get("/readyz")[0] == 200)
        expected = {v: arms.assign(live.config.arms, v).name for v in (f"v{n}" for n in range(40))}
        assert set(expected.values()) == {"control", "blend"}
        for visitor, arm in expected.items():
            status, answer = live.request("GET", "/recommendations?browsed=a&n=3", headers={"X-Visitor-Id": visitor})
            token = attribution.decode(answer["attribution"])
            assert status == 200 and answer["arm"] == token.arm == token.config == arm and token.generation == G1
            # The blend arm mixes in popularity: its top item is the most popular one.
            assert (answer["items"][0]["source"] == "popular") == (arm == "blend")
        text = live.metrics()
        counted = {a: sum(1 for v in expected.values() if v == a) for a in ("control", "blend")}
        for arm, n in counted.items():
            assert f'streamsim_serving_answers_total{{arm="{arm}",route="session"}} {float(n)}' in text
    finally:
        live.stop()
