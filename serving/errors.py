"""Every error the API answers, in one table: the middleware maps exceptions
with it and ``/openapi.json`` describes the error responses from it, so a new
error cannot be answered without also being documented.

The answer is always JSON ``{"error": code, "detail": ..., "generation": ...}``,
and its detail never carries what a client should not see: request bytes
(aiohttp's parser messages quote them), a value the client sent (an id, a
parameter's name or value: details name the API's own parameter and the rule
it breaks, ``tests/serving/test_http_errors.py`` checks each path), the
backend's address (gRPC's text can name it) or an unexpected exception's text.
"""

from __future__ import annotations

import dataclasses
import re

from aiohttp import http_exceptions, web

from serving.params import BadRequest
from serving.recommender import NoCatalogue, NoGeneration, UnknownItem
from serving.store import BackendUnavailable


class UnsupportedMediaType(Exception):
    """The request body is not sent as ``application/json``."""


class ShuttingDown(Exception):
    """The server is stopping and a request's body did not arrive before the drain deadline."""


class NotReady(Exception):
    """Bigtable answers, but no generation is published yet, or the one served is gone (``/readyz``)."""


@dataclasses.dataclass(frozen=True)
class Error:
    status: int
    code: str
    description: str


#: Exception class -> its answer; the most specific class in an exception's
#: MRO wins, and ``Exception`` catches the rest.
ERRORS: dict[type[Exception], Error] = {
    BadRequest: Error(400, "bad_parameter", "a parameter or the body breaks the API contract"),
    # What aiohttp cannot read: the request line, a header, the body's framing
    # or its Content-Encoding (the parser's errors, and the body's when read).
    http_exceptions.HttpProcessingError: Error(400, "bad_request", "the HTTP message is malformed"),
    web.RequestPayloadError: Error(400, "bad_request", "the HTTP message is malformed"),
    web.HTTPNotFound: Error(404, "not_found", "no such route"),
    UnknownItem: Error(404, "unknown_item", "the item has no similarity row in the generation served"),
    web.HTTPMethodNotAllowed: Error(405, "method_not_allowed", "the route does not take this method"),
    web.HTTPRequestEntityTooLarge: Error(413, "payload_too_large", "the body is larger than the server accepts"),
    UnsupportedMediaType: Error(415, "unsupported_media_type", "the body is not sent as application/json"),
    Exception: Error(500, "internal", "unexpected server error (logged)"),
    BackendUnavailable: Error(503, "backend_unavailable", "Bigtable did not answer in time or refused the call"),
    NoGeneration: Error(503, "no_generation", "no similarity generation is published, or the one served is gone"),
    NoCatalogue: Error(503, "no_catalogue", "the catalogue has not been read yet (loading, or Bigtable unreachable)"),
    NotReady: Error(503, "not_ready", "Bigtable answers but no generation is published, or the one served is gone"),
    ShuttingDown: Error(503, "shutting_down", "the server is stopping and the body did not arrive before its deadline"),
}

#: What went wrong in a message aiohttp could not read, by the most specific
#: class (aiohttp's own texts quote the request bytes, so they are never sent).
_MALFORMED = (
    (http_exceptions.LineTooLong, "the request line or a header is longer than 8190 bytes (use POST for long lists)"),
    (http_exceptions.BadHttpMethod, "the request line does not start with an HTTP method"),
    (http_exceptions.BadStatusLine, "the request line is malformed"),
    (http_exceptions.InvalidURLError, "the request target has characters a URL may not hold (percent-encode them)"),
    (http_exceptions.InvalidHeader, "the request has a malformed header"),
    (http_exceptions.ContentEncodingError, "the body cannot be decoded as its Content-Encoding says"),
    (http_exceptions.TransferEncodingError, "the chunked body is malformed"),
    (http_exceptions.ContentLengthError, "the body is shorter than its Content-Length"),
    (web.RequestPayloadError, "the body cannot be read: its framing or Content-Encoding is broken"),
)
#: llhttp's reason comes first in its messages (``"Invalid header value char:\n\n  b'...'"``):
#: a fixed phrase of the parser's, kept; the quoted bytes after it are not.
_PARSER_REASON = re.compile(r"([A-Za-z][A-Za-z '/-]{2,60}):\n")
#: The gateway's message starts with the gRPC status; the rest may name addresses.
_GRPC_STATUS = re.compile(r"Bigtable ([A-Z_]+)\b")

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


def malformed_detail(exc: BaseException | None) -> str:
    """What is wrong with a message aiohttp could not read, in words of our own."""
    if isinstance(exc, web.RequestPayloadError) and isinstance(exc.__cause__, http_exceptions.HttpProcessingError):
        exc = exc.__cause__  # what the body parser met (a bad gzip stream, a bad chunk)
    for cls, detail in _MALFORMED:
        if isinstance(exc, cls):
            return detail
    reason = _PARSER_REASON.match(getattr(exc, "message", "") or "")
    return f"the HTTP message is malformed: {reason.group(1)}" if reason else "the HTTP message is malformed"


def _detail(exc: Exception, error: Error) -> str:
    if error is INTERNAL:
        # str() of an unexpected exception may carry internals: never send it.
        return error.description
    if error.code == "bad_request":
        return malformed_detail(exc)
    if isinstance(exc, BackendUnavailable):
        status = _GRPC_STATUS.match(str(exc))
        return f"{error.description} ({status.group(1)})" if status else error.description
    return str(exc)


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
        detail = _detail(exc, error)
    return status, {"error": error.code, "detail": detail, "generation": generation}, headers
