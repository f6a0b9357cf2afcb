"""Which similarity generation serving answers from, kept current by polling.

The refresh pass writes a generation's rows, then flips the pointer in
``meta``; polling the pointer every few seconds picks up a new generation
(or a rollback) without a restart. Each :class:`Generation` carries its own
vocabulary, so requests that started on the old one finish on it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import time

import numpy as np

from serving.neighbours import Vocabulary
from serving.store import BackendUnavailable, BigtableStore

log = logging.getLogger(__name__)

_serials = itertools.count(1)


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

    @property
    def cache_key(self) -> tuple[int, int]:
        return (self.number, self.serial)

    def renewed(self) -> Generation:
        """The same generation with an empty vocabulary."""
        return Generation(self.number, self.popular_items, self.popular_scores)

    def age_seconds(self, now: float | None = None) -> float:
        # A generation number is the epoch ms at which its pass started.
        return (time.time() if now is None else now) - self.number / 1000.0


class GenerationWatcher:
    """Holds the current :class:`Generation`; :meth:`run` polls the pointer."""

    def __init__(self, store: BigtableStore, poll_seconds: float):
        if poll_seconds <= 0:
            raise ValueError(f"poll interval must be positive, got {poll_seconds}")
        self._store = store
        self.poll_seconds = poll_seconds
        self.current: Generation | None = None
        self.polls = 0
        self.poll_failures = 0

    async def refresh(self) -> Generation | None:
        """Read the pointer; load the generation it names if it is new.

        Raises :class:`BackendUnavailable`; the current generation stays.
        """
        pointer = await self._store.read_pointer()
        current = self.current
        if pointer is not None and (current is None or current.number != pointer):
            items, scores = await self._store.read_popular(pointer)
            self.current = Generation(pointer, items, scores)
            log.info(
                "serving generation %d (was %s; %d popular items)",
                pointer,
                current.number if current else None,
                len(items),
            )
        return self.current

    def replace(self, old: Generation, new: Generation) -> None:
        """Swap in a renewed view unless the pointer moved meanwhile."""
        if self.current is old:
            self.current = new

    async def run(self) -> None:
        """Poll until cancelled; failures are logged once per outage."""
        failing = False
        while True:
            self.polls += 1
            try:
                await self.refresh()
                if failing:
                    log.info("generation pointer readable again")
                failing = False
            except BackendUnavailable as exc:
                self.poll_failures += 1
                if not failing:
                    log.warning("cannot read the generation pointer: %s", exc)
                failing = True
            except Exception:  # noqa: BLE001 - a poller that dies would freeze the generation
                self.poll_failures += 1
                log.exception("generation poll failed")
            await asyncio.sleep(self.poll_seconds)
