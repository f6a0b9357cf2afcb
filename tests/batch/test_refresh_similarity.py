"""``refresh --similarity``: the measure computed on Spark from Bigtable, recorded, part of a pass's identity."""

from __future__ import annotations

import json

import numpy as np

from batch import similarity
from batch.cli import main as batch_main
from schemas import Event, EventType, Weights, entries, layout
from schemas.tuned import QueryKnobs, TunedConfig
from streamsim.app.cli import main as streamsim_main
from streamsim.runtime.seeding import write_scores
from tests.batch.test_refresh import connection_flags, mark_dirty, sparse_scores, visible
from tests.support.similarity_oracles import directed_loop_oracle, score_matrix, weighted_walk_oracle


def refresh(capsys, *flags) -> dict:
    assert batch_main(["refresh", "--json", *flags]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_measure_is_computed_recorded_and_forces_a_full_pass(spark, fresh_stack, capsys, tmp_path):
    scores = sparse_scores(3, users=200, items=25)
    write_scores(fresh_stack, scores)
    flags = ["--threshold", "0", "--top-k", "100", *connection_flags(fresh_stack)]

    bm25 = refresh(capsys, "--similarity", "bm25", "--param", "k1=2", *flags)
    assert bm25["similarity"] == "bm25" and bm25["similarity_params"] == {"k1": 2.0, "b": 0.75}
    assert bm25["mode"] == "full" and bm25["spot_check"]["mean_relative_error"] < 1e-9
    ids, matrix = score_matrix(scores)
    expected = similarity.oracle(similarity.REGISTRY["bm25"], bm25["similarity_params"], matrix)
    rows = visible(fresh_stack, bm25["generation"])
    for i, item in enumerate(ids):
        want = {ids[j]: expected[i, j] for j in range(len(ids)) if j != i and expected[i, j] > 0}
        got = dict(rows.get(item, []))
        assert got.keys() == want.keys()
        assert all(abs(got[j] - want[j]) < 1e-9 for j in want)
    assert streamsim_main(["inspect", "similar", ids[0], "--json", *connection_flags(fresh_stack)]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["similarity"] == "bm25" and answer["similarity_params"]["k1"] == 2.0

    # Back to cosine: the measure is part of the pass's identity, so the pass is full ...
    cosine = refresh(capsys, *flags)
    assert cosine["similarity"] == "cosine" and cosine["mode"] == "full" and "differ" in cosine["reason"]
    # ... after which cosine refreshes incrementally, and other measures never do.
    mark_dirty(fresh_stack, [ids[0]])
    assert refresh(capsys, *flags)["mode"] == "incremental"
    config = tmp_path / "tuned.json"
    config.write_text(TunedConfig("shrinkage", {"h": 3}, QueryKnobs(popularity_blend=0.1)).to_json())
    shrunk = refresh(capsys, "--config", str(config), *flags)
    assert shrunk["similarity"] == "shrinkage" and shrunk["similarity_params"] == {"h": 3.0}
    again = refresh(capsys, "--config", str(config), *flags)
    assert again["mode"] == "full" and "full passes only" in again["reason"]
    # A flag overrides the configuration's measure (and drops its parameters).
    assert refresh(capsys, "--config", str(config), "--similarity", "jaccard", *flags)["similarity_params"] == {}


def test_weighted_rp3beta_is_refreshed_from_bigtable_as_the_weighted_walk(spark, fresh_stack, capsys):
    scores = sparse_scores(4, users=150, items=20)
    write_scores(fresh_stack, scores)
    flags = ["--threshold", "0", "--top-k", "100", *connection_flags(fresh_stack)]
    walk = refresh(capsys, "--similarity", "rp3beta_weighted", "--param", "beta=0.6", *flags)
    assert walk["similarity_params"] == {"alpha": 1.0, "beta": 0.6} and walk["mode"] == "full"
    assert walk["spot_check"]["mean_relative_error"] < 1e-9
    ids, matrix = score_matrix(scores)
    # The walk steps on the default entries f(r_ui); the pass sums Σ_u f(r_ui) from its own
    # blocks (the stream keeps no such statistic).
    expected = weighted_walk_oracle(entries.DEFAULT.apply(matrix.toarray()), 1.0, 0.6)
    rows = visible(fresh_stack, walk["generation"])
    for i, item in enumerate(ids):
        want = {ids[j]: expected[i, j] for j in range(len(ids)) if j != i and expected[i, j] > 0}
        got = dict(rows.get(item, []))
        assert got.keys() == want.keys()
        assert all(abs(got[j] - want[j]) < 1e-9 * max(1.0, want[j]) for j in want)


def test_bad_measures_and_parameters_are_one_line_errors(capsys, tmp_path):
    not_json = tmp_path / "bad.json"
    not_json.write_text("{")
    bad_entries = tmp_path / "entries.json"
    bad_entries.write_text('{"similarity": "cosine", "entries": "log"}')
    cases = [
        (["--similarity", "pearson"], "unknown similarity 'pearson'"),
        (["--similarity", "shrinkage", "--param", "k1=1"], "no parameter 'k1'"),
        (["--similarity", "bm25", "--param", "b=3"], "within [0, 1]"),
        (["--param", "h"], "expected NAME=VALUE"),
        (["--similarity", "directed", "--param", "window=0"], "within [1, 100]"),
        (["--config", str(tmp_path / "missing.json")], "no such file"),
        (["--config", str(not_json)], "not JSON"),
        (["--entry-scale", "0"], "entry scale"),
        (["--entry-transform", "sqrt"], "unknown entry transform 'sqrt'"),
        (["--entry-transform", "cap:0"], "needs the cap"),
        (["--config", str(bad_entries)], '"entries"'),
    ]
    for flags, message in cases:
        assert batch_main(["refresh", *flags, "--bigtable-host", "127.0.0.1:1"]) == 2, flags
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, (flags, err)


def ordered_events(seed: int, users: int = 60, items: int = 18) -> list[Event]:
    """Users' sessions of 1-90 events (some longer than RECENT_EVENTS), some in one millisecond.

    Two events of a user in one millisecond whose id hashes agree in RECENT_TIE_BITS bits would
    share a cell (``schemas.layout``); the fixture leaves such (rare) events out."""
    rng = np.random.default_rng(seed)
    events = []
    for u in range(users):
        ts = 1_700_000_000_000 + int(rng.integers(0, 10**6))
        cells = set()
        for n in range(int(rng.integers(1, 91))):
            ts += int(rng.choice([0, 1, 250]))  # ties: the id's hash orders them
            item = f"i{int(rng.integers(0, items))}"
            event = Event(f"u{u}-e{n}", f"u{u}", item, EventType.BROWSE, ts)
            if layout.recent_cell_micros(ts, event.event_id) not in cells:
                cells.add(layout.recent_cell_micros(ts, event.event_id))
                events.append(event)
    rng.shuffle(events)  # the order of arrival is not the order of events
    return events


def test_directed_is_computed_from_the_streams_recent_sequences(spark, fresh_stack, capsys):
    from streaming.store import FoldStore, fold_batch

    events = ordered_events(5)
    store = FoldStore(fresh_stack)
    for offset in range(0, len(events), 500):  # batches out of event order, one of them twice
        fold_batch(store, events[offset : offset + 500], Weights())
    fold_batch(store, events[:500], Weights())
    flags = ["--threshold", "0", "--top-k", "100", *connection_flags(fresh_stack)]
    stats = refresh(capsys, "--similarity", "directed", "--param", "window=3", "--param", "reverse=0.4", *flags)
    params = {"window": 3.0, "reverse": 0.4, "beta": 0.3}
    assert stats["similarity"] == "directed" and stats["similarity_params"] == params and stats["mode"] == "full"

    # The oracle: each user's last RECENT_EVENTS events by (event time, id hash), by brute force.
    ids = sorted({e.item for e in events})
    index = {item: k for k, item in enumerate(ids)}
    by_user: dict[str, list[Event]] = {}
    for e in events:
        by_user.setdefault(e.user, []).append(e)
    sequences = [
        [index[e.item] for e in sorted(evs, key=lambda e: layout.recent_cell_micros(e.ts_ms, e.event_id))][
            -layout.RECENT_EVENTS :
        ]
        for evs in by_user.values()
    ]
    assert max(len(evs) for evs in by_user.values()) > layout.RECENT_EVENTS  # the bound is exercised
    assert stats["spot_check"]["sequences"] == len(sequences)
    expected = directed_loop_oracle(sequences, len(ids), 3, 0.4, 0.3)
    rows = visible(fresh_stack, stats["generation"])
    for i, item in enumerate(ids):
        want = {ids[j]: expected[i, j] for j in range(len(ids)) if j != i and expected[i, j] > 0}
        got = dict(rows.get(item, []))
        assert got.keys() == want.keys(), item
        assert all(abs(got[j] - want[j]) < 1e-9 * max(1.0, want[j]) for j in want), item
    assert sum(len(r) for r in rows.values()) > len(ids)
    # Full passes only: the next pass is full again, and says why.
    again = refresh(capsys, "--similarity", "directed", "--param", "window=3", "--param", "reverse=0.4", *flags)
    assert again["mode"] == "full" and "full passes only" in again["reason"]


def shop_events(seed: int, users: int = 500, items: int = 12) -> list[Event]:
    """Users with a few events each on popular items, mixed types: r_ui from 0.5 to tens."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, items + 1)
    events = []
    for u in range(users):
        for n in range(int(rng.integers(2, 9))):
            item = int(rng.choice(items, p=popularity / popularity.sum()))
            kind = list(EventType)[int(rng.choice(3, p=[0.7, 0.2, 0.1]))]
            events.append(Event(f"u{u}-e{n}", f"u{u}", f"i{item}", kind, 1_700_000_000_000 + n))
    return events


def test_evaluate_dimsum_rows_equal_a_default_refresh_of_the_same_events(spark, fresh_stack, capsys):
    """``evaluate``'s dimsum@s and ``refresh --threshold s`` (defaults otherwise) on the same
    events: the same measure, entries and M, the same keep decisions, the same rows."""
    from streaming.store import FoldStore, fold_batch
    from streamsim.app import evaluate

    events = shop_events(8)
    store = FoldStore(fresh_stack)
    for offset in range(0, len(events), 400):  # the stream folds the norms of the entries
        fold_batch(store, events[offset : offset + 400], Weights())
    s = 0.5
    stats = refresh(capsys, "--threshold", str(s), "--top-k", "100", *connection_flags(fresh_stack))
    assert stats["entry_transform"] == entries.DEFAULT.spec and stats["entry_scale_value"] == entries.DEFAULT.ceiling

    interactions = evaluate.build_interactions(events, Weights())
    rows, counts = evaluate.dimsum_similarities(s)(interactions, 100)
    assert counts["pairs_emitted"] == stats["pairs_emitted"] < counts["pairs_exact"] == stats["pairs_exact"]
    got = visible(fresh_stack, stats["generation"])
    compared = 0
    for i, item in enumerate(interactions.items):
        lo, hi = rows.indptr[i], rows.indptr[i + 1]
        want = {interactions.items[j]: v for j, v in zip(rows.indices[lo:hi].tolist(), rows.data[lo:hi].tolist())}
        have = dict(got.get(item, []))
        assert have.keys() == want.keys(), item
        assert all(abs(have[j] - want[j]) < 1e-9 for j in want), item
        compared += len(want)
    assert compared > 50

    # Another transform: the stream folds no norms for it, so the pass sums its own (a full
    # pass, every time), and still equals evaluate's exact rows for those entries.
    flags = ["--entry-transform", "cap:2", "--threshold", "0", "--top-k", "100", *connection_flags(fresh_stack)]
    capped = refresh(capsys, *flags)
    assert capped["entry_transform"] == "cap:2" and capped["entry_scale_value"] == 2.0
    assert capped["mode"] == "full" and capped["spot_check"]["mean_relative_error"] < 1e-9
    rows, _ = evaluate.measure_similarities("cosine", transform="cap:2")(interactions, 100)
    got = visible(fresh_stack, capped["generation"])
    for i, item in enumerate(interactions.items):
        lo, hi = rows.indptr[i], rows.indptr[i + 1]
        want = dict(zip([interactions.items[j] for j in rows.indices[lo:hi].tolist()], rows.data[lo:hi].tolist()))
        have = dict(got.get(item, []))
        assert have.keys() == want.keys() and all(abs(have[j] - want[j]) < 1e-9 for j in want), item
    mark_dirty(fresh_stack, [interactions.items[0]])
    again = refresh(capsys, *flags)
    assert again["mode"] == "full" and "folds no norms" in again["reason"]
