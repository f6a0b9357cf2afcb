"""Read the folded state back: the public way to check the fold.

``read_user`` / ``read_item`` return plain JSON-ready dicts (the shapes
``streamsim inspect`` prints); a user or item never seen comes back with
empty scores and zero counts, not an error.
"""
from __future__ import annotations

from google.cloud.bigtable import row_filters

from schemas import codecs, layout
from streamsim.clients import bigtable_instance
from streamsim.settings import Settings

_LATEST = row_filters.CellsColumnLimitFilter(1)


def read_user(settings: Settings, user: str, *, instance=None) -> dict:
    """``{"user", "scores": {item: r_ui}, "norm2", "events", "items_events": {item: n}}``."""
    instance = instance or bigtable_instance(settings)
    table = instance.table(settings.tables.users)
    row = table.read_row(
        layout.user_row_key(user),
        filter_=row_filters.RowFilterChain(
            [row_filters.FamilyNameRegexFilter(f"{layout.SCORES}|{layout.ITEM_COUNTS}|{layout.USER_STATS}"), _LATEST]
        ),
    )
    cells = row.cells if row else {}
    stats = cells.get(layout.USER_STATS, {})
    return {
        "user": user,
        "scores": {q.decode(): codecs.decode_double(c[0].value) for q, c in cells.get(layout.SCORES, {}).items()},
        "norm2": codecs.decode_double(stats[layout.NORM2][0].value) if layout.NORM2 in stats else 0.0,
        "events": codecs.decode_int64(stats[layout.EVENTS][0].value) if layout.EVENTS in stats else 0,
        "item_events": {
            q.decode(): codecs.decode_int64(c[0].value) for q, c in cells.get(layout.ITEM_COUNTS, {}).items()
        },
    }


def read_item(settings: Settings, item: str, *, instance=None, with_users: bool = False) -> dict:
    """``{"item", "norm2", "dirty", "dirty_since_ms", "users", "events"}``, plus
    ``"contributions": {user: r_ui}`` if ``with_users``."""
    instance = instance or bigtable_instance(settings)
    table = instance.table(settings.tables.items)
    families = [layout.ITEM_STATS, layout.DIRTY] + ([layout.CONTRIBUTIONS] if with_users else [])
    row = table.read_row(
        layout.item_row_key(item),
        filter_=row_filters.RowFilterChain([row_filters.FamilyNameRegexFilter("|".join(families)), _LATEST]),
    )
    cells = row.cells if row else {}
    stats = cells.get(layout.ITEM_STATS, {})
    dirty = cells.get(layout.DIRTY, {}).get(layout.DIRTY_MARK)

    def number(qualifier, decode, default):
        return decode(stats[qualifier][0].value) if qualifier in stats else default

    result = {
        "item": item,
        "norm2": number(layout.NORM2, codecs.decode_double, 0.0),
        "dirty": bool(dirty),
        "dirty_since_ms": int(dirty[0].timestamp.timestamp() * 1000) if dirty else None,
        "users": number(layout.USERS, codecs.decode_int64, 0),
        "events": number(layout.EVENTS, codecs.decode_int64, 0),
    }
    if with_users:
        result["contributions"] = {
            q.decode(): codecs.decode_contribution(c[0].value)[0]
            for q, c in cells.get(layout.CONTRIBUTIONS, {}).items()
        }
    return result


def scan_users(settings: Settings, *, instance=None) -> dict[str, dict[str, float]]:
    """Every user's scores ``{user: {item: r_ui}}`` (for tests and small tables)."""
    instance = instance or bigtable_instance(settings)
    table = instance.table(settings.tables.users)
    filter_ = row_filters.RowFilterChain([row_filters.FamilyNameRegexFilter(layout.SCORES), _LATEST])
    return {
        layout.id_from_row_key(row.row_key): {
            q.decode(): codecs.decode_double(c[0].value) for q, c in row.cells.get(layout.SCORES, {}).items()
        }
        for row in table.read_rows(filter_=filter_)
    }


def scan_items(settings: Settings, *, instance=None) -> dict[str, dict]:
    """Every item's ``{"norm2", "users", "events", "dirty"}`` (for tests and small tables)."""
    instance = instance or bigtable_instance(settings)
    table = instance.table(settings.tables.items)
    filter_ = row_filters.RowFilterChain(
        [row_filters.FamilyNameRegexFilter(f"{layout.ITEM_STATS}|{layout.DIRTY}"), _LATEST]
    )
    result = {}
    for row in table.read_rows(filter_=filter_):
        stats = row.cells.get(layout.ITEM_STATS, {})
        result[layout.id_from_row_key(row.row_key)] = {
            "norm2": codecs.decode_double(stats[layout.NORM2][0].value) if layout.NORM2 in stats else 0.0,
            "users": codecs.decode_int64(stats[layout.USERS][0].value) if layout.USERS in stats else 0,
            "events": codecs.decode_int64(stats[layout.EVENTS][0].value) if layout.EVENTS in stats else 0,
            "dirty": layout.DIRTY_MARK in row.cells.get(layout.DIRTY, {}),
        }
    return result
