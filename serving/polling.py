"""The one background loop behind serving's followers of the store (the generation
pointer, the catalogue change log)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from serving.store import BackendUnavailable

log = logging.getLogger(__name__)


class PollCounts:
    """What ``/metrics`` reports of a poll loop."""

    def __init__(self):
        self.polls = 0
        self.poll_failures = 0


async def poll_forever(
    poll: Callable[[], Awaitable[object]], seconds: float, what: str, counts: PollCounts, *, wait_first: bool
) -> None:
    """Call ``poll`` every ``seconds`` until cancelled (first wait one interval if
    ``wait_first``: the caller has just read). An outage is logged once, not per poll, and
    nothing escapes: a loop that died would freeze what it follows."""
    failing = False
    while True:
        if wait_first:
            await asyncio.sleep(seconds)
        counts.polls += 1
        try:
            await poll()
            if failing:
                log.info("%s readable again", what)
            failing = False
        except BackendUnavailable as exc:
            counts.poll_failures += 1
            if not failing:
                log.warning("cannot read %s: %s", what, exc)
            failing = True
        except Exception:  # noqa: BLE001 - see the docstring
            counts.poll_failures += 1
            log.exception("%s: poll failed", what)
        if not wait_first:
            await asyncio.sleep(seconds)
