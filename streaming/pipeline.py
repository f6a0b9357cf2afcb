"""The streaming fold as Beam transforms: read, parse, fold into Bigtable, dead-letter.

::

    ReadEvents --PubsubMessage--> ParseEvents --Delivered--> FoldIntoBigtable
                                       |--DeliveredUpdate--> WriteCatalog
                                       |--(message id, ForgetRequest)--> ForgetUsers
                                       \\--DeadLetter--> PublishDeadLetters

The fold is two keyed stages (:mod:`streaming.fold_stages`). The same graph runs
on the local runner and on Dataflow; only the local runner adds a last step that
acknowledges each message once its events are written (:mod:`streaming.direct_pubsub`;
on Dataflow, acks follow durable commits). Everything stays in the global window:
Pub/Sub's watermark on the local runner is the wall clock, so a pre-published
backlog would be late data in any other window.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from schemas import CatalogUpdate, Event, EventError, Weights, parse_message
from schemas.events import ForgetRequest
from streaming import direct_pubsub
from streaming.catalog import DeliveredUpdate, WriteCatalog
from streaming.dead_letters import DROPPED_ATTRIBUTES, dead_letter_attributes, publish_attribute_budget
from streaming.fold_stages import LOCAL_SHARDS, SHARDS, FoldIntoBigtable, Settled
from streamsim.runtime.settings import Settings

log = logging.getLogger(__name__)

DEAD_LETTER = "dead_letter"
CATALOG = "catalog"
FORGET = "forget"


class FoldOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--weights", default="", help="e.g. browse=0.5,basket=2,purchase=6 (STREAMSIM_WEIGHTS)")
        parser.add_argument(
            "--fold_shards",
            type=int,
            default=None,
            help="key shards of each fold stage (default: 64, or 1 on the local runner)",
        )


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    data: bytes
    error: str
    detail: str
    attributes: dict
    message_id: str = ""


@dataclasses.dataclass(frozen=True)
class Delivered:
    """An accepted event and the Pub/Sub message that carried it (acked once written)."""

    message_id: str
    event: Event


class ParseEventFn(beam.DoFn):
    """Pub/Sub message (data = contract JSON, see :mod:`schemas.events`) -> :class:`Delivered`.

    A catalogue update goes to the ``catalog`` output as a :class:`DeliveredUpdate`.
    Anything that breaks the contract goes to the ``dead_letter`` output with
    its original bytes; no input makes this step raise.
    """

    def __init__(self):
        self.accepted = Metrics.counter("streaming", "parsed")
        self.dead_lettered = Metrics.counter("streaming", "dead_lettered")

    def process(self, message):
        data, attributes = message.data or b"", dict(message.attributes or {})
        message_id = message.message_id or ""
        try:
            # The clock bounds ts (schemas.events: a time far ahead would pin state).
            event = parse_message(data, attributes, now_ms=int(time.time() * 1000))
        except EventError as exc:
            self.dead_lettered.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, DeadLetter(data, exc.code, exc.detail, attributes, message_id))
            return
        if isinstance(event, CatalogUpdate):
            yield beam.pvalue.TaggedOutput(CATALOG, DeliveredUpdate(message_id, event))
            return
        if isinstance(event, ForgetRequest):
            yield beam.pvalue.TaggedOutput(FORGET, (message_id, event))
            return
        self.accepted.inc()
        yield Delivered(message_id, event)


class PublishDeadLettersFn(beam.DoFn):
    """Re-publishes bad messages untouched, with ``error`` and ``detail`` attributes.

    The attributes are the original ones that still fit Pub/Sub's limits next
    to ours, see :func:`streaming.dead_letters.dead_letter_attributes`: a
    publish Pub/Sub refuses would fail the bundle on every redelivery.
    """

    def __init__(self, settings: Settings):
        self._settings = settings
        self.attributes_dropped = Metrics.counter("streaming", "dead_letter_attributes_dropped")

    def setup(self):
        from streamsim.runtime.clients import publisher_client

        self._client = publisher_client(self._settings)
        self._topic = self._client.topic_path(self._settings.project, self._settings.pubsub.dead_letter_topic)

    def teardown(self):
        self._client.stop()

    def start_bundle(self):
        self._futures = []
        self._dropped = 0

    def process(self, letter: DeadLetter):
        budget = publish_attribute_budget(self._topic, len(letter.data))
        attributes = dead_letter_attributes(letter.attributes, letter.error, letter.detail, budget_bytes=budget)
        self._dropped += int(attributes.get(DROPPED_ATTRIBUTES, 0))
        self._futures.append((self._client.publish(self._topic, letter.data, **attributes), letter.message_id))

    def finish_bundle(self):
        for future, _ in self._futures:
            future.result(timeout=120)
        if self._dropped:
            self.attributes_dropped.inc(self._dropped)
        if self._futures:
            counts = (("dead_lettered", len(self._futures)), ("dead_letter_attributes_dropped", self._dropped))
            settled = Settled(tuple(message_id for _, message_id in self._futures), counts)
            # Published for good: settled (the local runner then acks them).
            window = GlobalWindow()
            yield WindowedValue(settled, window.max_timestamp(), [window])
        self._futures, self._dropped = [], 0


class ForgetUsersFn(beam.DoFn):
    """An erasure request -> ``streaming.forget.forget_user`` -> settled once its receipt is written
    (a redelivered request finds its tombstone and only re-runs the idempotent erase)."""

    def __init__(self, settings: Settings):
        self._settings = settings
        self.forgotten = Metrics.counter("streaming", "users_forgotten")

    def setup(self):
        from streaming.store import FoldStore

        self._store = FoldStore(self._settings)

    def process(self, delivered):
        from streaming.forget import forget_user

        message_id, request = delivered
        forget_user(self._settings, request.user, request.ts_ms, store=self._store)
        self.forgotten.inc()
        yield Settled((message_id,), (("users_forgotten", 1),))


class ReadEvents(beam.PTransform):
    def __init__(self, settings: Settings):
        super().__init__()
        self._subscription = f"projects/{settings.project}/subscriptions/{settings.pubsub.events_subscription}"

    def expand(self, pbegin):
        return pbegin | beam.io.ReadFromPubSub(subscription=self._subscription, with_attributes=True)


class ParseEvents(beam.PTransform):
    """-> ``(events, dead_letters, catalogue updates, erasure requests)``."""

    def expand(self, messages):
        parsed = messages | beam.ParDo(ParseEventFn()).with_outputs(DEAD_LETTER, CATALOG, FORGET, main="events")
        return parsed.events, parsed[DEAD_LETTER], parsed[CATALOG], parsed[FORGET]


class PublishDeadLetters(beam.PTransform):
    def __init__(self, settings: Settings):
        super().__init__()
        self._settings = settings

    def expand(self, letters):
        return letters | beam.ParDo(PublishDeadLettersFn(self._settings))


def build(
    pipeline: beam.Pipeline, settings: Settings, weights: Weights, *, local: bool = False, shards: int | None = None
) -> None:
    """Wire the fold onto ``pipeline``; ``local``: add the local runner's acknowledgement step."""
    if shards is None:
        shards = LOCAL_SHARDS if local else SHARDS
    messages = pipeline | "ReadEvents" >> ReadEvents(settings)
    events, dead_letters, updates, requests = messages | "ParseEvents" >> ParseEvents()
    folded = events | "FoldIntoBigtable" >> FoldIntoBigtable(settings, weights, shards)
    published = dead_letters | "PublishDeadLetters" >> PublishDeadLetters(settings)
    catalogued = updates | "WriteCatalog" >> WriteCatalog(settings)
    forgotten = requests | "ForgetUsers" >> beam.ParDo(ForgetUsersFn(settings))
    if local:
        _ = (
            (folded, published, catalogued, forgotten)
            | "Settled" >> beam.Flatten()
            | "AckOnLocalRunner" >> direct_pubsub.AckSettled()
        )
