"""Request parameters: parse and check them, or raise :class:`BadRequest` (HTTP 400).

Ids follow the event contract (:func:`schemas.events.id_problem`): an id the
stream would refuse could never be in Bigtable, and one UTF-8 cannot encode
would fail in key encoding as an HTTP 500 instead of a 400.
Unknown or repeated query parameters are errors too: a typo such as
``?users=u1`` should not silently turn into a different question.

Percent-decoding is strict: ``%FF`` or ``%ED%A0%80`` (bytes that are not
UTF-8) is a 400, in the query as in the path, where the default decoders
would turn them into U+FFFD or keep them literally and answer a different
question. JSON bodies are strict about types: ``"n": "10"`` is not a number.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from urllib.parse import unquote, unquote_plus

from schemas.events import EventType, Weights, all_valid_ids, id_problem
from serving.scoring import MAX_N

#: History items one request may name (the session form and POST). The seed's
#: complex requests had about 20; 100 bounds the Bigtable read per request.
MAX_REQUEST_ITEMS = 100
#: Items one request may exclude.
MAX_EXCLUDE = 1000
#: Categories one request may name (``category=a,b``).
MAX_CATEGORIES = 100

SESSION_PARAMS = {"browsed": EventType.BROWSE, "basket": EventType.BASKET, "purchased": EventType.PURCHASE}
_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no"}


class BadRequest(ValueError):
    """A parameter breaks the API contract; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class Options:
    n: int
    exclude: tuple[str, ...]
    explain: bool
    #: Only items of these catalogue categories (empty: any).
    categories: tuple[str, ...] = ()
    #: /similar: only items of the item's own category.
    same_category: bool = False
    #: Sessions only: whether the session's own items may come back (None: the tuned default).
    allow_repeats: bool | None = None


@dataclasses.dataclass(frozen=True)
class RecommendationQuery:
    """Exactly one of ``user``, ``session`` ({item: summed weight}, with ``clicks``: its
    items in the order given, repeats kept) and ``session_id`` (a session of the stream's
    index) is set."""

    options: Options
    user: str | None = None
    session: dict[str, float] | None = None
    clicks: tuple[str, ...] = ()
    session_id: str | None = None


def check_id(name: str, value) -> str:
    problem = id_problem(value)
    if problem is not None:
        raise BadRequest(f"{name} {problem}")
    return value


def parse_n(value, *, text: bool = True) -> int:
    """``n`` from the query (``text``: digits) or from a JSON body (an integer only).

    In JSON an integer is what JSON Schema says it is: ``10`` or ``10.0``
    (no fraction), never ``"10"``.
    """
    if isinstance(value, str) and text and value.isascii() and value.isdigit() and len(value) <= 7:
        value = int(value)  # the common case, without the regex
    elif isinstance(value, str) and text:
        if not re.fullmatch(r"\+?[0-9]{1,7}", value.strip()):  # ASCII digits: int() takes others too
            raise BadRequest(f"n must be an integer in 1..{MAX_N}")
        value = int(value)
    elif isinstance(value, float) and value.is_integer():  # NaN and infinities are not
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_N:
        raise BadRequest(f"n must be an integer in 1..{MAX_N}")
    return value


def parse_bool(name: str, value, *, text: bool = True) -> bool:
    """A flag from the query (``text``: true/false/1/0/yes/no) or from a JSON body (a boolean only)."""
    if isinstance(value, bool):
        return value
    if text and isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise BadRequest(f"{name} must be true or false")


def parse_id_list(name: str, value, limit: int, *, text: bool = True, may_be_empty: bool = False) -> list[str]:
    """A comma-separated string (query, ``text``) or a JSON list of ids.

    ``may_be_empty``: an empty list (``exclude=`` or ``"exclude": []``) means none.
    """
    if text and isinstance(value, str):
        value = value.split(",") if value or not may_be_empty else []
    elif not (isinstance(value, list) and all(isinstance(item, str) for item in value)):
        raise BadRequest(f"{name} must be a list of item ids")
    if (not value and not may_be_empty) or "" in value:
        raise BadRequest(f"{name} must be a {'' if may_be_empty else 'non-empty '}list of non-empty item ids")
    # The count first, so an oversized list costs no per-id checks.
    if len(value) > limit:
        raise BadRequest(f"{name} has {len(value)} items; the limit is {limit}")
    if all_valid_ids(value):  # the common case, in one pass
        return value
    for item in value:
        problem = id_problem(item)
        if problem is not None:
            raise BadRequest(f"an item in {name} {problem}")
    return value


