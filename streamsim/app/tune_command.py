"""``streamsim tune``: choose the similarity and query knobs on a validation split of the training data."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from streamsim.app.evaluate_command import UsageError, add_data_arguments, guarded, load_training

METRICS = ("hr@10", "hr@20", "ndcg@10", "mrr@20")


def register(subparsers, parent) -> None:
    parser = subparsers.add_parser(
        "tune",
        parents=[parent],
        help="choose the similarity measure and query knobs on the shop's own data; writes a config",
        description="Carves a validation split out of the training data only (never the test set), scores a "
        "small grid of measures, popularity blends and recency decays on it, prints the table and writes the "
        "winner with its provenance to --out (read by refresh, serve and evaluate --config).",
    )
    add_data_arguments(parser)
    parser.add_argument(
        "--validation",
        type=float,
        default=0.1,
        help="share held out for validation: users' newest item, or the newest sessions (default 0.1)",
    )
    parser.add_argument("--metric", choices=METRICS, help="what to maximise (default: hr@20 for sessions, else hr@10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the validation split (default 0)")
    parser.add_argument("--out", required=True, help="where to write the tuned configuration (JSON)")
    parser.add_argument(
        "--with-order",
        action="store_true",
        help="also search recency decay over user histories (the server applies it over each user's recent "
        "sequence); sessions always search it",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run_tune)


def run_tune(args) -> int:
    return guarded("streamsim tune", lambda: _tune(args))


def _tune(args) -> int:
    from tqdm import tqdm

    from streamsim.app import evaluate, tune

    if not 0.0 < args.validation < 0.5:
        raise UsageError(f"--validation {args.validation:g} must be within (0, 0.5)")
    out = Path(args.out)
    if out.is_dir():
        raise UsageError(f"--out {out} is a directory; give a file name")
    top_k = evaluate.TOP_K if args.top_k is None else args.top_k
    if top_k < 1:
        raise UsageError(f"--top-k must be at least 1, not {args.top_k}")
    started = time.monotonic()
    interactions, sessions = load_training(args)
    if sessions:
        train, queries = tune.carve_sessions(interactions, args.validation)
        split = f"newest {args.validation:g} of the sessions, every prefix -> next item"
    else:
        train, queries = tune.carve_users(interactions, args.validation, args.seed)
        split = f"newest item of {args.validation:g} of the users (seed {args.seed})"
    if not queries:
        what = "sessions of two items or more" if sessions else "users with two items or more"
        raise UsageError(f"the training data leaves no validation pairs (it needs {what})")
    queries = tune.sample(queries, tune.MAX_VALIDATION_PAIRS, args.seed)
    # The server applies recency decay over a session's items, not (yet) over a user's history.
    decay = sessions or args.with_order
    metric = args.metric or ("hr@20" if sessions else "hr@10")
    repeats = sessions if args.allow_repeats is None else args.allow_repeats
    print(f"validation: {len(queries):,} pairs ({split}); maximising {metric}", file=sys.stderr)
    bar = tqdm(
        total=tune.stage_sizes(train.sequences is not None, decay),
        unit="config",
        desc="tune",
        disable=args.no_progress or not sys.stderr.isatty(),
    )
    with bar:
        best, results = tune.search(
            train,
            queries,
            metric=metric,
            allow_repeats=repeats,
            decay=decay,
            top_k=top_k,
            on_step=lambda _: bar.update(),
        )
    source = Path(args.sessions or args.train)
    provenance = {
        "data": str(source.resolve()),
        "protocol": "sessions" if sessions else "held-out users",
        "split": split,
        "validation_pairs": len(queries),
        "metric": metric,
        "candidates": len(results),
        "with_order": args.with_order,
        "seconds": round(time.monotonic() - started, 1),
    }
    config = tune.config_of(best, results[best.label], provenance)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(config.to_json() + "\n")
    ranked = dict(sorted(results.items(), key=lambda pair: tune._rank(pair[1], metric)))
    print(evaluate.format_table(ranked))
    print(f"winner: {best.label} ({metric} {results[best.label][metric]:.4f}); wrote {out}")
    return 0
