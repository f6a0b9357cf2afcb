"""Merchandising rules: boost or bury, pin, cap per category, exclude a category.

A JSON file named by ``--rules`` (``STREAMSIM_SERVE_RULES``)::

    {
      "boost": [{"category": "shoes", "factor": 2.0}, {"items": ["a", "b"], "factor": 0.5}],
      "pin": [{"route": "similar", "item": "x", "position": 1}],
      "cap_per_category": {"*": 3, "similar": 2},
      "exclude_categories": ["adult"]
    }

Every key is optional. Routes are named as attribution and ``/metrics`` name them
(:data:`ROUTES`); ``"*"`` is every route (a route's own cap replaces it; pins of
``"*"`` and of the route both apply).

Order of application (docs/serving.md, "Merchandising rules"), on every route:

1. the catalogue filters (hidden items, ``category=``, ``exclude``, the history) and the
   excluded categories: such an item is never a candidate, a pin or a fill;
2. the multipliers: a candidate's score times the factor of each ``boost`` entry that
   names its category or the item (factors multiply), before the ranking takes the
   best (in the kernel: :class:`serving.catalog.ItemFacts` keeps a factor per vocabulary
   index); a popularity blend multiplies the blended score;
3. the cap: at most k items of one category, best first (items without a category are
   not capped; the pins count toward their category's cap);
4. the popularity fill of a short list, under the same exclusion and cap;
5. the pins: each at its 1-based position (the end of a shorter list), if it passes the
   filters of step 1; pins win over the cap, and a pin beyond n is not shown.

Parsing is pure and strict: a file too large, not UTF-8 JSON, an unknown key, a wrong
type, a factor not finite or <= 0, a position outside 1..MAX_N, an unknown route: one
:class:`RulesError` naming the file and the key. :func:`arrange` and :func:`apply` are
what a route calls on its ranked list; they never fail on a valid :class:`Rules`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping

from serving.scoring import MAX_N

log = logging.getLogger(__name__)

#: Routes a rule may name (attribution's and /metrics' names), and "*": all of them.
ROUTES = ("user", "session", "similar", "bought-together", "buy-again", "trending", "recent")
ANY_ROUTE = "*"
#: A larger file is refused (a rules file is a few KB; this bounds a mistake's cost).
MAX_RULES_BYTES = 1 << 20
#: The ``source`` of a pinned entry.
PINNED = "pinned"
_KEYS = ("boost", "pin", "cap_per_category", "exclude_categories")


class RulesError(ValueError):
    """A rules file that cannot be used; the message names the file and the key."""


@dataclasses.dataclass(frozen=True)
class Pin:
    item: str
    position: int  # 1-based


@dataclasses.dataclass(frozen=True)
class Rules:
    """A valid rules file, ready to apply (an empty one changes nothing)."""

    category_factors: Mapping[str, float] = dataclasses.field(default_factory=dict)
    item_factors: Mapping[str, float] = dataclasses.field(default_factory=dict)
    #: Route (or "*") -> its pins, by position.
    pins: Mapping[str, tuple[Pin, ...]] = dataclasses.field(default_factory=dict)
    #: Route (or "*") -> at most this many items per category.
    caps: Mapping[str, int] = dataclasses.field(default_factory=dict)
    excluded_categories: frozenset[str] = frozenset()

    @property
    def boosts(self) -> bool:
        return bool(self.category_factors or self.item_factors)

    @property
    def reshapes(self) -> bool:
        """Whether a ranked list needs the pass of :func:`arrange` (caps, pins or exclusions)."""
        return bool(self.pins or self.caps or self.excluded_categories)

    def factor(self, item: str, category: str | None) -> float:
        return self.item_factors.get(item, 1.0) * (self.category_factors.get(category, 1.0) if category else 1.0)

    def excludes(self, category: str | None) -> bool:
        return category is not None and category in self.excluded_categories

    def cap(self, route: str) -> int | None:
        return self.caps.get(route, self.caps.get(ANY_ROUTE))

    def pins_for(self, route: str) -> list[Pin]:
        """The route's pins and the "*" pins, by position (the route's first at a tie), one per item."""
        chosen: dict[str, Pin] = {}
        for pin in (*self.pins.get(route, ()), *self.pins.get(ANY_ROUTE, ())):
            chosen.setdefault(pin.item, pin)
        return sorted(chosen.values(), key=lambda pin: pin.position)

    def extra(self, route: str, n: int) -> int:
        """Candidates to ask the ranking for beyond n, so that a cap and pins still leave n."""
        more = len(self.pins.get(route, ())) + len(self.pins.get(ANY_ROUTE, ()))
        if self.cap(route) is not None:
            more += 2 * n + 10
        return min(MAX_N, n + more) - n


NO_RULES = Rules()


def read_rules(path: str | os.PathLike) -> Rules:
    """The rules in ``path``; :class:`RulesError` (one line) for any problem."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as file:
            raw = file.read(MAX_RULES_BYTES + 1)
    except OSError as exc:
        raise RulesError(f"rules file {name}: {exc.strerror or exc}") from None
    return parse_rules(raw, name)


