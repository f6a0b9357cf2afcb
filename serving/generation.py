"""Which similarity generation serving answers from, kept current by polling.

The refresh pass writes a generation's rows, then flips the pointer in
``meta``; polling the pointer every few seconds picks up a new generation
(or a rollback) without a restart. Each :class:`Generation` carries its own
vocabulary, so requests that started on the old one finish on it.

Each poll also checks that the generation is still in the store (its
popularity cell, which every pass writes, is the marker). A store that lost
its data (an emulator restarted empty, a table restored from an older
backup) must not leave this process serving a generation that no longer
exists, from its cache and an empty history: once the pointer is gone, or
names a generation without rows, nothing is current (``/readyz`` says not
ready, answers are 503 ``no_generation``) until a generation is there again.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time

import numpy as np

from schemas import layout
from serving.catalog import ItemFacts
from serving.neighbours import Vocabulary
from serving.polling import PollCounts, poll_forever
from serving.store import BackendUnavailable, BigtableStore

log = logging.getLogger(__name__)

_serials = itertools.count(1)
_NEVER_PUBLISHED = "no similarity generation is published yet"


def _gone(number: int) -> str:
    return f"generation {number} is gone from the store"


@dataclasses.dataclass(frozen=True, eq=False)
class Generation:
    """One published generation as this process sees it."""

    number: int
    popular_items: list[str]
    popular_scores: np.ndarray
    vocabulary: Vocabulary = dataclasses.field(default_factory=Vocabulary)
    #: Distinguishes two views of one generation (after a vocabulary reset):
    #: neighbour lists are cached per view, as their indices are per vocabulary.
    serial: int = dataclasses.field(default_factory=lambda: next(_serials))
    #: Category and availability by vocabulary index (the catalogue filters).
    facts: ItemFacts = dataclasses.field(default_factory=ItemFacts)
    #: What its pass recorded about freshness (``layout.FRESHNESS_KEYS``); None if nothing.
    freshness: dict | None = None

    @property
    def cache_key(self) -> tuple[int, int]:
        return (self.number, self.serial)

    def renewed(self) -> Generation:
        """The same generation with an empty vocabulary."""
        return Generation(self.number, self.popular_items, self.popular_scores, freshness=self.freshness)

    def age_seconds(self, now: float | None = None) -> float:
        # A generation number is the epoch ms at which its pass started.
        return (time.time() if now is None else now) - self.number / 1000.0

    def lag_seconds(self, now: float | None = None) -> float | None:
        """Seconds from the oldest change not in this generation (as of its publication) to now.

        0 when nothing was pending at publication; None when its pass recorded nothing.
        """
        if self.freshness is None:
            return None
        pending = self.freshness.get(layout.PENDING_SINCE_KEY)
        if pending is None:
            return 0.0
        return max(0.0, (time.time() if now is None else now) - pending / 1e6)


class GenerationWatcher(PollCounts):
    """Holds the current :class:`Generation`; :meth:`run` polls the pointer."""

    def __init__(self, store: BigtableStore, poll_seconds: float):
        if poll_seconds <= 0:
            raise ValueError(f"poll interval must be positive, got {poll_seconds}")
        self._store = store
        self.poll_seconds = poll_seconds
        self.current: Generation | None = None
        #: Why nothing is current, as the end of a sentence (for 503 details).
        self.missing = _NEVER_PUBLISHED
        super().__init__()
        #: Times a generation being served vanished from the store, and the last one.
        self.losses = 0
        self._lost: int | None = None

    async def refresh(self) -> Generation | None:
        """Read the pointer; load the generation it names if it is new; check it is still there.

        Raises :class:`BackendUnavailable`; the current generation stays.
        """
        seen = self.current
        pointer = await self._store.read_pointer()
        if pointer is None:
            if seen is not None:
                self._lose(seen, _gone(seen.number) + " (and the pointer with it)")
            return self.current
        if seen is not None and seen.number == pointer:
            if not await self._store.has_generation(pointer):
                self._lose(seen, _gone(pointer))
            return self.current
        popular = await self._store.read_popular(pointer)
        if popular is None:
            # The same words as when it went, if it is the one lost (polls repeat this).
            never_had = f"generation {pointer}, which the pointer names, has no rows"
            self._lose(seen, _gone(pointer) if pointer == self._lost else never_had)
            return self.current
        current = self.current
        if current is None or current.number != pointer:
            self.current = Generation(pointer, *popular, freshness=await self._freshness(pointer))
            self.missing = None
            log.info(
                "serving generation %d (was %s; %d popular items)",
                pointer,
                current.number if current else None,
                len(popular[0]),
            )
        return self.current

    async def _freshness(self, pointer: int) -> dict | None:
        try:
            return await self._store.read_freshness(pointer)
        except BackendUnavailable as exc:  # the generation is served all the same
            log.warning("freshness of generation %d not readable: %s", pointer, exc)
            return None

    def _lose(self, seen: Generation | None, why: str) -> None:
        """Nothing is current any more, unless another refresh moved on meanwhile."""
        if self.current is not seen:
            return
        if seen is not None:
            self.losses += 1
            self._lost = seen.number
            log.warning("%s: not ready until a generation is published again", why)
        self.current = None
        self.missing = why

    def replace(self, old: Generation, new: Generation) -> None:
        """Swap in a renewed view unless the pointer moved meanwhile."""
        if self.current is old:
            self.current = new

    async def run(self) -> None:
        """Poll until cancelled; failures are logged once per outage."""
        await poll_forever(self.refresh, self.poll_seconds, "the generation pointer", self, wait_first=False)
