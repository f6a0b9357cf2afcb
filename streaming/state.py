"""Read the folded state back: the public way to check the fold.

``read_user`` / ``read_item`` return plain JSON-ready dicts (the shapes
``streamsim inspect`` prints); a user or item never seen comes back with
empty scores and zero counts, not an error.
"""

from __future__ import annotations

from schemas import layout
from schemas.rows import decode_item, decode_user
from streamsim.runtime.bigtable import filters, open_tables
from streamsim.runtime.settings import Settings

_USER = filters.chain(filters.families(layout.SCORES, layout.ITEM_COUNTS, layout.USER_STATS), filters.newest())
_ITEM = filters.chain(filters.families(layout.ITEM_STATS, layout.DIRTY), filters.newest())
_ITEM_WITH_USERS = filters.chain(
    filters.families(layout.ITEM_STATS, layout.DIRTY, layout.CONTRIBUTIONS), filters.newest()
)


def read_user(settings: Settings, user: str) -> dict:
    """``{"user", "scores": {item: r_ui}, "norm2", "events", "item_events": {item: n}}``."""
    row = decode_user(open_tables(settings).users.read_row(layout.user_row_key(user), _USER))
    return {
        "user": user,
        "scores": dict(row.scores),
        "norm2": row.norm2,
        "events": row.events,
        "item_events": dict(row.counts),
    }


def read_item(settings: Settings, item: str, *, with_users: bool = False) -> dict:
    """``{"item", "norm2", "dirty", "dirty_since_ms", "users", "events"}``, plus
    ``"contributions": {user: r_ui}`` if ``with_users``."""
    row_filter = _ITEM_WITH_USERS if with_users else _ITEM
    row = decode_item(open_tables(settings).items.read_row(layout.item_row_key(item), row_filter))
    result = {
        "item": item,
        "norm2": row.norm2,
        "dirty": bool(row.dirty_micros),
        "dirty_since_ms": row.dirty_micros // 1000 if row.dirty_micros else None,
        "users": row.users,
        "events": row.events,
    }
    if with_users:
        result["contributions"] = {user: r for user, (r, _) in row.contributions.items()}
    return result


def scan_users(settings: Settings) -> dict[str, dict[str, float]]:
    """Every user's scores ``{user: {item: r_ui}}`` (for tests and small tables)."""
    rows = open_tables(settings).users.read_rows(row_filter=filters.newest_in(layout.SCORES))
    return {layout.id_from_row_key(key): dict(decode_user(row).scores) for key, row in rows}


def scan_items(settings: Settings) -> dict[str, dict]:
    """Every item's ``{"norm2", "users", "events", "dirty"}`` (for tests and small tables)."""
    result = {}
    for key, cells in open_tables(settings).items.read_rows(row_filter=_ITEM):
        row = decode_item(cells)
        result[layout.id_from_row_key(key)] = {
            "norm2": row.norm2,
            "users": row.users,
            "events": row.events,
            "dirty": bool(row.dirty_micros),
        }
    return result