def parse_rules(raw: bytes, name: str = "<rules>") -> Rules:
    def fail(where: str, problem: str) -> RulesError:
        return RulesError(f"rules file {name}: {where}: {problem}" if where else f"rules file {name}: {problem}")

    if len(raw) > MAX_RULES_BYTES:
        raise fail("", f"larger than {MAX_RULES_BYTES} bytes")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise fail("", "not valid UTF-8 JSON") from None
    if not isinstance(data, dict):
        raise fail("", f"must be a JSON object, got {_kind(data)}")
    for key in data:
        if key not in _KEYS:
            raise fail(key, f"unknown key (known: {', '.join(_KEYS)})")

    def items_of(where: str, value, kind: str) -> list:
        if not isinstance(value, list):
            raise fail(where, f"must be a list of {kind}, got {_kind(value)}")
        return value

    def text(where: str, value) -> str:
        if not isinstance(value, str) or not value:
            raise fail(where, f"must be a non-empty string, got {_kind(value)}")
        return value

    def route(where: str, value) -> str:
        value = text(where, value)
        if value != ANY_ROUTE and value not in ROUTES:
            raise fail(where, f"{value!r} is not a route ({', '.join(ROUTES)} or {ANY_ROUTE})")
        return value

    def count(where: str, value, low: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_N:
            raise fail(where, f"must be an integer in {low}..{MAX_N}, got {value!r}")
        return value

    def fields(where: str, entry, required: tuple, optional: tuple = ()) -> dict:
        if not isinstance(entry, dict):
            raise fail(where, f"must be an object, got {_kind(entry)}")
        for key in entry:
            if key not in required + optional:
                raise fail(f"{where}.{key}", f"unknown key (known: {', '.join(required + optional)})")
        for key in required:
            if key not in entry:
                raise fail(f"{where}.{key}", "missing")
        return entry

    category_factors: dict[str, float] = {}
    item_factors: dict[str, float] = {}
    for k, entry in enumerate(items_of("boost", data.get("boost", []), "objects")):
        where = f"boost[{k}]"
        entry = fields(where, entry, ("factor",), ("category", "items"))
        factor = entry["factor"]
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor) or factor <= 0:
            raise fail(f"{where}.factor", f"must be a finite number > 0, got {factor!r}")
        if ("category" in entry) == ("items" in entry):
            raise fail(where, "give one of category or items")
        if "category" in entry:
            category = text(f"{where}.category", entry["category"])
            category_factors[category] = category_factors.get(category, 1.0) * float(factor)
        else:
            for j, item in enumerate(items_of(f"{where}.items", entry["items"], "strings")):
                item = text(f"{where}.items[{j}]", item)
                item_factors[item] = item_factors.get(item, 1.0) * float(factor)

    pins: dict[str, list[Pin]] = {}
    for k, entry in enumerate(items_of("pin", data.get("pin", []), "objects")):
        where = f"pin[{k}]"
        entry = fields(where, entry, ("route", "item", "position"))
        name_ = route(f"{where}.route", entry["route"])
        pin = Pin(text(f"{where}.item", entry["item"]), count(f"{where}.position", entry["position"], 1))
        for other in pins.get(name_, ()):
            if other.position == pin.position:
                raise fail(where, f"position {pin.position} of route {name_!r} is pinned twice")
            if other.item == pin.item:
                raise fail(where, f"item {pin.item!r} is pinned twice on route {name_!r}")
        pins.setdefault(name_, []).append(pin)

    caps_value = data.get("cap_per_category", {})
    if not isinstance(caps_value, dict):
        raise fail("cap_per_category", f"must be an object of route: count, got {_kind(caps_value)}")
    caps = {
        route(f"cap_per_category.{key}", key): count(f"cap_per_category.{key}", value, 1)
        for key, value in caps_value.items()
    }

    excluded = frozenset(
        text(f"exclude_categories[{k}]", value)
        for k, value in enumerate(items_of("exclude_categories", data.get("exclude_categories", []), "strings"))
    )
    for category in category_factors:
        if category in excluded:
            raise fail("boost", f"category {category!r} is also in exclude_categories")
    return Rules(
        category_factors,
        item_factors,
        {key: tuple(sorted(value, key=lambda pin: pin.position)) for key, value in pins.items()},
        caps,
        excluded,
    )


