"""The HTTP server under the app: what answers before the app does, and ``run``.

aiohttp answers a message its parser cannot read (a bad request line, raw
non-ASCII bytes in the target or more than 8190 of them, a malformed header,
a NUL in one, a bad chunk size, ...) itself, before any middleware: in
``text/plain`` that quotes the request bytes, with a traceback in the log for
each. :class:`ServingRunner` serves the app over a request handler that
answers those in the API's JSON contract instead
(:func:`serving.app.error_response`), counts them in ``/metrics`` (route
``malformed``) and logs one line. An HTTP error raised outside the
middleware (the ``Expect`` handler's) is answered the same way.

Draining. :func:`run` is ``streamsim serve``: it binds, serves until
SIGINT/SIGTERM, then stops listening and drains: every request whose headers
have arrived is answered, with ``Connection: close``, within
``shutdown_timeout_seconds`` (10 s) of the signal, and idle keep-alive
connections are closed at once. aiohttp alone drops every byte a closing
connection receives, also the rest of the body of the request being handled,
which then waits out the deadline and is cut off unanswered: the handler here
keeps feeding that body to the request (never a new request), and fails a body
read still waiting :data:`BODY_GRACE_SECONDS` before the deadline with
:class:`serving.errors.ShuttingDown`, answered 503 ``shutting_down``. Then it
closes Bigtable. An address it cannot have is :class:`CannotListen`, one line
for the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
from collections.abc import Callable

from aiohttp import http_exceptions, web, web_protocol

from serving import errors
from serving.app import METRICS, client_gone, create_app, error_response, labels, ready
from serving.config import ServingConfig
from serving.peers import Peers

log = logging.getLogger(__name__)

#: The ``route`` label of messages that never reached a route.
MALFORMED = "malformed"
#: aiohttp's ``run_app`` default (the bare handler's is an hour): idle
#: keep-alive connections, and silent ones, are closed after this.
KEEPALIVE_TIMEOUT_SECONDS = 75.0
#: During a drain, a body still awaited this long before the deadline fails (503
#: ``shutting_down``), leaving the handler time to write that answer.
BODY_GRACE_SECONDS = 1.0
#: How often a server that listens only once ready checks whether it is.
READY_CHECK_SECONDS = 0.2


class CannotListen(Exception):
    """The address to serve on cannot be had (in use, not local, not resolvable)."""


class _RequestHandler(web_protocol.RequestHandler):
    """aiohttp's per-connection protocol, answering its own errors as the app would."""

    __slots__ = ("_app",)

    def __init__(self, manager: web.Server, *, app: web.Application, **kwargs):
        super().__init__(manager, **kwargs)
        self._app = app

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The answer when the parser failed (status 400) or an exception escaped the app (500)."""
        if request.writer.output_size > 0:
            # As aiohttp's own: an answer has begun, so the connection is broken.
            raise ConnectionError("the answer has begun; cannot send an error instead")
        metrics = self._app[METRICS]
        if isinstance(exc, http_exceptions.HttpProcessingError) or (exc is None and status < 500):
            malformed = exc if isinstance(exc, Exception) else http_exceptions.BadHttpMessage("")
            # A client's mistake, or a scanner's: one line, never the bytes it sent.
            log.info("malformed request from %s: %s", request.remote, errors.malformed_detail(malformed))
            response = error_response(self._app, malformed)
            metrics.observe(MALFORMED, "OTHER", response.status, 0.0)
        elif exc is not None and client_gone(request, exc):
            metrics.disconnected(*labels(request))
            response = web.Response(status=499, reason="Client Closed Request")  # never sent
        else:
            # The middleware catches every Exception: this is a bug worth its traceback.
            log.error("unhandled error below the middleware", exc_info=exc)
            response = error_response(self._app, exc if isinstance(exc, Exception) else RuntimeError())
            metrics.observe(*labels(request), response.status, 0.0)
        response.force_close()  # the parser lost its place in the stream
        return response

    def data_received(self, data: bytes) -> None:
        if (self._close or self._force_close) and self._request_in_progress and self._parser is not None:
            # Draining (module docstring): the rest of the body of the request being
            # handled goes to it; a pipelined request after it is dropped, as aiohttp does.
            with contextlib.suppress(http_exceptions.HttpProcessingError):
                self._parser.feed_data(data)
            return
        super().data_received(data)

    async def shutdown(self, timeout: float | None = 15.0) -> None:
        request = self._current_request
        if request is None or not timeout:
            return await super().shutdown(timeout)
        body_deadline = max(timeout - BODY_GRACE_SECONDS, 0.0)
        give_up = self._loop.call_later(body_deadline, request.content.set_exception, errors.ShuttingDown())
        try:
            await super().shutdown(timeout)
        finally:
            give_up.cancel()

    def log_exception(self, *args, **kwargs) -> None:
        exc = kwargs.get("exc_info")
        if isinstance(exc, (http_exceptions.HttpProcessingError, web.RequestPayloadError, ConnectionError)):
            # After answering, aiohttp drains what is left of the body, and
            # meets again the error the answer was about, or the hang-up.
            log.debug("after the answer: %s", type(exc).__name__)
            return
        super().log_exception(*args, **kwargs)

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        if isinstance(resp, web.HTTPException):
            # Raised outside the middleware (by the Expect handler): aiohttp
            # would send it as text/plain, uncounted.
            resp = error_response(self._app, resp)
            self._app[METRICS].observe(*labels(request), resp.status, 0.0)
        if (self._close or self._force_close) and not resp.prepared:
            resp.force_close()  # draining: the client learns this connection ends with this answer
        return await super().finish_response(request, resp, start_time)


class _Server(web.Server):
    """aiohttp's connection factory, making :class:`_RequestHandler` connections."""

    def __init__(self, *args, app: web.Application, **kwargs):
        super().__init__(*args, **kwargs)
        self._app = app

    def __call__(self) -> _RequestHandler:
        # aiohttp's own __call__ names RequestHandler; the arguments are its.
        return _RequestHandler(self, loop=self._loop, app=self._app, **self._kwargs)


