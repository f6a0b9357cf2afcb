"""Every error the API answers, in one table: the middleware maps exceptions
with it and ``/openapi.json`` describes the error responses from it, so a new
error cannot be answered without also being documented.

The answer is always JSON ``{"error": code, "detail": ..., "generation": ...}``.
"""

from __future__ import annotations

import dataclasses

from aiohttp import web

from serving.params import BadRequest
from serving.recommender import NoGeneration, UnknownItem
from serving.store import BackendUnavailable


class UnsupportedMediaType(Exception):
    """The request body is not sent as ``application/json``."""


class NotReady(Exception):
    """Bigtable answers, but no generation is published yet (``/readyz``)."""


@dataclasses.dataclass(frozen=True)
class Error:
    status: int
    code: str
    description: str


#: Exception class -> its answer; the most specific class in an exception's
#: MRO wins, and ``Exception`` catches the rest.
ERRORS: dict[type[Exception], Error] = {
    BadRequest: Error(400, "bad_parameter", "a parameter or the body breaks the API contract"),
    web.HTTPNotFound: Error(404, "not_found", "no such route"),
    UnknownItem: Error(404, "unknown_item", "the item has no similarity row in the generation served"),
    web.HTTPMethodNotAllowed: Error(405, "method_not_allowed", "the route does not take this method"),
    web.HTTPRequestEntityTooLarge: Error(413, "payload_too_large", "the body is larger than the server accepts"),
    UnsupportedMediaType: Error(415, "unsupported_media_type", "the body is not sent as application/json"),
    Exception: Error(500, "internal", "unexpected server error (logged)"),
    BackendUnavailable: Error(503, "backend_unavailable", "Bigtable did not answer in time or refused the call"),
    NoGeneration: Error(503, "no_generation", "no similarity generation is published yet"),
    NotReady: Error(503, "not_ready", "Bigtable answers but no generation is published yet"),
}

#: Every ``error`` code with its HTTP status.
ERROR_CODES = {error.code: error.status for error in ERRORS.values()}
INTERNAL = ERRORS[Exception]


def classify(exc: Exception) -> Error:
    for cls in type(exc).__mro__:
        if cls in ERRORS:
            return ERRORS[cls]
        if cls is web.HTTPException:
            # aiohttp's other HTTP errors keep their own status, under a code
            # the table has: the client's fault below 500, ours from 500 on.
            return ERRORS[BadRequest if exc.status < 500 else Exception]
    return INTERNAL


def unexpected(exc: Exception) -> bool:
    """True for an exception no entry names: a bug, worth its traceback in the log."""
    return classify(exc) is INTERNAL and not isinstance(exc, web.HTTPException)


def error_answer(exc: Exception, generation: int | None) -> tuple[int, dict, dict | None]:
    """``(status, JSON body, extra headers)`` for ``exc``."""
    error = classify(exc)
    headers = None
    if isinstance(exc, web.HTTPException):
        status = exc.status
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        # 413's text names the limit; the other texts only repeat the reason.
        detail = exc.text if status == 413 and exc.text else exc.reason
    else:
        status = error.status
        # str() of an unexpected exception may carry internals: never send it.
        detail = error.description if error is INTERNAL else str(exc)
    return status, {"error": error.code, "detail": detail, "generation": generation}, headers