def _kind(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def arrange(
    rules: Rules,
    route: str,
    ranked: Iterable[dict],
    n: int,
    category_of: Callable[[str], str | None],
    eligible: Callable[[str], bool],
    fill: Iterable[dict] = (),
) -> list[dict]:
    """Steps 3-5: the cap over ``ranked`` (best first, already filtered and multiplied), the
    ``fill`` under the same exclusion and cap, then the pins; at most n entries.

    ``eligible(item)``: a pin passes the route's filters (not hidden, not excluded by the
    request, in its categories). The fill is read lazily, only as far as needed.
    """
    cap = rules.cap(route)
    excluded = rules.excluded_categories
    pins = [
        pin
        for pin in rules.pins_for(route)
        if pin.position <= n and not rules.excludes(category_of(pin.item)) and eligible(pin.item)
    ]
    counts: dict[str, int] = {}
    for pin in pins:
        category = category_of(pin.item)
        if category is not None:
            counts[category] = counts.get(category, 0) + 1
    pinned: dict[str, dict | None] = {pin.item: None for pin in pins}
    ranked = list(ranked)
    if pinned:  # a pinned item the ranking holds keeps its entry (its score), wherever it ranked
        for entry in ranked:
            if entry["item"] in pinned and pinned[entry["item"]] is None:
                pinned[entry["item"]] = entry
    wanted = n - len(pins)
    body: list[dict] = []
    seen = set()
    for source in (ranked, fill):
        for entry in source:
            if len(body) >= wanted:
                break
            item = entry["item"]
            if item in pinned:
                continue
            if item in seen:
                continue
            if cap is not None or excluded:
                category = category_of(item)
                if category is not None:
                    if category in excluded:
                        continue
                    if cap is not None:
                        if counts.get(category, 0) >= cap:
                            continue
                        counts[category] = counts.get(category, 0) + 1
            seen.add(item)
            body.append(entry)
    placed = -1
    for pin in pins:  # by position: a pin that ties with (or lands above) the one before goes after it
        found = pinned[pin.item]
        entry = {"item": pin.item, "score": 0.0} if found is None else dict(found)
        entry["source"] = PINNED
        placed = max(min(pin.position - 1, len(body)), placed + 1)
        body.insert(placed, entry)
    return body


def apply(
    rules: Rules,
    route: str,
    entries: list[dict],
    n: int,
    category_of: Callable[[str], str | None],
    eligible: Callable[[str], bool] = lambda item: True,
    fill: Iterable[dict] = (),
) -> list[dict]:
    """Every rule on a route's ranked ``{"item", "score", "source"}`` list (already through the
    catalogue filters): excluded categories out, scores multiplied, re-sorted (stable), then
    :func:`arrange`. For routes that rank in Python (bought-together, buy-again, trending,
    recent); ``recent`` is an order, not a ranking, so give it ``rules`` without boosts."""
    if rules is NO_RULES:
        return entries[:n]
    if rules.boosts or rules.excluded_categories:
        shaped = []
        for entry in entries:
            category = category_of(entry["item"])
            if rules.excludes(category):
                continue
            factor = rules.factor(entry["item"], category)
            shaped.append(entry if factor == 1.0 else {**entry, "score": entry["score"] * factor})
        entries = sorted(shaped, key=lambda entry: -entry["score"])
    return arrange(rules, route, entries, n, category_of, eligible, fill)


class RulesFile:
    """The rules of one file as a worker follows it: :meth:`poll` (on the serving poll loop)
    re-reads the file when its modification time, size or inode changed. A file that
    cannot be used keeps the rules in force, is logged once (until it changes again) and
    counted in ``failures`` (``/metrics``).

    ``rules`` were read before this worker started (by the parent, with ``--workers``): the
    first poll reads the file again, so a change in between is not missed; rules equal to
    those in force change nothing (and are not counted)."""

    def __init__(self, path: str, rules: Rules):
        self.path = path
        self.current = rules
        self._seen: tuple | None = None
        #: Reads that replaced the rules, and reads refused (``/metrics``).
        self.loads = 0
        self.failures = 0

    def _stamp(self) -> tuple:
        try:
            status = os.stat(self.path)
        except OSError as exc:
            return ("unreadable", exc.errno)
        return (status.st_mtime_ns, status.st_size, status.st_ino)

    def poll(self) -> bool:
        """Re-read the file if it changed; True if new rules are in force."""
        stamp = self._stamp()
        if stamp == self._seen:
            return False
        self._seen = stamp
        try:
            rules = read_rules(self.path)
        except RulesError as exc:
            self.failures += 1
            log.error("%s; the rules in force are kept", exc)
            return False
        if rules == self.current:
            return False
        self.current = rules
        self.loads += 1
        log.info("rules file %s read again", self.path)
        return True
