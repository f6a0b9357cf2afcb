"""The one Bigtable gateway: every streamsim read and write of Bigtable goes through here.

- :mod:`.table`: synchronous ReadRows (by keys or by range) and MutateRows with one
  retry policy; :mod:`.aio`: the same reads for asyncio callers (serving).
- :mod:`.filters`: every row filter (``newest()``, ``visible_at(g)``, ...).
- :mod:`.messages`: the raw protobuf messages, mutation builders and the
  compatibility guard; :mod:`.wire`: the ReadRows chunk merger.

Rows come back in one shape everywhere, ``{family: {qualifier: Cell}}`` (newest cell
per column, timestamps kept); :mod:`schemas.rows` decodes them.
"""

from __future__ import annotations

import dataclasses

from streamsim.runtime.bigtable.messages import delete_cells, delete_family, delete_row, entry, set_cell
from streamsim.runtime.bigtable.table import Conditional, ReadError, Row, Table, WriteError
from streamsim.runtime.clients import bigtable_channel
from streamsim.runtime.settings import Settings

__all__ = [
    "Conditional",
    "ReadError",
    "Row",
    "Table",
    "Tables",
    "WriteError",
    "delete_cells",
    "delete_family",
    "delete_row",
    "entry",
    "open_tables",
    "set_cell",
    "table_path",
]


def table_path(settings: Settings, table_id: str) -> str:
    return f"projects/{settings.project}/instances/{settings.instance}/tables/{table_id}"


@dataclasses.dataclass(frozen=True)
class Tables:
    """The tables of one deployment, over this process's channel."""

    users: Table
    items: Table
    contributions: Table
    similarities: Table
    meta: Table
    recent: Table
    sessions: Table


def open_tables(settings: Settings) -> Tables:
    """Cheap: the channel is shared per process (:func:`streamsim.runtime.clients.bigtable_channel`)."""
    channel = bigtable_channel(settings)
    ids = settings.tables
    return Tables(
        **{
            logical: Table(channel, table_path(settings, table_id), app_profile_id=settings.app_profile_id)
            for logical, table_id in ids.as_dict().items()
        }
    )
