"""The fold computed the obvious way, for tests to compare Bigtable against."""

from __future__ import annotations

from collections.abc import Iterable

from schemas import Event, Weights, entries


def fold_oracle(events: Iterable[Event], weights: Weights = Weights()):
    """``(scores {user: {item: r_ui}}, norms {item: Σ_u r_ui²})``; the first event of an id counts."""
    unique: dict[str, Event] = {}
    for event in events:
        unique.setdefault(event.event_id, event)
    scores: dict[str, dict[str, float]] = {}
    for e in unique.values():
        row = scores.setdefault(e.user, {})
        row[e.item] = row.get(e.item, 0.0) + weights.of(e.type)
    norms: dict[str, float] = {}
    for row in scores.values():
        for item, r in row.items():
            norms[item] = norms.get(item, 0.0) + r * r
    return scores, norms


def entry_norms(scores: dict[str, dict[str, float]], transform: entries.EntryTransform = entries.FOLDED):
    """``{item: Σ_u f(r_ui)²}`` from the final scores: what the stream's ``n:enorm2`` must hold."""
    norms: dict[str, float] = {}
    for row in scores.values():
        for item, r in row.items():
            norms[item] = norms.get(item, 0.0) + transform.square(r)
    return norms
