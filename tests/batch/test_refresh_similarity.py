"""``refresh --similarity``: the measure computed on Spark from Bigtable, recorded, part of a pass's identity."""

from __future__ import annotations

import json

import numpy as np
from scipy import sparse

from batch import similarity
from batch.cli import main as batch_main
from schemas.tuned import QueryKnobs, TunedConfig
from streamsim.app.cli import main as streamsim_main
from streamsim.runtime.seeding import write_scores
from tests.batch.test_refresh import connection_flags, mark_dirty, sparse_scores, visible


def as_matrix(scores: dict) -> tuple[list[str], sparse.csr_matrix]:
    ids = sorted({i for row in scores.values() for i in row})
    index = {item: k for k, item in enumerate(ids)}
    x = np.zeros((len(scores), len(ids)))
    for u, row in enumerate(scores.values()):
        for item, r in row.items():
            x[u, index[item]] = r
    return ids, sparse.csr_matrix(x)


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
    ids, matrix = as_matrix(scores)
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


def test_bad_measures_and_parameters_are_one_line_errors(capsys, tmp_path):
    not_json = tmp_path / "bad.json"
    not_json.write_text("{")
    cases = [
        (["--similarity", "pearson"], "unknown similarity 'pearson'"),
        (["--similarity", "shrinkage", "--param", "k1=1"], "no parameter 'k1'"),
        (["--similarity", "bm25", "--param", "b=3"], "within [0, 1]"),
        (["--param", "h"], "expected NAME=VALUE"),
        (["--similarity", "directed"], "order of each user's events"),
        (["--config", str(tmp_path / "missing.json")], "no such file"),
        (["--config", str(not_json)], "not JSON"),
        (["--entry-scale", "0"], "entry scale"),
    ]
    for flags, message in cases:
        assert batch_main(["refresh", *flags, "--bigtable-host", "127.0.0.1:1"]) == 2, flags
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, (flags, err)