def query_pairs(raw: str) -> list[tuple[str, str]]:
    """``a=1&b=x%2Cy`` -> ``[("a", "1"), ("b", "x,y")]``, in order, repeats kept.

    Our own split rather than ``request.query``: that builds a MultiDict
    through yarl's general parser, a visible cost on a 20-item session
    request, where most parts need no unquoting at all.
    """
    pairs = []
    for part in raw.split("&"):
        if part:
            key, _, value = part.partition("=")
            if "%" in part or "+" in part:
                key, value = _unquote_query(key, key), _unquote_query(key, value)
            pairs.append((key, value))
    return pairs


def _unquote_query(key: str, text: str) -> str:
    try:
        return unquote_plus(text, errors="strict")
    except UnicodeDecodeError:
        raise BadRequest("a parameter is not valid UTF-8 once percent-decoded") from None


def path_id(name: str, raw: str) -> str:
    """A path segment as sent (still percent-encoded) -> the id it names, strictly decoded.

    ``+`` is a plus sign in a path, and ``%2F`` a slash inside the id.
    """
    try:
        value = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise BadRequest(f"{name} is not valid UTF-8 once percent-decoded") from None
    return check_id(name, value)


def _single(query, allowed: set[str]) -> dict[str, str]:
    """Mapping or (key, value) pairs -> dict; unknown or repeated keys are errors."""
    values: dict[str, str] = {}
    # A list (query_pairs) first: isinstance against the Mapping ABC costs on every request.
    for key, value in query if isinstance(query, list) else query.items() if isinstance(query, Mapping) else query:
        if key not in allowed:
            raise BadRequest(f"unknown parameter; expected only {', '.join(sorted(allowed))}")
        if key in values:
            raise BadRequest(f"parameter {key!r} is given more than once")
        values[key] = value
    return values


def _options(values: Mapping, default_n: int, *, text: bool = True) -> Options:
    """``n``, ``exclude`` and ``explain``: from the query (``text``) or a JSON body.

    Absent means the default; a JSON ``null`` is a value of the wrong type.
    """
    return Options(
        n=parse_n(values["n"], text=text) if "n" in values else default_n,
        exclude=(
            tuple(parse_id_list("exclude", values["exclude"], MAX_EXCLUDE, text=text, may_be_empty=True))
            if "exclude" in values
            else ()
        ),
        explain=parse_bool("explain", values["explain"], text=text) if "explain" in values else False,
        categories=(
            tuple(parse_id_list("category", values["category"], MAX_CATEGORIES, text=text))
            if "category" in values
            else ()
        ),
        same_category=(
            parse_bool("same_category", values["same_category"], text=text) if "same_category" in values else False
        ),
        allow_repeats=(
            parse_bool("allow_repeats", values["allow_repeats"], text=text) if "allow_repeats" in values else None
        ),
    )


def _session(groups: list[tuple[list[str], EventType]], weights: Weights) -> dict[str, float]:
    if sum(len(items) for items, _ in groups) > MAX_REQUEST_ITEMS:
        total = sum(len(items) for items, _ in groups)
        raise BadRequest(f"the session has {total} items; the limit is {MAX_REQUEST_ITEMS}")
    session: dict[str, float] = {}
    for items, event_type in groups:
        weight = weights.of(event_type)
        for item in items:
            # An item browsed and then basketed counts as both, as in the stream.
            session[item] = session.get(item, 0.0) + weight
    return session


