"""``streamsim inspect user|item|similar ID``: what the fold and the last pass wrote.

It sits in the app layer because it reads what two components write: the
fold's ``users``/``items`` rows (:mod:`streaming.state`) and the refresh's
similarity rows (:mod:`batch.generations`).
"""

from __future__ import annotations

import json
import sys

from schemas.events import id_problem
from streamsim.runtime.cli import backend_error, settings_from_args

_KIND_NAMES = {"user": "user", "item": "item", "similar": "item"}


def register(subparsers, parent) -> None:
    inspect = subparsers.add_parser(
        "inspect", parents=[parent], help="show a user's or item's folded state, or an item's neighbours"
    )
    inspect.add_argument("kind", choices=("user", "item", "similar"))
    inspect.add_argument("id", help="user or item id")
    inspect.add_argument("--json", action="store_true", help="print JSON")
    inspect.add_argument("--users", action="store_true", help="items: also list each user's r_ui")
    inspect.add_argument("--n", type=int, default=10, help="similar: how many neighbours (default 10)")
    inspect.set_defaults(run=run_inspect)


def run_inspect(args) -> int:
    what = f"streamsim inspect {args.kind}"
    if args.n < 1:
        print(f"{what}: --n must be at least 1", file=sys.stderr)
        return 2
    # The contract's id rule: an id it refuses was never folded, and could not even be
    # encoded into a row key (a non-UTF-8 argument arrives as lone surrogates).
    problem = id_problem(args.id)
    if problem:
        hint = " (is the argument valid UTF-8?)" if "surrogate" in problem else ""
        print(f"{what}: the {_KIND_NAMES[args.kind]} id {args.id[:80]!r} {problem}{hint}", file=sys.stderr)
        return 2
    settings = settings_from_args(args)
    problem = backend_error(settings)
    if problem:
        print(f"{what}: {problem}", file=sys.stderr)
        return 1
    if args.kind == "similar":
        return _print_similar(settings, args, what)
    from streaming import state

    if args.kind == "user":
        found = state.read_user(settings, args.id)
    else:
        found = state.read_item(settings, args.id, with_users=args.users)
    if args.json:
        print(json.dumps(found, sort_keys=True))
        return 0
    for key, value in found.items():
        if isinstance(value, dict):
            print(f"{key}: {len(value)}")
            for name, number in sorted(value.items(), key=lambda pair: (-pair[1], pair[0])):
                print(f"  {name}\t{number:g}")
        else:
            print(f"{key}\t{value}")
    return 0


def _print_similar(settings, args, what: str) -> int:
    from batch.generations import GenerationError, SimilarityReader

    reader = SimilarityReader(settings)
    try:
        pointer = reader.current()
        if pointer is None:
            raise GenerationError("no similarity generation yet: run `streamsim refresh` first")
        found = reader.neighbours(args.id, pointer)
    except GenerationError as exc:
        print(f"{what}: {exc}", file=sys.stderr)
        return 1
    if found is None:
        print(f"{what}: item {args.id!r} has no similarity row in generation {pointer}", file=sys.stderr)
        return 1
    neighbours = found.neighbours[: args.n]
    measure = _measure_of(settings, pointer)
    if args.json:
        print(
            json.dumps(
                {
                    "item": args.id,
                    "generation": pointer,
                    **measure,
                    "neighbours": [{"item": j, "similarity": s} for j, s in neighbours],
                }
            )
        )
    else:
        params = ", ".join(f"{k}={v:g}" for k, v in measure["similarity_params"].items())
        print(f"{args.id}  (generation {pointer}, {measure['similarity']}{f' {params}' if params else ''})")
        for j, s in neighbours:
            print(f"  {s:8.4f}  {j}")
    return 0


def _measure_of(settings, generation: int) -> dict:
    """The measure a generation's pass recorded (passes before the registry computed cosine)."""
    from batch.generations import Generations

    stats = Generations(settings).pass_stats(generation) or {}
    return {"similarity": stats.get("similarity", "cosine"), "similarity_params": stats.get("similarity_params", {})}
