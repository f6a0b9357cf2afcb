"""Which entry transform: quality (exact cosine) and sampling (DIMSUM at s) per transform.

For each data set and each candidate transform (``schemas.entries``) this prints HR@10 (held-out
pairs) or HR@20 / MRR@20 (sessions) of exact cosine on the transformed entries, and of
``dimsum@s``, what ``refresh --threshold s`` computes with that transform (M its ceiling),
with its pairs emitted / exact and the error of the pairs above s; scoring as ``streamsim
evaluate`` scores.

    .venv/bin/python -m benchmarks.entry_transforms [--sets tmall,tmall-head,diginetica,diginetica-head]

Data: Tmall and Diginetica from ``--shared`` (default ../shared/data), the heads from
``tests/data`` (Tmall's head held out by ``--split-by-time 0.9``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from schemas import Weights, entries, parse_event
from streamsim.app import evaluate
from streamsim.sources.formats import read_records

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = ("raw", "cap:6", "cap:2", "saturate:0.5", "saturate:1", "saturate:2", "saturate:6", "log:6", "log:20")


def _events(path: Path):
    return [parse_event(r.data) for r in read_records(path, "auto") if r.data is not None]


def load(name: str, shared: Path):
    """(interactions, queries, metric) of one data set."""
    weights = Weights()
    if name == "tmall":
        base = shared / "tmall-multibehavior"
        interactions = evaluate.build_interactions(_events(base / "train_interactions.csv.gz"), weights)
        held = evaluate.read_held_out(str(base / "test_buy.csv"))
        return interactions, evaluate.user_queries(interactions, held), "hr@10", None
    if name == "tmall-head":
        train, held = evaluate.split_by_time(_events(ROOT / "tests" / "data" / "tmall-head.csv.gz"), 0.9)
        interactions = evaluate.build_interactions(train, weights)
        return interactions, evaluate.user_queries(interactions, held), "hr@10", None
    if name == "diginetica":
        base = shared / "diginetica"
        sessions, pairs = base / "processed_train_sessions.txt.gz", base / "processed_test_pairs.tsv.gz"
    else:
        base = ROOT / "tests" / "data"
        sessions, pairs = base / "diginetica-sessions-head.txt.gz", base / "diginetica-test-pairs-head.tsv.gz"
    interactions = evaluate.session_interactions(evaluate.read_sessions(str(sessions)))
    queries = evaluate.session_queries(interactions, evaluate.read_test_pairs(str(pairs)))
    return interactions, queries, "hr@20", True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="tmall,tmall-head,diginetica,diginetica-head")
    parser.add_argument("--transforms", default=",".join(CANDIDATES))
    parser.add_argument("--threshold", type=float, default=0.1)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args(argv)
    s = args.threshold
    print(f"| data | transform | M | exact | dimsum@{s:g} | pairs emitted / exact | recall above s | rel. error |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.sets.split(","):
        interactions, queries, metric, repeats = load(name, args.shared)
        for spec in args.transforms.split(","):
            f = entries.parse(spec)
            methods = {
                "exact": evaluate.Method(evaluate.measure_similarities("cosine", transform=f)),
                "sampled": evaluate.Method(evaluate.dimsum_similarities(s, transform=f)),
            }
            got = evaluate.score_queries(interactions, queries, methods, allow_repeats=repeats)
            exact, sampled = got["exact"], got["sampled"]
            print(
                f"| {name} | {f.spec} | {f.ceiling:g} | {metric} {exact[metric]:.4f} | {sampled[metric]:.4f} | "
                f"{sampled['pairs_emitted']:,} / {sampled['pairs_exact']:,} "
                f"(1/{sampled['pairs_exact'] / max(sampled['pairs_emitted'], 1):.2f}) | "
                f"{sampled.get('recall_above_s', float('nan')):.4f} | {sampled.get('mean_relative_error', 0):.4f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
