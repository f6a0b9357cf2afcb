"""The OpenAPI 3.1 document served at ``/openapi.json``.

Tests check that every route of the app is described here, and a
schemathesis run checks the server against it. The error responses are read
from :data:`serving.errors.ERRORS`, the table the error middleware answers
from, so the two cannot drift apart. Ids are described as
:func:`schemas.events.id_problem` accepts them, as far as JSON Schema can:
its regular expressions cannot name lone surrogates, which UTF-8 JSON cannot
carry anyway (only ``\\ud800`` escapes can, and they are a 400 too). What
OpenAPI cannot say of query parameters at all, the descriptions say: give
``user`` or at least one of browsed/basket/purchased.
"""

from __future__ import annotations

from schemas.events import MAX_ID_CHARS
from serving.errors import ERROR_CODES, ERRORS
from serving.params import MAX_CATEGORIES, MAX_EXCLUDE, MAX_REQUEST_ITEMS
from serving.scoring import MAX_N


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _errors(*statuses: int) -> dict:
    # dict.fromkeys: one line per code, though several exceptions may share one.
    return {
        str(status): {
            "description": "; ".join(
                dict.fromkeys(f"{e.code}: {e.description}" for e in ERRORS.values() if e.status == status)
            ),
            "content": {"application/json": {"schema": _ref("Error")}},
        }
        for status in statuses
    }


def _ok(schema: str, description: str) -> dict:
    return {"200": {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}}


#: No control characters (C0, DEL, C1), as the event contract says.
_NO_CONTROLS = "\\u0000-\\u001f\\u007f-\\u009f"


def _id(*, comma: bool = True) -> dict:
    """An item or user id; ``comma=False`` in comma-separated lists, where a comma separates."""
    forbidden = _NO_CONTROLS + ("" if comma else ",")
    return {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS, "pattern": f"^[^{forbidden}]+$"}


def _ids(name: str, description: str, limit: int, *, min_items: int = 1) -> dict:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "style": "form",
        "explode": False,
        "description": f"{description} (comma-separated, {min_items}..{limit} ids of 1..{MAX_ID_CHARS} characters)",
        "schema": {"type": "array", "items": _id(comma=False), "minItems": min_items, "maxItems": limit},
    }


def _path_id(name: str) -> dict:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": "percent-encoded as UTF-8 (`%2F` for a slash; `.` and `..` only so)",
        # A bare . or .. is a dot segment, which URL normalisation removes.
        "schema": {**_id(), "not": {"enum": [".", ".."]}},
    }


N_PARAM = {
    "name": "n",
    "in": "query",
    "required": False,
    "description": "how many items",
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_N, "default": 10},
}
EXCLUDE = _ids("exclude", "items never to return", MAX_EXCLUDE, min_items=0)
EXPLAIN = {
    "name": "explain",
    "in": "query",
    "required": False,
    "description": "list, for each result, the history items that contributed and how much",
    "schema": {"type": "boolean", "default": False},
}
CATEGORY = _ids(
    "category",
    "only items of these catalogue categories; a short list is filled from their most popular items",
    MAX_CATEGORIES,
)
SAME_CATEGORY = {
    "name": "same_category",
    "in": "query",
    "required": False,
    "description": "only neighbours in the item's own catalogue category (none if it has no category)",
    "schema": {"type": "boolean", "default": False},
}
ALLOW_REPEATS = {
    "name": "allow_repeats",
    "in": "query",
    "required": False,
    "description": "session form only: the session's own items may be recommended again "
    "(default: the tuned configuration's, else false)",
    "schema": {"type": "boolean"},
}
_API_ERRORS = (400, 405, 500, 503)