def browsed(items: list[str], weights: Weights) -> dict[str, float]:
    """A session of browsed items ({item: summed weight}), as the form would give it."""
    return _session([(items, EventType.BROWSE)], weights) if items else {}


def recommendation_query(query, weights: Weights, default_n: int) -> RecommendationQuery:
    """``GET /recommendations``: ``user=U``, ``session=S`` or the session form, plus options."""
    allowed = {"user", "session", *SESSION_PARAMS, "n", "exclude", "explain", "category", "allow_repeats"}
    values = _single(query, allowed)
    options = _options(values, default_n)
    named = [name for name in SESSION_PARAMS if name in values]
    if "user" in values or "session" in values:
        if named or ("user" in values and "session" in values):
            raise BadRequest("give one of user, session or browsed/basket/purchased, not both")
        if "session" in values:
            return RecommendationQuery(options, session_id=check_id("session", values["session"]))
        if "allow_repeats" in values:
            raise BadRequest("allow_repeats applies to sessions (session, browsed/basket/purchased), not to user")
        return RecommendationQuery(options, user=check_id("user", values["user"]))
    if not named:
        raise BadRequest("give user=U, session=S, or at least one of browsed, basket, purchased")
    groups = [(parse_id_list(name, values[name], MAX_REQUEST_ITEMS), SESSION_PARAMS[name]) for name in named]
    clicks = tuple(item for items, _ in groups for item in items)
    return RecommendationQuery(options, session=_session(groups, weights), clicks=clicks)


def session_body(body, weights: Weights, default_n: int) -> RecommendationQuery:
    """``POST /recommendations``: ``{"items": [{"item": I, "type": T}], "n": 10, ...}``."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    values = _single(body, {"items", "n", "exclude", "explain", "category", "allow_repeats"})
    options = _options(values, default_n, text=False)
    entries = values.get("items")
    if not isinstance(entries, list) or not entries:
        raise BadRequest('items must be a non-empty list of {"item": ..., "type": ...}')
    if len(entries) > MAX_REQUEST_ITEMS:
        raise BadRequest(f"items has {len(entries)} entries; the limit is {MAX_REQUEST_ITEMS}")
    pairs = []
    for entry in entries:
        if not isinstance(entry, dict) or set(entry) - {"item", "type"} or "item" not in entry:
            raise BadRequest('each entry of items must be {"item": ..., "type": ...}')
        try:
            event_type = EventType(entry.get("type", EventType.BROWSE.value))
        except ValueError:
            raise BadRequest("type must be browse, basket or purchase") from None
        pairs.append(([check_id("item", entry["item"])], event_type))
    clicks = tuple(items[0] for items, _ in pairs)
    return RecommendationQuery(options, session=_session(pairs, weights), clicks=clicks)


def recent_query(user: str, query, default_n: int) -> tuple[str, Options]:
    """``GET /users/{user}/recent``: ``user`` decoded already (see :func:`path_id`)."""
    values = _single(query, {"n", "exclude", "category"})
    return check_id("user", user), _options(values, default_n)


def similar_query(item: str, query, default_n: int) -> tuple[str, Options]:
    """``GET /items/{item}/similar``: ``item`` decoded already (see :func:`path_id`)."""
    values = _single(query, {"n", "exclude", "same_category"})
    return check_id("item", item), _options(values, default_n)


def basket_body(body, default_n: int) -> tuple[list[str], Options]:
    """``POST /bought-together``: ``{"items": [item, ...], "n": 10, "exclude": [...], "category": [...]}``."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    values = _single(body, {"items", "n", "exclude", "category"})
    if "items" not in values:
        raise BadRequest("items must be a non-empty list of item ids")
    items = parse_id_list("items", values["items"], MAX_REQUEST_ITEMS, text=False)
    return items, _options(values, default_n, text=False)


def buy_again_query(user: str, query, default_n: int) -> tuple[str, Options]:
    """``GET /users/{user}/buy-again``: ``user`` decoded already (see :func:`path_id`)."""
    values = _single(query, {"n", "exclude", "category"})
    return check_id("user", user), _options(values, default_n)
