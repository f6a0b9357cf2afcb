"""Session and temporal protocols of ``streamsim evaluate`` and ``streamsim tune``, on committed fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from schemas import Event, EventType, layout
from schemas.tuned import QueryKnobs, read_tuned
from streamsim.app import evaluate, tune
from streamsim.app.cli import main

DATA = Path(__file__).resolve().parents[1] / "data"
SESSIONS = DATA / "diginetica-sessions-head.txt.gz"
PAIRS = DATA / "diginetica-test-pairs-head.tsv.gz"
TMALL = DATA / "tmall-head.csv.gz"


def test_session_scoring_by_hand():
    # a -> b twice, a -> c once, b -> d; the prefix [d, a] asks for what follows a.
    interactions = evaluate.session_interactions([["a", "b"], ["a", "b", "d"], ["a", "c"], ["d", "a"]])
    queries = evaluate.session_queries(interactions, [(["d", "a"], "b"), (["a"], "c"), (["zz"], "a")])
    directed = evaluate.measure_similarities("directed", {"window": 1, "reverse": 0.0, "beta": 0.0})(interactions, 10)[
        0
    ]
    index = interactions.item_index
    counts = np.diff(interactions.matrix.tocsc().indptr)
    popular = evaluate.popularity(interactions.matrix)
    knobs = QueryKnobs(recency_decay=0.1, allow_repeats=True)
    recs = evaluate.recommend(directed, queries, popular, counts, knobs)
    # [d, a] with the newest item weighing most: a's successors b (2) then c (1); d's successor a
    # (0.1) is allowed back (repeats), after them.
    assert recs[0, :3].tolist() == [index["b"], index["c"], index["a"]]
    no_repeats = evaluate.recommend(directed, queries, popular, counts, QueryKnobs(recency_decay=0.1))
    assert index["a"] not in no_repeats[0].tolist() and index["d"] not in no_repeats[0].tolist()
    # An unknown prefix falls back to popularity: a (4 sessions) first.
    assert recs[2, 0] == index["a"]
    metrics = evaluate.hit_metrics(recs, np.array([q.target for q in queries]), len(index))
    # b at rank 0 (1), c at rank 1 (1/2), a unknown target... "a" is known: rank 0 (1).
    assert metrics["mrr@20"] == pytest.approx((1 + 1 / 2 + 1) / 3)
    assert metrics["hr@20"] == 1.0


def test_split_by_time_holds_out_new_items_after_the_cut():
    rows = [("u1", "a", 1), ("u1", "b", 2), ("u2", "a", 3), ("u1", "a", 9), ("u1", "c", 10), ("u3", "d", 11)]
    events = [Event(f"e{n}", u, i, EventType.BROWSE, t) for n, (u, i, t) in enumerate(rows)]
    train, held = evaluate.split_by_time(events, 0.5)
    assert [e.event_id for e in train] == ["e0", "e1", "e2"]
    # u1's a is not new; u3 has no training history.
    assert held == [("u1", "c")]
    with pytest.raises(ValueError, match=r"within \(0, 1\)"):
        evaluate.split_by_time(events, 1.0)


def test_carved_validation_comes_from_training_only():
    interactions = evaluate.session_interactions(evaluate.read_sessions(str(SESSIONS)))
    train, queries = tune.carve_sessions(interactions, 0.1)
    assert len(train.users) == 2700 and train.matrix.shape[0] == 2700
    assert len(queries) == sum(len(s) - 1 for s in interactions.sequences[2700:])
    users = evaluate.build_interactions(
        [Event(f"e{n}", f"u{n % 7}", f"i{n % 11}", EventType.BROWSE, n) for n in range(200)],
        evaluate.Weights(),
    )
    kept, held = tune.carve_users(users, 0.3, seed=1)
    assert len(held) == 2
    for query in held:
        # The held-out item left the user's training row and sequence.
        assert query.target not in query.items.tolist()
    assert kept.matrix.nnz == users.matrix.nnz - 2


def test_directed_sees_the_sequences_a_refresh_reads():
    """Each user's last RECENT_EVENTS events, as the stream's ``recent`` rows keep them."""
    rng = np.random.default_rng(3)
    users = evaluate.build_interactions(
        [Event(f"e{n}", f"u{n % 3}", f"i{rng.integers(40)}", EventType.BROWSE, n) for n in range(600)],
        evaluate.Weights(),
    )
    assert [len(s) for s in users.sequences] == [200, 200, 200]
    params = {"window": 2, "reverse": 0.5, "beta": 0.3}
    got, _ = evaluate.measure_similarities("directed", params)(users, 100)
    recent = [s[-layout.RECENT_EVENTS :] for s in users.sequences]
    for sequences, same in ((recent, True), (users.sequences, False)):
        expected = evaluate.similarity.directed_cooccurrence(sequences, len(users.items), **params)
        assert np.allclose(got.toarray(), expected.toarray()) is same


def run_json(capsys, *argv) -> dict:
    assert main([*argv, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_evaluate_sessions_reports_every_measure(capsys, tmp_path):
    out = tmp_path / "report"
    results = run_json(capsys, "evaluate", "--sessions", str(SESSIONS), "--test-pairs", str(PAIRS), "--out", str(out))
    assert {"popular", "cosine", "shrinkage", "bm25", "asymmetric", "jaccard", "rp3beta", "directed"} <= set(results)
    assert {"cosine+popular", "cosine+recency"} <= set(results)
    assert all({"hr@10", "hr@20", "ndcg@10", "mrr@20"} <= m.keys() for m in results.values())
    # Item-item beats popularity on next-item pairs the training sessions can answer.
    assert results["cosine"]["hr@20"] > results["popular"]["hr@20"]
    assert results["directed"]["mrr@20"] > results["popular"]["mrr@20"]
    assert (out / "report.md").read_text().count("| directed |") == 1 and (out / "methods.png").exists()
    # Repeats are allowed by default; excluding the prefix changes the lists.
    excluded = run_json(
        capsys,
        "evaluate",
        "--sessions",
        str(SESSIONS),
        "--test-pairs",
        str(PAIRS),
        "--no-allow-repeats",
        "--methods",
        "cosine",
        "--out",
        str(out),
    )
    assert set(excluded) == {"cosine"} and excluded["cosine"] != results["cosine"]


def test_evaluate_split_by_time(capsys, tmp_path):
    results = run_json(
        capsys,
        "evaluate",
        "--train",
        str(TMALL),
        "--split-by-time",
        "0.7",
        "--methods",
        "popular,cosine,jaccard",
        "--out",
        str(tmp_path),
    )
    assert list(results) == ["popular", "cosine", "jaccard"]
    assert all(0.0 <= m["hr@20"] <= 1.0 for m in results.values())


def test_tune_writes_a_winner_that_evaluate_reads(capsys, tmp_path):
    config = tmp_path / "tuned.json"
    assert main(["tune", "--sessions", str(SESSIONS), "--out", str(config), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "chosen:" in out and "validation:" in err
    tuned = read_tuned(config)
    provenance = tuned.provenance
    assert provenance["metric"] == "hr@20" and provenance["protocol"] == "sessions"
    assert provenance["data"].endswith(SESSIONS.name) and "when" in provenance and "newest 0.3 " in provenance["split"]
    assert tuned.serving.allow_repeats is True
    table = {
        line.split("|")[1].strip().replace("**", "").removesuffix(" (chosen)").removesuffix(" (default)"): line
        for line in out.splitlines()
        if line.startswith("| ")
    }
    assert "popular" in table and "cosine()" in table
    # Directed co-occurrence is searched (a refresh computes it), and so is decay over a session.
    assert any(name.startswith("directed(") for name in table) and any("decay" in name for name in table)
    # The choice is the default, or beats it beyond noise (its interval vs the default is above 0).
    choice = provenance["choice"]
    # 10% of these 3,000 sessions give 1,169 pairs: tune holds out up to 30% for more.
    assert choice["default"] == "cosine()" and provenance["validation_pairs"] > 3000
    assert choice["chosen"] == choice["default"] or choice["vs_default"][1] > 0
    mean, low, high = choice["score"]
    assert low <= mean <= high and mean == pytest.approx(provenance["score"]["hr@20"])
    # The report sits beside the configuration: the table, the reason, the protocol, the plot.
    report = config.with_suffix(".md").read_text()
    assert choice["reason"] in report and "Validation protocol" in report and "(tuned.png)" in report
    assert config.with_suffix(".png").read_bytes().startswith(b"\x89PNG")
    results = run_json(
        capsys,
        "evaluate",
        "--sessions",
        str(SESSIONS),
        "--test-pairs",
        str(PAIRS),
        "--config",
        str(config),
        "--methods",
        "cosine,popular,tuned",
        "--out",
        str(tmp_path / "r"),
    )
    assert set(results) == {"cosine", "popular", "tuned"}


def test_tune_on_events(capsys, tmp_path):
    config = tmp_path / "tuned.json"
    assert main(["tune", "--train", str(TMALL), "--out", str(config), "--no-progress"]) == 0
    tuned = read_tuned(config)
    # Every user with two items or more gives a validation pair; so few hits cannot tell candidates apart.
    assert tuned.provenance["validation_pairs"] == 508
    assert "too few to tell candidates apart" in capsys.readouterr().err
    assert main(["tune", "--train", str(TMALL), "--validation", "0.2", "--out", str(config), "--no-progress"]) == 0
    tuned = read_tuned(config)
    assert tuned.provenance["metric"] == "hr@10" and tuned.serving.allow_repeats is False
    # What a refresh and the server can apply: directed co-occurrence (from each user's recent
    # events), no recency decay over user histories.
    assert tuned.similarity in evaluate.similarity.REGISTRY
    assert tuned.serving.recency_decay == 1.0 and tuned.provenance["with_order"] is False
    out = capsys.readouterr().out
    assert "directed(" in out and "decay" not in out
    assert main(["tune", "--train", str(TMALL), "--with-order", "--out", str(config), "--no-progress"]) == 0
    assert "decay" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["evaluate", "--sessions", str(SESSIONS)], "--test-pairs"),
        (["evaluate", "--train", str(TMALL)], "exactly one of --test"),
        (["evaluate", "--train", str(TMALL), "--split-by-time", "1.5"], "within (0, 1)"),
        (["evaluate", "--sessions", str(SESSIONS), "--test-pairs", str(TMALL)], "prefix<TAB>target"),
        (["evaluate", "--sessions", str(SESSIONS), "--test-pairs", str(PAIRS), "--methods", "nope"], "unknown method"),
        (
            ["evaluate", "--sessions", str(SESSIONS), "--test-pairs", str(PAIRS), "--config", "/nonexistent.json"],
            "no such file",
        ),
        (["evaluate", "--sessions", "/nonexistent", "--test-pairs", str(PAIRS)], "No such file"),
        (["tune", "--out", "x.json"], "exactly one of --train"),
        (["tune", "--sessions", str(SESSIONS), "--validation", "0.9", "--out", "x.json"], "--validation"),
    ],
)
def test_mistakes_are_one_line_errors(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_session_knn_methods_rank_as_the_oracle_scores():
    """``evaluate``'s session methods (the server's code over the training sessions in arrays)
    give the oracle's ranking; items the oracle scores 0 are filled by popularity."""
    from serving.session_knn import SessionKnn
    from streamsim.app.session_index import SessionIndex
    from tests.support.session_oracle import session_knn_scores

    interactions = evaluate.session_interactions(evaluate.read_sessions(str(SESSIONS)))
    queries = evaluate.session_queries(interactions, evaluate.read_test_pairs(str(PAIRS)))[:40]
    sequences = [s.tolist() for s in interactions.sequences]
    popular = evaluate.popularity(interactions.matrix)
    for knn in (SessionKnn(k=50, sample=300), evaluate.SESSION_METHODS["vstan"]):
        index = SessionIndex(interactions.sequences, len(interactions.items), knn.sample)
        recs = evaluate.recommend_sessions(index, knn, None, queries, popular, QueryKnobs(allow_repeats=True))
        idf = dict(enumerate(index.idf.tolist()))
        ages = dict(enumerate(index.ages(np.arange(index.sessions)).tolist()))
        for query, row in zip(queries, recs):
            scores = session_knn_scores(knn, query.items.tolist(), sequences, idf, ages)
            ranked = [i for i in row.tolist() if i in scores]
            # Best first (ties in any order), then the fill.
            assert [scores[i] for i in ranked] == sorted((scores[i] for i in ranked), reverse=True)
            assert len(ranked) == min(20, len(scores))
            if len(scores) > 20:
                assert min(scores[i] for i in ranked) >= sorted(scores.values(), reverse=True)[19] - 1e-12
    methods = evaluate.default_methods(ordered=True)
    results = evaluate.score_queries(
        interactions,
        evaluate.session_queries(interactions, evaluate.read_test_pairs(str(PAIRS))),
        {name: methods[name] for name in ("popular", "cosine", "v-sknn", "vstan")},
        allow_repeats=True,
    )
    assert results["v-sknn"]["hr@20"] > results["cosine"]["hr@20"] > results["popular"]["hr@20"]