def document() -> dict:
    recommendations_get = {
        "summary": "Recommendations for a user or a session",
        "description": (
            "score_i = sum_j w_j * s_ji over the neighbour lists of the history items j: w_j = r_uj for "
            "`user`, the event-type weights (browse/basket/purchase) for the session form. History items "
            "and `exclude` are never returned; a short list is filled from the popularity list "
            "(`source: popular`). Give either `user` or at least one of browsed/basket/purchased "
            "(anything else is a 400 `bad_parameter`). The request line is limited to 8190 bytes: "
            "send long lists with POST. No route ever returns an item the catalogue marks unavailable, "
            "popular fill included."
        ),
        "parameters": [
            {
                "name": "user",
                "in": "query",
                "required": False,
                "description": "a user id; not with browsed/basket/purchased",
                "schema": _id(),
            },
            {
                "name": "session",
                "in": "query",
                "required": False,
                "description": "a session of the stream's index (its clicks are the query); not with user or "
                "browsed/basket/purchased",
                "schema": _id(),
            },
            _ids("browsed", "items browsed in the session", MAX_REQUEST_ITEMS),
            _ids("basket", "items put in the basket", MAX_REQUEST_ITEMS),
            _ids("purchased", "items purchased", MAX_REQUEST_ITEMS),
            N_PARAM,
            EXCLUDE,
            EXPLAIN,
            CATEGORY,
            ALLOW_REPEATS,
        ],
        "responses": {**_ok("Recommendations", "best items first"), **_errors(*_API_ERRORS)},
    }
    recommendations_post = {
        "summary": "Recommendations for a session given as JSON",
        "description": "The session form of GET, with types checked strictly: `n` is a JSON integer, "
        "`explain` a boolean, `exclude` an array (empty: nothing excluded).",
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("Session")}}},
        "responses": {**_ok("Recommendations", "best items first"), **_errors(400, 405, 413, 415, 500, 503)},
    }
    similar = {
        "summary": "Items most similar to one item (cosine), best first",
        "parameters": [
            _path_id("item"),
            N_PARAM,
            EXCLUDE,
            SAME_CATEGORY,
        ],
        "responses": {**_ok("Recommendations", "neighbours, best first"), **_errors(400, 404, 405, 500, 503)},
    }
    recent = {
        "summary": "The user's recently viewed items, most recent first",
        "description": "The user's last distinct items from the stream (fresh within seconds), the "
        "catalogue filters applied; `score` is the time of the last click on the item (epoch "
        "seconds). Nothing fills a short list; an unknown user gets an empty one.",
        "parameters": [_path_id("user"), N_PARAM, EXCLUDE, CATEGORY],
        "responses": {**_ok("Recommendations", "items, most recent first"), **_errors(400, 405, 500, 503)},
    }
    trending_get = {
        "summary": "Items whose event rate in the window rose most against their own baseline",
        "description": (
            "score = (count + m) / (expected + m): the window's events against what the item's own "
            "baseline expects (the previous 24 hours for 15m and 1h, the previous 7 days for 24h), "
            "with m the window's minimum count (15m: 5, 1h: 10, 24h: 20). An item needs at least m "
            "events in the window and a score above 1. Counted by the stream within seconds; no "
            "popularity fill (a short list means few items are rising). Hidden items never appear."
        ),
        "parameters": [
            {
                "name": "window",
                "in": "query",
                "required": False,
                "schema": {"type": "string", "enum": ["15m", "1h", "24h"], "default": "15m"},
            },
            {"name": "category", "in": "query", "required": False, "description": "one category", "schema": _id()},
            N_PARAM,
        ],
        "responses": {**_ok("Trending", "rising items, best first"), **_errors(*_API_ERRORS)},
    }
    bought_get = {
        "summary": "Items bought together with one item, best first",
        "description": "Items purchased by the same users within BOUGHT_TOGETHER_WINDOW of this one (never "
        "items only browsed together), scored co-buyers / sqrt(buyers_i * buyers_j) by the refresh "
        "(`source: bought-together`); a short list is filled from the popularity list (`source: popular`). "
        "404 exactly when /items/{item}/similar is.",
        "parameters": [_path_id("item"), N_PARAM, EXCLUDE, SAME_CATEGORY],
        "responses": {**_ok("Recommendations", "best first"), **_errors(400, 404, 405, 500, 503)},
    }
    bought_post = {
        "summary": "Items bought together with a basket",
        "description": "The sum of the basket items' bought-together lists; basket items and `exclude` are "
        "never returned; a short list is filled from the popularity list.",
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("Basket")}}},
        "responses": {**_ok("Recommendations", "best first"), **_errors(400, 405, 413, 415, 500, 503)},
    }
    buy_again_get = {
        "summary": "The user's purchases worth buying again, best first",
        "description": "Items of the user's purchase index that other users buy repeatedly, scored by the "
        "item's repurchase rate and the time since the user's last purchase of it against the item's "
        "typical interval (docs/serving.md). No popularity fill: the list may be shorter than n.",
        "parameters": [
            _path_id("user"),
            N_PARAM,
            EXCLUDE,
            CATEGORY,
        ],
        "responses": {**_ok("Recommendations", "best first"), **_errors(400, 405, 500, 503)},
    }
    probe = {"content": {"application/json": {"schema": _ref("Status")}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "streamsim serving",
            "version": "1",
            "description": "Item-to-item recommendations from the latest published similarity "
            "generation. Every JSON answer carries `generation`.",
        },
        "paths": {
            "/recommendations": {"get": recommendations_get, "post": recommendations_post},
            "/items/{item}/similar": {"get": similar},
            "/items/{item}/bought-together": {"get": bought_get},
            "/bought-together": {"post": bought_post},
            "/users/{user}/recent": {"get": recent},
            "/users/{user}/buy-again": {"get": buy_again_get},
            "/trending": {"get": trending_get},
            "/healthz": {
                "get": {"summary": "The process is up", "responses": {"200": {"description": "alive", **probe}}}
            },
            "/readyz": {
                "get": {
                    "summary": "Bigtable answers and a generation is loaded",
                    "responses": {"200": {"description": "ready", **probe}, **_errors(503)},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {"200": {"description": "text exposition format", "content": {"text/plain": {}}}},
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}},
                }
            },
        },
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "detail", "generation"],
                    "properties": {
                        "error": {"type": "string", "enum": sorted(ERROR_CODES)},
                        "detail": {"type": "string"},
                        "generation": {"type": ["integer", "null"]},
                    },
                },
                "Recommendations": {
                    "type": "object",
                    "required": ["generation", "arm", "attribution", "items"],
                    "properties": {
                        "generation": {"type": "integer", "description": "similarity generation used (epoch ms)"},
                        "user": {"type": "string"},
                        "session": {"type": "string"},
                        "item": {"type": "string"},
                        "arm": {"type": "string", "description": "the arm (configuration) that answered"},
                        "attribution": {
                            "type": "string",
                            "maxLength": 256,
                            "description": "opaque token naming this answer; send it back as the events' attribution",
                        },
                        "items": {"type": "array", "items": _ref("Recommendation")},
                    },
                },
                "Recommendation": {
                    "type": "object",
                    "required": ["item", "score", "source"],
                    "properties": {
                        "item": {"type": "string"},
                        "score": {"type": "number"},
                        "source": {
                            "type": "string",
                            "enum": [
                                "similar",
                                "sessions",
                                "popular",
                                "bought-together",
                                "buy-again",
                                "recent",
                                "pinned",
                            ],
                            "description": "pinned: placed by a merchandising rule (--rules, docs/serving.md)",
                        },
                        "last_purchase_ms": {"type": "integer", "description": "buy-again: the user's last purchase"},
                        "because": {
                            "type": "array",
                            "description": "with explain=true",
                            "items": {
                                "type": "object",
                                "required": ["item", "contribution"],
                                "properties": {"item": {"type": "string"}, "contribution": {"type": "number"}},
                            },
                        },
                    },
                },
                "Trending": {
                    "type": "object",
                    "required": ["generation", "window", "arm", "attribution", "items"],
                    "properties": {
                        "generation": {"type": ["integer", "null"], "description": "similarity generation loaded"},
                        "window": {"type": "string", "enum": ["15m", "1h", "24h"]},
                        "arm": {"type": "string"},
                        "attribution": {"type": "string", "maxLength": 256},
                        "items": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["item", "score", "source"],
                                "properties": {
                                    "item": {"type": "string"},
                                    "score": {
                                        "type": "number",
                                        "description": "(count + m) / (expected + m), above 1 (times a rule's factor)",
                                    },
                                    "count": {"type": "integer", "description": "events in the window"},
                                    "expected": {"type": "number", "description": "events the baseline expects"},
                                    "source": {
                                        "type": "string",
                                        "enum": ["trending", "pinned"],
                                        "description": "pinned: placed by a rule (no counts off the board)",
                                    },
                                },
                            },
                        },
                    },
                },
                "Session": {
                    "type": "object",
                    "required": ["items"],
                    "additionalProperties": False,
                    "properties": {
                        "items": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": MAX_REQUEST_ITEMS,
                            "items": {
                                "type": "object",
                                "required": ["item"],
                                "additionalProperties": False,
                                "properties": {
                                    "item": _id(),
                                    "type": {
                                        "type": "string",
                                        "enum": ["browse", "basket", "purchase"],
                                        "default": "browse",
                                    },
                                },
                            },
                        },
                        "n": {"type": "integer", "minimum": 1, "maximum": MAX_N, "default": 10},
                        "exclude": {"type": "array", "items": _id(), "minItems": 0, "maxItems": MAX_EXCLUDE},
                        "explain": {"type": "boolean", "default": False},
                        "category": {"type": "array", "items": _id(), "minItems": 1, "maxItems": MAX_CATEGORIES},
                        "allow_repeats": {"type": "boolean"},
                    },
                },
                "Basket": {
                    "type": "object",
                    "required": ["items"],
                    "additionalProperties": False,
                    "properties": {
                        "items": {"type": "array", "items": _id(), "minItems": 1, "maxItems": MAX_REQUEST_ITEMS},
                        "n": {"type": "integer", "minimum": 1, "maximum": MAX_N, "default": 10},
                        "exclude": {"type": "array", "items": _id(), "minItems": 0, "maxItems": MAX_EXCLUDE},
                        "category": {"type": "array", "items": _id(), "minItems": 1, "maxItems": MAX_CATEGORIES},
                    },
                },
                "Status": {
                    "type": "object",
                    "required": ["status", "generation"],
                    "properties": {"status": {"type": "string"}, "generation": {"type": ["integer", "null"]}},
                },
            }
        },
    }
