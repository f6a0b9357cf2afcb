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
        "small grid of measures, popularity blends and recency decays on it, compares every candidate with the "
        "default pair by pair (a seeded bootstrap), keeps the default unless a candidate beats it beyond noise, "
        "prints the table with intervals and writes the choice with its provenance to --out (read by refresh, "
        "serve and evaluate --config) and a report beside it (OUT.md, OUT.png).",
    )
    add_data_arguments(parser)
    parser.add_argument(
        "--validation",
        type=float,
        help="share held out for validation: the newest item of this share of the users (default 1: every user "
        "with two items or more), or the newest sessions (default 0.1, up to 0.3 until they give 10,000 pairs)",
    )
    parser.add_argument("--metric", choices=METRICS, help="what to maximise (default: hr@20 for sessions, else hr@10)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the validation split, its sample and the bootstrap (default 0)"
    )
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

    from streamsim.app import evaluate, tune, tune_report

    out = Path(args.out)
    if out.is_dir():
        raise UsageError(f"--out {out} is a directory; give a file name")
    top_k = evaluate.TOP_K if args.top_k is None else args.top_k
    if top_k < 1:
        raise UsageError(f"--top-k must be at least 1, not {args.top_k}")
    share = args.validation
    if share is not None and args.sessions and not 0.0 < share < 0.5:
        raise UsageError(f"--validation {share:g} must be within (0, 0.5) for sessions")
    if share is not None and not 0.0 < share <= 1.0:
        raise UsageError(f"--validation {share:g} must be within (0, 1]")
    started = time.monotonic()
    interactions, sessions = load_training(args)
    if share is None:
        share = tune.session_share(interactions) if sessions else 1.0
    if sessions:
        train, queries = tune.carve_sessions(interactions, share)
        split = f"newest {share:.3g} of the sessions, every prefix -> next item"
    else:
        train, queries = tune.carve_users(interactions, share, args.seed)
        who = "every user" if share == 1.0 else f"{share:g} of the users (seed {args.seed})"
        split = f"newest item of {who} with two items or more"
    if not queries:
        what = "sessions of two items or more" if sessions else "users with two items or more"
        raise UsageError(f"the training data leaves no validation pairs (it needs {what})")
    carved = len(queries)
    queries = tune.sample(queries, tune.MAX_VALIDATION_PAIRS, args.seed)
    if len(queries) < carved:
        split += f"; a seeded sample of {len(queries):,} of its {carved:,} pairs"
    if len(queries) < tune.MIN_VALIDATION_PAIRS:
        raise UsageError(
            f"only {len(queries)} validation pairs ({split}): too few to tell the candidates apart "
            f"(at least {tune.MIN_VALIDATION_PAIRS}); raise --validation or gather more data"
        )
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
        outcome = tune.search(
            train,
            queries,
            metric=metric,
            allow_repeats=repeats,
            decay=decay,
            top_k=top_k,
            seed=args.seed,
            on_step=lambda _: bar.update(),
        )
    source = Path(args.sessions or args.train)
    provenance = {
        "data": str(source.resolve()),
        "protocol": "sessions" if sessions else "held-out users",
        "split": split,
        "validation_pairs": len(queries),
        "metric": metric,
        "top_k": top_k,
        "candidates": len(outcome.candidates),
        "with_order": args.with_order,
        "seconds": round(time.monotonic() - started, 1),
    }
    config = tune.config_of(outcome, provenance, args.seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(config.to_json() + "\n")
    written = tune_report.write(outcome, config, out)
    print(tune_report.table(outcome))
    if outcome.coarse:
        print(f"warning: {tune_report.coarse_warning(outcome)}", file=sys.stderr)
    chosen = outcome.interval(outcome.choice.chosen)
    print(f"chosen: {outcome.chosen.label} ({metric} {tune_report.span(chosen)}): {outcome.choice.reason}")
    print(f"wrote {out}, {', '.join(written)}")
    return 0
