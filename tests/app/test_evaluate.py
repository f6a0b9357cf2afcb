"""Offline evaluation metrics against hand-computed values."""

import numpy as np
import pytest

from schemas import Event, EventType, Weights, entries
from streamsim.app import evaluate


def test_hit_metrics_by_hand():
    recommended = np.array([[5, 1, 2] + [-1] * 17, [3, 4, 6] + [-1] * 17, list(range(20, 40))])
    targets = np.array([1, 9, 39])  # rank 1, a miss, rank 19
    metrics = evaluate.hit_metrics(recommended, targets, n_items=40)
    assert metrics["hr@10"] == pytest.approx(1 / 3)
    assert metrics["hr@20"] == pytest.approx(2 / 3)
    assert metrics["ndcg@10"] == pytest.approx((1 / np.log2(3)) / 3)
    top10 = {5, 1, 2, 3, 4, 6, *range(20, 30)}
    assert metrics["coverage"] == pytest.approx(len(top10) / 40)


def events(rows):
    return [Event(f"e{n}", u, i, EventType(t), 0) for n, (u, i, t) in enumerate(rows)]


def test_evaluate_small_fixture_by_hand():
    # Items a and b always come together; c is everyone's; d is alone.
    train = events(
        [
            ("u1", "a", "purchase"),
            ("u1", "b", "purchase"),
            ("u2", "a", "basket"),
            ("u2", "b", "basket"),
            ("u2", "c", "browse"),
            ("u3", "a", "browse"),
            ("u3", "c", "browse"),
            ("u4", "c", "browse"),
            ("u4", "d", "browse"),
            ("u5", "c", "browse"),
        ]
    )
    interactions = evaluate.build_interactions(train, Weights())
    assert interactions.matrix.shape == (5, 4)
    # u3 has a and c: b (co-occurs with a twice) must come first; u5 has c only.
    held_out = [("u3", "b"), ("u5", "a"), ("stranger", "a")]
    results = evaluate.evaluate(interactions, held_out, top_k=10)
    exact, raw, popular = results["cosine"], results["cosine raw"], results["popular"]
    # Sampling with entries bounded by the transform's ceiling keeps every entry of this tiny set: exact.
    assert results["dimsum@0.5"]["hr@10"] == exact["hr@10"]
    assert results["dimsum@0.5"]["mean_relative_error"] == pytest.approx(0.0, abs=1e-12)
    # raw scores: u3 -> b at rank 0 (hit); u5 -> c's neighbours by cosine, d (0.5) before a
    # (0.197), so a at rank 1; the stranger has no history and always misses.
    assert raw["hr@10"] == pytest.approx(2 / 3)
    assert _ndcg_u5(interactions, entries.RAW) == pytest.approx(1 / np.log2(3))
    assert raw["ndcg@10"] == pytest.approx((1.0 + 1 / np.log2(3)) / 3)
    # default entries r/(r + 0.1): a's browse, basket and purchase weigh almost alike, so
    # cos(c, a) = 0.556 passes cos(c, d) = 0.5 and a comes first.
    assert exact["hr@10"] == pytest.approx(2 / 3)
    assert _ndcg_u5(interactions, entries.DEFAULT) == pytest.approx(1.0)
    assert exact["ndcg@10"] == pytest.approx(2 / 3)
    # popularity: c (4 users), a (3), b (2), d (1); u3 owns a, c -> b first: hit; u5 owns c -> a first: hit.
    assert popular["hr@10"] == pytest.approx(2 / 3)
    assert popular["ndcg@10"] == pytest.approx(2 / 3)


def _ndcg_u5(interactions, transform):
    # u5 (history c) ranks c's neighbours by cosine; compute a's rank from the definition.
    m = transform.apply(interactions.matrix.toarray())
    idx = interactions.item_index
    c = m[:, idx["c"]]
    cos = {i: m[:, j] @ c / np.linalg.norm(m[:, j]) / np.linalg.norm(c) for i, j in idx.items() if i != "c"}
    order = sorted(cos, key=lambda i: (-cos[i], idx[i]))
    return 1.0 / np.log2(order.index("a") + 2)


def test_held_out_file_needs_a_header(tmp_path):
    path = tmp_path / "test.csv"
    path.write_text("6,253\n")
    with pytest.raises(ValueError, match="header"):
        evaluate.read_held_out(str(path))
    path.write_text("user,item\n6,253\n9,392\n")
    assert evaluate.read_held_out(str(path)) == [("6", "253"), ("9", "392")]


