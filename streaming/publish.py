"""Publishing events to the events topic: a client and a file replayer.

:class:`EventPublisher` batches messages (the Pub/Sub client's own batching)
and retries a message whose publish failed by re-sending the *same bytes*, so
the event keeps its ``event_id`` and the fold counts it once however many
copies arrive.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import math
import time
from collections.abc import Iterable
from pathlib import Path

from schemas import Event
from streamsim.runtime.clients import publisher_client
from streamsim.runtime.settings import Settings
from streamsim.sources.formats import CorruptSourceError, SourceRecord, read_records

log = logging.getLogger(__name__)

#: Messages per publish request: Pub/Sub allows 1,000 (and 10 MB).
BATCH_MESSAGES = 1000
#: How long the client may hold a batch open: bounds the latency it adds.
BATCH_LATENCY_SECONDS = 0.02
#: Futures kept in flight before waiting: bounds memory on long replays.
MAX_IN_FLIGHT = 20_000
PUBLISH_ATTEMPTS = 5


class PublishError(RuntimeError):
    pass


class EventPublisher:
    """``publish(events)`` to ``settings.pubsub.events_topic`` (or ``topic``)."""

    def __init__(self, settings: Settings, *, topic: str | None = None):
        from google.cloud.pubsub_v1.types import BatchSettings

        self._client = publisher_client(
            settings,
            batch_settings=BatchSettings(max_messages=BATCH_MESSAGES, max_latency=BATCH_LATENCY_SECONDS),
        )
        self._topic = self._client.topic_path(settings.project, topic or settings.pubsub.events_topic)
        self._in_flight: collections.deque = collections.deque()
        self.published = 0

    def publish(self, events: Iterable[Event | bytes], **attributes: str) -> int:
        """Publish events (or raw message bytes, sent untouched); returns how many."""
        count = 0
        for event in events:
            data = event.to_json() if isinstance(event, Event) else bytes(event)
            self._send(data, attributes)
            count += 1
        return count

    def _send(self, data: bytes, attributes: dict, attempt: int = 1) -> None:
        self._in_flight.append((self._client.publish(self._topic, data, **attributes), data, attributes, attempt))
        if len(self._in_flight) >= MAX_IN_FLIGHT:
            self._settle(MAX_IN_FLIGHT // 2)

    def _settle(self, keep: int) -> None:
        while len(self._in_flight) > keep:
            future, data, attributes, attempt = self._in_flight.popleft()
            try:
                future.result(timeout=60)
                self.published += 1
            except Exception as exc:  # noqa: BLE001 - any failure is retried with the same bytes
                if attempt >= PUBLISH_ATTEMPTS:
                    raise PublishError(f"publishing failed {attempt} times: {exc}") from exc
                log.warning("publish failed (%s); retrying attempt %d with the same event", exc, attempt + 1)
                time.sleep(0.2 * attempt)
                self._send(data, attributes, attempt + 1)

    def flush(self) -> int:
        """Wait until every message is published; returns the total published."""
        self._settle(0)
        return self.published

    def close(self) -> None:
        self.flush()
        self._client.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            self.close()
        else:
            self._client.stop()


@dataclasses.dataclass
class PublishSummary:
    published: int = 0
    rejected: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    seconds: float = 0.0
    examples: dict = dataclasses.field(default_factory=dict)
    #: Data lines read (published or rejected), at most ``limit``.
    lines: int = 0
    #: Why reading stopped before the end of the source (a corrupt ``.gz``), or None.
    error: str | None = None

    @property
    def rate(self) -> float:
        return self.published / self.seconds if self.seconds else 0.0


def check_pacing(rate: float | None, limit: int | None) -> None:
    """ValueError unless ``rate`` is None or a positive finite number and ``limit`` None or >= 0."""
    if rate is not None and not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"rate must be a positive number of events per second, not {rate}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be 0 or more lines, not {limit}")


def publish_file(
    settings: Settings,
    path: Path,
    *,
    fmt: str = "auto",
    rate: float | None = None,
    limit: int | None = None,
    progress: bool = False,
) -> PublishSummary:
    """Replay a source file (see :mod:`streamsim.sources.formats`) onto the events topic.

    ``rate`` paces publishing to that many events/s; ``limit`` stops after that
    many data lines. Rejected lines are counted by reason, never published. A
    file that cannot be read as events raises before anything is published
    (``OSError``, :class:`~streamsim.sources.formats.FormatError`).
    """
    check_pacing(rate, limit)
    records = read_records(path, fmt)
    return publish_records(settings, records, rate=rate, limit=limit, progress=progress, name=Path(path).name)


def publish_records(
    settings: Settings,
    records: Iterable[SourceRecord],
    *,
    rate: float | None = None,
    limit: int | None = None,
    progress: bool = False,
    name: str = "events",
) -> PublishSummary:
    """Publish :class:`SourceRecord` messages (as :func:`read_records` gives them); see :func:`publish_file`.

    A source that turns out corrupt part-way (:class:`CorruptSourceError`) stops
    the replay: what was read before it is published, and ``summary.error`` says why.
    """
    check_pacing(rate, limit)
    summary = PublishSummary()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=limit, unit="ev", desc=f"publish {name}", smoothing=0.1)
    start = time.monotonic()
    # islice, not a count inside the loop: the record after the last one is never read
    # (it may be an over-long line whose rest would have to be skipped).
    chosen = records if limit is None else itertools.islice(records, limit)
    with EventPublisher(settings) as publisher:
        try:
            for index, record in enumerate(chosen):
                summary.lines = index + 1
                if record.data is None:
                    summary.rejected[record.error] += 1
                    summary.examples.setdefault(record.error, f"line {record.position}: {record.detail}")
                else:
                    publisher.publish([record.data])
                if rate:
                    ahead = (index + 1) / rate - (time.monotonic() - start)
                    if ahead > 0:
                        time.sleep(ahead)
                if bar is not None:
                    bar.update(1)
        except CorruptSourceError as exc:
            summary.error = str(exc)
        finally:
            close = getattr(records, "close", None)
            if close is not None:
                close()
        summary.published = publisher.flush()
    summary.seconds = time.monotonic() - start
    if bar is not None:
        bar.close()
    return summary