class ServingRunner(web.AppRunner):
    """``web.AppRunner`` for the serving app: the same, with the app's error answers below it too."""

    __slots__ = ()

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()  # starts the app and freezes it
        return _Server(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=asyncio.get_running_loop(),
            app=self.app,
            **made._kwargs,
        )


def make_runner(app: web.Application, config: ServingConfig) -> ServingRunner:
    """The runner :func:`serve` uses (tests run ``create_app`` under it too)."""
    return ServingRunner(
        app,
        access_log=None,  # per-request logging would cost more than scoring
        keepalive_timeout=KEEPALIVE_TIMEOUT_SECONDS,
        shutdown_timeout=config.shutdown_timeout_seconds,
    )


async def _freeze_startup_objects(app: web.Application):
    # Everything imported and built by now lives as long as the process: keep
    # it out of the collector's full passes, which would rescan it each time.
    gc.freeze()
    yield


def listen_problem(config: ServingConfig, exc: OSError) -> str:
    where = f"{config.host}:{config.port}"
    if isinstance(exc, socket.gaierror):
        return f"cannot listen on {where}: no such host ({exc.strerror})"
    # asyncio's text repeats the address; the errno's alone says why.
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return f"cannot listen on {where}: {reason}"


async def serve(
    config: ServingConfig,
    *,
    on_listening: Callable[[], None] | None = None,
    reuse_port: bool = False,
    peers: Peers | None = None,
    ready_first: bool = False,
) -> None:
    """Serve until SIGINT/SIGTERM; :class:`CannotListen` if the address cannot be had.

    ``reuse_port``: listen with SO_REUSEPORT, beside other workers (:mod:`serving.workers`);
    ``peers``: this worker's place among them, served on its own Unix socket too (:mod:`serving.peers`).
    ``ready_first``: listen only once ready (:func:`serving.app.ready`): a worker restarted
    beside others that serve would otherwise take its share of the port's connections
    and answer them 503 until its catalogue is read.
    """
    app = create_app(config, peers)
    app.cleanup_ctx.append(_freeze_startup_objects)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for number in signals:  # first: a signal while Bigtable is connected still stops cleanly
        loop.add_signal_handler(number, stop.set)
    runner = make_runner(app, config)
    try:
        await runner.setup()
        if ready_first:
            await _until_ready(app, stop)
        if not stop.is_set():
            try:
                await web.TCPSite(runner, config.host, config.port, reuse_port=reuse_port or None).start()
            except OSError as exc:
                raise CannotListen(listen_problem(config, exc)) from None
            if peers is not None:
                await web.UnixSite(runner, peers.socket()).start()
            if on_listening is not None:
                on_listening()
            await stop.wait()
    finally:
        await runner.cleanup()
        for number in signals:
            loop.remove_signal_handler(number)


async def _until_ready(app: web.Application, stop: asyncio.Event) -> None:
    """Wait until the app is ready (its pollers keep reading meanwhile) or ``stop`` is set."""
    if not ready(app):
        log.info("listening once the generation and the whole catalogue are loaded")
    while not ready(app) and not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), READY_CHECK_SECONDS)


def run(
    config: ServingConfig,
    *,
    on_listening: Callable[[], None] | None = None,
    reuse_port: bool = False,
    peers: Peers | None = None,
    ready_first: bool = False,
) -> None:
    """:func:`serve` in an event loop of its own (the process's main thread)."""
    asyncio.run(serve(config, on_listening=on_listening, reuse_port=reuse_port, peers=peers, ready_first=ready_first))
