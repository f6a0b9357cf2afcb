"""Catalogue updates on the stream: written through the runtime's catalogue writer.

A separate branch of the pipeline, beside the fold: updates carry absolute values
stamped with their own time, so they need neither the fold's keyed stages nor its
version checks (a redelivered or reordered update changes nothing; the newest wins).
"""

from __future__ import annotations

import dataclasses

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from schemas.events import CatalogUpdate
from streaming.fold_stages import Settled
from streamsim.runtime.settings import Settings


@dataclasses.dataclass(frozen=True)
class DeliveredUpdate:
    """A catalogue update and the Pub/Sub message that carried it (acked once written)."""

    message_id: str
    update: CatalogUpdate


class WriteCatalogFn(beam.DoFn):
    """Writes a bundle's updates in one call per table, then settles their messages."""

    def __init__(self, settings: Settings):
        self._settings = settings
        self.written = Metrics.counter("streaming", "catalog_updates")

    def setup(self):
        from streamsim.runtime.bigtable import open_tables

        self._tables = open_tables(self._settings)

    def start_bundle(self):
        self._pending: list[DeliveredUpdate] = []

    def process(self, delivered: DeliveredUpdate):
        self._pending.append(delivered)

    def finish_bundle(self):
        from streamsim.runtime.catalog import write_catalog

        if not self._pending:
            return
        written = write_catalog(self._tables, [d.update for d in self._pending])
        self.written.inc(written)
        settled = Settled(tuple(d.message_id for d in self._pending), (("catalog_updates", written),))
        self._pending = []
        window = GlobalWindow()
        yield WindowedValue(settled, window.max_timestamp(), [window])


class WriteCatalog(beam.PTransform):
    def __init__(self, settings: Settings):
        super().__init__()
        self._settings = settings

    def expand(self, updates):
        return updates | beam.ParDo(WriteCatalogFn(self._settings))
