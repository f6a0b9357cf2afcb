"""A/B arms: one server, several tuned configurations, each shopper in one arm.

``streamsim serve --config A.json --config B.json --split 50`` serves two arms named after
the files (``A``, ``B``); ``--split`` is the first arm's share in percent (default: equal
shares). A request goes to the arm its *visitor* hashes to: the ``user`` of a user query, else
the ``X-Visitor-Id`` header a shop sends with session and similar-item queries; a request
with neither goes to the first arm (the control). The hash (BLAKE2b of the id) is the same in
every worker and after every restart, so a shopper stays in one arm.

Arms differ in their query knobs (popularity blend, recency decay, repeats) over one
similarity generation: the refresh computes one measure with one entry transform, so
configurations that name different measures, parameters or transforms are refused (run one
deployment per measure, each with its own ``--arm`` name, and split traffic in front).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from schemas import attribution
from schemas.tuned import QueryKnobs, TunedConfigError, read_tuned

#: The header that names an anonymous visitor, for assignment.
VISITOR_HEADER = "X-Visitor-Id"


@dataclasses.dataclass(frozen=True)
class Arm:
    name: str
    knobs: QueryKnobs
    #: Share of visitors, in [0, 1]; the shares of a server's arms sum to 1.
    share: float


def from_configs(paths: tuple[str, ...], split: float | None) -> tuple[Arm, ...]:
    """The arms of tuned configuration files (at least two), or :class:`TunedConfigError`."""
    tuned = [read_tuned(p) for p in paths]
    names = [attribution.label_of(Path(p).stem) for p in paths]
    if len(set(names)) != len(names):
        raise TunedConfigError(f"arms need distinct file names, got {', '.join(names)}")
    measures = {(t.similarity, tuple(sorted(t.params.items())), t.entries) for t in tuned}
    if len(measures) > 1:
        raise TunedConfigError(
            "arms must share the similarity measure, its parameters and the entry transform "
            "(one generation serves them all); they may differ in their serving knobs only"
        )
    if split is None:
        shares = [1 / len(paths)] * len(paths)
    elif len(paths) != 2 or not 0 < split < 100:
        raise TunedConfigError("--split is the first of two arms' share, in percent (between 0 and 100)")
    else:
        shares = [split / 100, 1 - split / 100]
    return tuple(Arm(name, t.serving, share) for name, t, share in zip(names, tuned, shares))


def position(visitor: str) -> float:
    """A visitor's stable place in [0, 1)."""
    digest = hashlib.blake2b(visitor.encode("utf-8"), digest_size=8, person=b"streamsim-arms").digest()
    return int.from_bytes(digest, "big") / 2**64


def assign(arms: tuple[Arm, ...], visitor: str | None) -> Arm:
    """The arm of ``visitor`` (None: the first arm)."""
    if visitor is None or len(arms) == 1:
        return arms[0]
    place, edge = position(visitor), 0.0
    for arm in arms:
        edge += arm.share
        if place < edge:
            return arm
    return arms[-1]
