"""Read the folded state back: the public way to check the fold.

``read_user`` / ``read_item`` return plain JSON-ready dicts (the shapes
``streamsim inspect`` prints); a user or item never seen comes back with
empty scores and zero counts, not an error. A user's items are a prefix scan of
``users``; ``read_user`` lists at most ``limit`` of them (a bot may hold millions).
"""

from __future__ import annotations

from schemas import attribution, layout
from schemas.rows import (
    decode_contribution,
    decode_holders,
    decode_item,
    decode_pair,
    decode_purchases,
    decode_recent,
)
from streamsim.runtime.bigtable import filters, open_tables
from streamsim.runtime.settings import Settings

#: Items ``inspect user`` lists, and users ``inspect item --users`` lists, at most.
INSPECT_LIMIT = 10_000
_NEWEST = filters.newest()
_ITEM = filters.chain(filters.families(layout.ITEM_STATS, layout.DIRTY), filters.newest())


def read_user(settings: Settings, user: str, *, limit: int = INSPECT_LIMIT) -> dict:
    """``{"user", "scores": {item: r_ui}, "norm2", "events", "item_events": {item: n}, "truncated"}``."""
    rows = open_tables(settings).users.read_rows(prefix=layout.user_prefix(user), row_filter=_NEWEST, limit=limit + 1)
    pairs = {layout.ids_from_pair_key(key)[1]: decode_pair(row) for key, row in rows}
    truncated = len(pairs) > limit
    pairs = dict(list(pairs.items())[:limit])
    return {
        "user": user,
        "scores": {item: p.r for item, p in pairs.items()},
        "norm2": sum(p.r * p.r for p in pairs.values()),
        "events": sum(p.events for p in pairs.values()),
        "item_events": {item: p.events for item, p in pairs.items()},
        "truncated": truncated,
    }


def read_item(settings: Settings, item: str, *, with_users: bool = False, limit: int = INSPECT_LIMIT) -> dict:
    """``{"item", "norm2", "entry_norm2", "dirty", "dirty_since_ms", "users", "events"}``, plus
    ``"contributions": {user: r_ui}`` (at most ``limit``) if ``with_users``."""
    tables = open_tables(settings)
    row = decode_item(tables.items.read_row(layout.item_row_key(item), _ITEM))
    result = {
        "item": item,
        "norm2": row.norm2,
        "entry_norm2": row.entry_norm2,
        "dirty": bool(row.dirty_micros),
        "dirty_since_ms": row.dirty_micros // 1000 if row.dirty_micros else None,
        "users": row.users,
        "events": row.events,
    }
    if with_users:
        rows = tables.contributions.read_rows(prefix=layout.item_prefix(item), row_filter=_NEWEST, limit=limit)
        result["contributions"] = {layout.ids_from_pair_key(key)[1]: decode_contribution(r)[0] for key, r in rows}
    return result


def scan_users(settings: Settings) -> dict[str, dict[str, float]]:
    """Every user's scores ``{user: {item: r_ui}}`` (for tests and small tables)."""
    found: dict[str, dict[str, float]] = {}
    for key, row in open_tables(settings).users.read_rows(row_filter=filters.newest_in(layout.SCORES)):
        user, item = layout.ids_from_pair_key(key)
        found.setdefault(user, {})[item] = decode_pair(row).r
    return found


def scan_items(settings: Settings) -> dict[str, dict]:
    """Every item's ``{"norm2", "entry_norm2", "users", "events", "dirty"}`` (for tests and small tables)."""
    result = {}
    for key, cells in open_tables(settings).items.read_rows(row_filter=_ITEM):
        row = decode_item(cells)
        result[layout.id_from_row_key(key)] = {
            "norm2": row.norm2,
            "entry_norm2": row.entry_norm2,
            "users": row.users,
            "events": row.events,
            "dirty": bool(row.dirty_micros),
        }
    return result


def scan_recent(settings: Settings) -> dict[str, list[str]]:
    """Every user's recent sequence ``{user: [item, ...]}``, oldest first (tests, small tables)."""
    return {
        layout.id_from_row_key(key): decode_recent(cells)
        for key, cells in open_tables(settings).recent.read_cells(row_filter=filters.recent_events())
    }


def scan_purchases(settings: Settings) -> dict[str, list[tuple[str, int]]]:
    """Every user's purchase index ``{user: [(item, event ms), ...]}``, oldest first (tests, small tables)."""
    found = {
        layout.id_from_row_key(key): decode_purchases(cells)
        for key, cells in open_tables(settings).recent.read_cells(row_filter=filters.purchases())
    }
    return {user: purchases for user, purchases in found.items() if purchases}


def scan_sessions(settings: Settings) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """The session index (tests, small tables): ``{item: [session key of each click, newest
    first]}`` and ``{session key: [item, ...]}`` oldest first."""
    holders, sessions = {}, {}
    table = open_tables(settings).sessions
    for key, cells in table.read_cells(start=b"i", end=b"j", row_filter=filters.session_holders()):
        holders[layout.id_from_sessions_key(key)] = [session for session, _ in decode_holders(cells)]
    for key, cells in table.read_cells(start=b"s", end=b"t", row_filter=filters.session_events()):
        sessions[layout.id_from_sessions_key(key)] = decode_recent(cells, layout.SESSION_EVENTS)
    return holders, sessions


def scan_attributed(settings: Settings) -> dict[tuple[str, str, str], int]:
    """Attributed events folded, ``{(arm, route, event type): count}``: the ``a:`` cells of every
    pair row (a scan of the rows that have any; ``streamsim report``)."""
    counts: dict[tuple[str, str, str], int] = {}
    rows = open_tables(settings).users.read_rows(row_filter=filters.newest_in(layout.ATTRIBUTED))
    for _, row in rows:
        for key, n in decode_pair(row).attributed.items():
            label = attribution.parse_counter_key(key)
            counts[label] = counts.get(label, 0) + n
    return counts
