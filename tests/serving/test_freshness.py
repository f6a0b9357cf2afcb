"""Freshness on /metrics: the served generation's age and the lag of the oldest change it lacks."""

from __future__ import annotations

import re
import time

from batch import dimsum
from batch.refresh import PassOptions, run_pass
from schemas import layout
from streamsim.runtime.bigtable import entry, open_tables, set_cell
from streamsim.runtime.seeding import write_scores
from tests.serving.live import serve, wait_for


def gauge(text: str, name: str) -> float | None:
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


def test_metrics_export_the_lag_of_the_oldest_change_not_in_the_served_generation(spark, fresh_stack):
    write_scores(fresh_stack, {f"u{k}": {"a": 2.0, "b": 1.0, f"c{k % 3}": 0.5} for k in range(30)})
    options = PassOptions(params=dimsum.DimsumParams(threshold=0.0, top_k=5), partitions=2)
    pending_marked = []

    def change_during_the_pass(generation):
        # A change folded after the pass read its input: not in this generation.
        open_tables(fresh_stack).items.mutate(
            [entry(layout.item_row_key("b"), [set_cell(layout.DIRTY, layout.DIRTY_MARK, b"")])]
        )
        pending_marked.append(time.time())

    stale = run_pass(spark, fresh_stack, options, before_flip=change_during_the_pass)
    assert stale[layout.PENDING_SINCE_KEY] is not None
    assert stale[layout.WATERMARK_KEY] <= stale[layout.PENDING_SINCE_KEY] <= pending_marked[0] * 1e6 + 1e3

    live = serve(fresh_stack)
    try:
        text = wait_for(lambda: (t := live.metrics()) and gauge(t, "streamsim_serving_generation") and t)
        age = gauge(text, "streamsim_serving_generation_age_seconds")
        lag = gauge(text, "streamsim_serving_freshness_lag_seconds")
        scraped = time.time()
        # The lag runs from the pending change, later than the pass start the age runs from.
        assert lag is not None and 0 < lag <= age
        assert abs(lag - (scraped - stale[layout.PENDING_SINCE_KEY] / 1e6)) < 5

        # The next pass takes that change in; nothing was pending when it published: lag 0.
        fresh = run_pass(spark, fresh_stack, options)
        assert fresh["flipped"] and fresh[layout.PENDING_SINCE_KEY] is None

        def served_fresh():
            t = live.metrics()
            return t if gauge(t, "streamsim_serving_generation") == float(fresh["generation"]) else None

        text = wait_for(served_fresh)
        assert gauge(text, "streamsim_serving_freshness_lag_seconds") == 0.0
    finally:
        live.stop()
