"""A flood of random ids through the API leaves the real rows cached (the probe of the issue)."""

from __future__ import annotations

import re

from tests.serving.live import serve


def _counter(text: str, name: str) -> float:
    return float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))


def test_random_ids_do_not_flush_the_rows_of_real_items(seeded):
    live = serve(seeded, cache_rows=10, absent_cache_rows=50)
    try:
        hot = {"items": [{"item": "a"}, {"item": "b"}, {"item": "c"}], "n": 3}
        assert live.post("/recommendations", hot)[0] == 200
        for burst in range(30):  # 3,000 unknown ids, 300 times the room for rows
            junk = {"items": [{"item": f"rnd-{burst}-{k}"} for k in range(100)], "n": 3}
            assert live.post("/recommendations", junk)[0] == 200
        before = live.metrics()
        for _ in range(5):
            assert live.post("/recommendations", hot)[0] == 200
        after = live.metrics()
        # The hot session's rows were all still cached: 15 hits, no read.
        assert _counter(after, "streamsim_serving_cache_misses_total") == _counter(
            before, "streamsim_serving_cache_misses_total"
        )
        assert (
            _counter(after, "streamsim_serving_cache_hits_total")
            - _counter(before, "streamsim_serving_cache_hits_total")
            == 15
        )
        assert _counter(after, "streamsim_serving_cache_rows") == 3
        assert _counter(after, "streamsim_serving_cache_absent_ids") == 50
    finally:
        live.stop()