def test_report_has_table_and_plots(tmp_path):
    results = {
        "dimsum@0": {
            "hr@10": 0.03,
            "hr@20": 0.05,
            "ndcg@10": 0.01,
            "coverage": 0.5,
            "seconds": 1.0,
            "pairs_emitted": 1000,
            "mean_relative_error": 0.0,
        },
        "dimsum@0.5": {
            "hr@10": 0.02,
            "hr@20": 0.04,
            "ndcg@10": 0.01,
            "coverage": 0.4,
            "seconds": 0.5,
            "pairs_emitted": 100,
            "mean_relative_error": 0.1,
        },
        "popular": {"hr@10": 0.007, "hr@20": 0.01, "ndcg@10": 0.003, "coverage": 0.001, "seconds": 0.1},
    }
    written = evaluate.write_report(results, tmp_path, title="fixture")
    report = (tmp_path / "report.md").read_text()
    assert "| dimsum@0.5 | 0.0200 |" in report
    assert {p.split("/")[-1] for p in written} == {
        "report.md",
        "hr_vs_threshold.png",
        "pairs_and_error_vs_threshold.png",
        "methods.png",
    }
    assert all((tmp_path / name).stat().st_size > 1000 for name in ("hr_vs_threshold.png", "methods.png"))


def test_evaluate_command_prints_json_and_writes_the_report(tmp_path):
    import json
    import subprocess
    import sys

    train = tmp_path / "train.csv"
    train.write_text(
        "timestamp,user,item,behavior\n"
        + "".join(
            f"{1511539200 + n},{u},{i},{b}\n"
            for n, (u, i, b) in enumerate(
                [
                    ("1", "10", "buy"),
                    ("1", "11", "buy"),
                    ("2", "10", "cart"),
                    ("2", "11", "cart"),
                    ("2", "12", "fav"),
                    ("3", "10", "fav"),
                    ("3", "12", "fav"),
                    ("4", "12", "fav"),
                    ("4", "13", "fav"),
                ]
            )
        )
    )
    test = tmp_path / "test.csv"
    test.write_text("user,item\n3,11\n4,10\n")
    out = tmp_path / "report"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamsim",
            "evaluate",
            "--train",
            str(train),
            "--test",
            str(test),
            "--out",
            str(out),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert {"dimsum@0.1", "dimsum@0.5", "cosine", "cosine raw", "bm25", "rp3beta", "popular"} <= set(metrics)
    assert {"pairs_emitted", "pairs_exact", "recall_above_s", "mean_relative_error"} <= metrics["dimsum@0.1"].keys()
    assert all({"hr@10", "hr@20", "ndcg@10", "mrr@20", "coverage"} <= m.keys() for m in metrics.values())
    assert metrics["cosine"]["hr@10"] == 1.0  # 3 -> 11 via 10; 4 -> 10 via 12
    assert (out / "report.md").exists() and (out / "hr_vs_threshold.png").exists()


@pytest.mark.parametrize(
    "test_file, message",
    [
        ("user,item\nu1,a\ngarbage\n", "test.csv:3: expected 'user,item', got 1 field(s)"),
        ("user,item\n", "test.csv has a header and no pairs"),
        ("user,item\nu1,a\n,b\n", "test.csv:3: expected 'user,item'"),
        (b"user,item\nu1,\xe9\n", "test.csv: not UTF-8 text"),
    ],
)
def test_a_bad_test_file_names_its_line_and_exits_2(tmp_path, capsys, test_file, message):
    from streamsim.app.cli import main

    train = tmp_path / "train.csv"
    train.write_text("user,productSku,type\nu1,a,1\nu1,b,1\nu2,a,1\nu2,b,2\n")
    test = tmp_path / "test.csv"
    (test.write_bytes if isinstance(test_file, bytes) else test.write_text)(test_file)
    code = main(["evaluate", "--train", str(train), "--test", str(test), "--json", "--out", str(tmp_path / "r")])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == "" and "NaN" not in captured.out
    assert captured.err.count("\n") == 1 and message in captured.err, captured.err


def test_header_only_session_pairs_are_an_error(tmp_path):
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("prefix\ttarget\n")
    with pytest.raises(ValueError, match="pairs.tsv has a header and no pairs"):
        evaluate.read_test_pairs(str(pairs))
