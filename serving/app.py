"""The aiohttp application: ``create_app(config)``, routes, one error middleware.

Errors are always JSON ``{"error": code, "detail": ..., "generation": ...}``:
handlers raise, and the middleware answers from :data:`serving.errors.ERRORS`;
no traceback ever reaches a client. Every JSON answer carries the generation
it used (or the one loaded, for probes and errors; null before the first).
What aiohttp answers before the app sees a request (a message its parser
cannot read) goes through :func:`error_response` too: see :mod:`serving.server`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time

import orjson
from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11

from schemas import attribution
from serving import arms, errors, openapi, params, trending
from serving.buy_again import RepurchaseCache
from serving.catalog import Catalogue, CatalogueFollower
from serving.config import ServingConfig
from serving.generation import GenerationWatcher
from serving.history import HistoryReads
from serving.metrics import ServingMetrics
from serving.neighbours import NeighbourCache
from serving.peers import Peers
from serving.polling import PollCounts, poll_forever
from serving.recommender import Answer, Recommender
from serving.rules import RulesFile
from serving.session_neighbours import SessionIndexReads
from serving.store import BackendUnavailable, BigtableStore, request_deadline

log = logging.getLogger(__name__)

CONFIG = web.AppKey("config", ServingConfig)
CACHE = web.AppKey("cache", NeighbourCache)
METRICS = web.AppKey("metrics", ServingMetrics)
STORE = web.AppKey("store", BigtableStore)
WATCHER = web.AppKey("watcher", GenerationWatcher)
RECOMMENDER = web.AppKey("recommender", Recommender)
#: Arm name -> its recommender (``serving.arms``); RECOMMENDER is the first arm's.
ARMS = web.AppKey("arms", dict)
CATALOGUE = web.AppKey("catalogue", Catalogue)
FOLLOWER = web.AppKey("follower", CatalogueFollower)
HISTORIES = web.AppKey("histories", HistoryReads)
PEERS = web.AppKey("peers", Peers)
TRENDING = web.AppKey("trending", trending.TrendingBoards)
#: The merchandising rules file followed (absent without ``--rules``).
RULES = web.AppKey("rules", RulesFile)
#: Bought-together lists, one cache for every arm (as CACHE).
BOUGHT_CACHE = web.AppKey("bought_cache", NeighbourCache)
REPURCHASE_CACHE = web.AppKey("repurchase_cache", RepurchaseCache)

#: How long a starting server waits for its catalogue before it goes on (and listens,
#: unless it listens only once ready): a big catalogue takes minutes to read, and a
#: worker that does not listen within ``serving.workers.START_SECONDS`` fails the start.
START_LOAD_SECONDS = 10.0
_METHODS = {"GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"}
#: Sent as ``Server`` instead of aiohttp's ``Python/3.x aiohttp/x.y``: versions help only an attacker.
SERVER_NAME = "streamsim"


def json_response(body: dict, status: int = 200, headers=None) -> web.Response:
    # orjson: the stdlib encoder was the largest single cost of a warm session request.
    return web.Response(body=orjson.dumps(body), status=status, headers=headers, content_type="application/json")


def _generation(app: web.Application) -> int | None:
    watcher = app.get(WATCHER)
    return watcher.current.number if watcher is not None and watcher.current is not None else None


def error_response(app: web.Application, exc: BaseException) -> web.Response:
    """The JSON error answer to ``exc``, wherever in the stack it was caught."""
    status, body, headers = errors.error_answer(exc, _generation(app))
    response = json_response(body, status, headers)
    response.headers[hdrs.SERVER] = SERVER_NAME
    return response


def labels(request: web.BaseRequest) -> tuple[str, str]:
    """``(route, method)`` as ``/metrics`` counts them."""
    match_info = getattr(request, "match_info", None)
    route = match_info.route.resource if match_info is not None else None
    return (
        route.canonical if route is not None else "unmatched",
        request.method if request.method in _METHODS else "OTHER",
    )


def client_gone(request: web.BaseRequest, exc: BaseException) -> bool:
    """True if ``exc`` only says the client hung up (aiohttp then fails the body read with it)."""
    transport = request.transport
    return isinstance(exc, ConnectionError) and (transport is None or transport.is_closing())


def _start_budget(app: web.Application):
    """The request's backend reads share ``request_timeout_seconds`` from now (a context token)."""
    return request_deadline.set(asyncio.get_running_loop().time() + app[CONFIG].request_timeout_seconds)


@web.middleware
async def errors_and_metrics(request: web.Request, handler) -> web.StreamResponse:
    """Turn every exception into a JSON error and count every answer."""
    app = request.app
    started = time.perf_counter()
    budget = _start_budget(app)
    try:
        response = await handler(request)
    except Exception as exc:  # noqa: BLE001 - the contract is a JSON error, never a traceback
        if client_gone(request, exc):
            # Nobody is left to answer: count it as what it is, not as our
            # 500. aiohttp's write of this stand-in fails quietly.
            route, method = labels(request)
            app[METRICS].disconnected(route, method)
            log.info("client went away before %s %s was answered", method, route)
            return web.Response(status=499, reason="Client Closed Request")
        if errors.unexpected(exc):
            log.exception("unhandled error on %s %s", request.method, request.rel_url)
        response = error_response(app, exc)
    finally:
        request_deadline.reset(budget)
    response.headers[hdrs.SERVER] = SERVER_NAME
    app[METRICS].observe(*labels(request), response.status, time.perf_counter() - started)
    return response


def _arm(request: web.Request, user: str | None) -> tuple[str, Recommender]:
    """The visitor's arm (``serving.arms``) and its recommender."""
    arm = arms.assign(request.app[CONFIG].arms, user or request.headers.get(arms.VISITOR_HEADER))
    return arm.name, request.app[ARMS][arm.name]


def _answer_json(app: web.Application, route: str, arm: str, answer: Answer, **extra) -> web.Response:
    """The answer with its ``arm`` and ``attribution`` token (``schemas.attribution``), counted."""
    config = app[CONFIG]
    config_id = config.config_id if len(config.arms) == 1 else arm
    token = attribution.encode(
        attribution.Attribution(
            route, answer.generation or 0, config_id, arm, secrets.token_hex(8), int(time.time() * 1000)
        )
    )
    app[METRICS].answered(arm, route)
    body = {"generation": answer.generation, **extra, "arm": arm, "attribution": token, "items": answer.items}
    return json_response(body)


async def get_recommendations(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    query = params.recommendation_query(
        params.query_pairs(request.rel_url.raw_query_string), config.weights, config.default_n
    )
    return await _recommend(request, query)


async def post_recommendations(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    body = await _json_body(request)
    return await _recommend(request, params.session_body(body, config.weights, config.default_n))


async def _json_body(request: web.Request):
    """The request's JSON body, strictly: no query string, application/json, within the size limit."""
    if request.rel_url.raw_query_string:
        raise params.BadRequest(f"POST {request.path} takes its parameters in the JSON body")
    if request.content_type != "application/json":
        raise errors.UnsupportedMediaType("send the body as application/json")
    _refuse_a_large_body(request)
    raw = await request.read()  # HTTPRequestEntityTooLarge beyond client_max_size (chunked bodies)
    _start_budget(request.app)  # the budget is for Bigtable, not for a slow client's upload
    try:
        # Decoded strictly first: json.loads(bytes) would let UTF-8-encoded
        # surrogates (b"\xed\xa0\x80") through as lone surrogates.
        return json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise params.BadRequest("the body is not valid UTF-8 JSON") from None


def _refuse_a_large_body(request: web.Request) -> None:
    # At once, on the declared length: read() would first wait for (and
    # buffer) client_max_size bytes of a body that is refused anyway.
    declared = request.content_length
    if declared is not None and declared > request.client_max_size:
        raise web.HTTPRequestEntityTooLarge(max_size=request.client_max_size, actual_size=declared)


async def expect_continue(request: web.Request) -> None:
    """``Expect: 100-continue``: refuse an oversized body before the client sends it.

    aiohttp's default handler says ``100 Continue`` to any length. This runs
    before the middleware; :mod:`serving.server` answers what it raises.
    """
    _refuse_a_large_body(request)
    if request.version == HttpVersion11:
        if request.headers.get(hdrs.EXPECT, "").lower() != "100-continue":
            raise web.HTTPExpectationFailed(text="only Expect: 100-continue is understood")
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # as aiohttp's: the answer's own bytes start after this


async def _recommend(request: web.Request, query: params.RecommendationQuery) -> web.Response:
    app, options = request.app, query.options
    arm, recommender = _arm(request, query.user)
    if query.user is not None:
        answer = await recommender.for_user(
            query.user, options.n, exclude=options.exclude, explain=options.explain, categories=options.categories
        )
        return _answer_json(app, "user", arm, answer, user=query.user)
    session, clicks, own = query.session, list(query.clicks), frozenset()
    if query.session_id is not None:
        clicks = await recommender.session_clicks(query.session_id)
        session = params.browsed(clicks, app[CONFIG].weights)
        own = frozenset({query.session_id})
    answer = await recommender.for_session(
        session,
        options.n,
        exclude=options.exclude,
        explain=options.explain,
        categories=options.categories,
        allow_repeats=options.allow_repeats,
        clicks=clicks,
        own=own,
    )
    if query.session_id is not None:
        return _answer_json(app, "session", arm, answer, session=query.session_id)
    return _answer_json(app, "session", arm, answer)


async def get_similar(request: web.Request) -> web.Response:
    item, options = params.similar_query(
        _raw_id(request, "item", "/items/", "/similar"),
        params.query_pairs(request.rel_url.raw_query_string),
        request.app[CONFIG].default_n,
    )
    arm, recommender = _arm(request, None)
    answer = await recommender.similar(item, options.n, exclude=options.exclude, same_category=options.same_category)
    return _answer_json(request.app, "similar", arm, answer, item=item)


async def get_recent(request: web.Request) -> web.Response:
    user, options = params.recent_query(
        _raw_id(request, "user", "/users/", "/recent"),
        params.query_pairs(request.rel_url.raw_query_string),
        request.app[CONFIG].default_n,
    )
    arm, recommender = _arm(request, user)
    answer = await recommender.recent(user, options.n, exclude=options.exclude, categories=options.categories)
    return _answer_json(request.app, "recent", arm, answer, user=user)


async def get_bought_together(request: web.Request) -> web.Response:
    item, options = params.similar_query(
        _raw_id(request, "item", "/items/", "/bought-together"),
        params.query_pairs(request.rel_url.raw_query_string),
        request.app[CONFIG].default_n,
    )
    arm, recommender = _arm(request, None)
    answer = await recommender.bought_together(
        item, options.n, exclude=options.exclude, same_category=options.same_category
    )
    return _answer_json(request.app, "bought-together", arm, answer, item=item)


async def post_bought_together(request: web.Request) -> web.Response:
    items, options = params.basket_body(await _json_body(request), request.app[CONFIG].default_n)
    arm, recommender = _arm(request, None)
    answer = await recommender.bought_with_basket(
        items, options.n, exclude=options.exclude, categories=options.categories
    )
    return _answer_json(request.app, "bought-together", arm, answer)


async def get_buy_again(request: web.Request) -> web.Response:
    user, options = params.buy_again_query(
        _raw_id(request, "user", "/users/", "/buy-again"),
        params.query_pairs(request.rel_url.raw_query_string),
        request.app[CONFIG].default_n,
    )
    arm, recommender = _arm(request, user)
    answer = await recommender.buy_again(user, options.n, exclude=options.exclude, categories=options.categories)
    return _answer_json(request.app, "buy-again", arm, answer, user=user)


def _raw_id(request: web.Request, name: str, prefix: str, suffix: str) -> str:
    """The id in ``{prefix}{id}{suffix}``, decoded strictly from the path as sent.

    ``match_info`` keeps bytes that are not UTF-8 literally (``%ED%A0%80``
    stays those nine characters), which would make them a different id.
    """
    raw = request.rel_url.raw_path
    if raw.startswith(prefix) and raw.endswith(suffix) and len(raw) > len(prefix) + len(suffix):
        return params.path_id(name, raw[len(prefix) : -len(suffix)])
    return request.match_info[name]  # a path the router normalised: its decoding stands


async def get_trending(request: web.Request) -> web.Response:
    """``serving.trending``: the window's rising items, visible and in the category if given."""
    app = request.app
    query = trending.trending_query(params.query_pairs(request.rel_url.raw_query_string), app[CONFIG].default_n)
    arm, recommender = _arm(request, None)
    items = await app[TRENDING].top(query, recommender.rules())
    return _answer_json(app, "trending", arm, Answer(_generation(app), items), window=query.window.name)


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok", "generation": _generation(request.app)})


def ready(app: web.Application) -> bool:
    """A generation and the catalogue are loaded (what ``/readyz`` checks, but Bigtable's answer now)."""
    watcher = app.get(WATCHER)
    return watcher is not None and watcher.current is not None and app[CATALOGUE].loaded


async def readyz(request: web.Request) -> web.Response:
    """Ready when Bigtable answers now and the generation it names is there to serve."""
    watcher = request.app[WATCHER]
    generation = await watcher.refresh()  # BackendUnavailable -> 503
    if generation is None:
        raise errors.NotReady(f"Bigtable answers but {watcher.missing}")
    if not request.app[CATALOGUE].loaded:
        raise errors.NotReady("Bigtable answers but the catalogue has not been read yet")
    return json_response({"status": "ready", "generation": generation.number})


async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    peers = request.app.get(PEERS)
    if peers is not None and not Peers.from_peer(request):
        body = await peers.gather(body)  # every worker's series, labelled (serving.peers)
    return web.Response(body=body, headers={"Content-Type": request.app[METRICS].content_type})


async def openapi_json(request: web.Request) -> web.Response:
    return json_response(openapi.document())


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/recommendations", get_recommendations)
    app.router.add_post("/recommendations", post_recommendations, expect_handler=expect_continue)
    app.router.add_get("/items/{item}/similar", get_similar)
    app.router.add_get("/users/{user}/recent", get_recent)
    app.router.add_get("/trending", get_trending)
    app.router.add_get("/items/{item}/bought-together", get_bought_together)
    app.router.add_post("/bought-together", post_bought_together, expect_handler=expect_continue)
    app.router.add_get("/users/{user}/buy-again", get_buy_again)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi_json)


async def bigtable_context(app: web.Application):
    """Open the Bigtable channel and start polling the pointer; undo both on shutdown."""
    config = app[CONFIG]
    store = BigtableStore(config.settings, deadline_seconds=config.rpc_deadline_seconds)
    watcher = GenerationWatcher(store, config.poll_seconds)
    follower = CatalogueFollower(store, app[CATALOGUE], config.poll_seconds, config.catalog_reload_seconds)
    histories = HistoryReads(
        store, window_seconds=config.history_window_ms / 1000, max_batch=config.history_batch_reads
    )
    app[STORE], app[WATCHER], app[FOLLOWER], app[HISTORIES] = store, watcher, follower, histories
    app[TRENDING] = trending.TrendingBoards(store, app[CATALOGUE])
    # One session-index cache for every arm: the arms differ in query knobs only.
    sessions = SessionIndexReads(store, ttl_seconds=config.session_cache_seconds)
    recommenders = {
        arm.name: Recommender(
            store,
            watcher,
            app[CACHE],
            app[CATALOGUE],
            histories,
            max_history=config.max_history,
            vocabulary_limit=config.vocabulary_limit,
            knobs=arm.knobs,
            sessions=sessions,
            session_knn=config.session_knn,
            rules=app.get(RULES),
            bought_cache=app[BOUGHT_CACHE],
            repurchase_cache=app[REPURCHASE_CACHE],
        )
        for arm in config.arms
    }
    app[RECOMMENDER] = recommenders[config.arms[0].name]
    for recommender in recommenders.values():
        recommender.filtered = app[RECOMMENDER].filtered  # /metrics counts every arm's filters
    app[ARMS] = recommenders
    try:
        await watcher.refresh()
        await asyncio.wait_for(follower.load(), START_LOAD_SECONDS)
    except BackendUnavailable as exc:
        # Start anyway: /readyz says not ready and the pollers keep trying.
        log.warning("Bigtable not reachable at start: %s", exc)
    except TimeoutError:
        log.info("the catalogue is still loading: /readyz says not ready until it is read")
    loop = asyncio.get_running_loop()
    pollers = [
        loop.create_task(watcher.run(), name="generation-poller"),
        loop.create_task(follower.run(), name="catalogue-follower"),
    ]
    if RULES in app:
        rules = app[RULES]

        async def reread() -> None:
            rules.poll()

        what = f"the rules file {rules.path}"
        pollers.append(
            loop.create_task(
                poll_forever(reread, config.poll_seconds, what, PollCounts(), wait_first=True), name="rules"
            )
        )
    yield
    for poller in pollers:
        poller.cancel()
    for poller in pollers:
        with contextlib.suppress(asyncio.CancelledError):
            await poller
    await store.close()


def create_app(config: ServingConfig, peers: Peers | None = None) -> web.Application:
    """The serving app; ``peers``: this worker's place among ``--workers N`` (``/metrics`` covers all)."""
    app = web.Application(middlewares=[errors_and_metrics], client_max_size=config.max_body_bytes)
    app[CONFIG] = config
    if peers is not None:
        app[PEERS] = peers
    app[CACHE] = cache = NeighbourCache(config.cache_rows, config.absent_cache_rows)
    app[BOUGHT_CACHE] = NeighbourCache(config.cache_rows, config.absent_cache_rows)
    app[REPURCHASE_CACHE] = RepurchaseCache(config.cache_rows)
    app[CATALOGUE] = Catalogue()
    if config.rules:
        app[RULES] = RulesFile(config.rules, config.start_rules)
    app[METRICS] = ServingMetrics(
        cache, lambda: app.get(WATCHER), lambda: (app.get(RECOMMENDER), app.get(FOLLOWER), app.get(HISTORIES))
    )
    app[METRICS].follow_rules(app.get(RULES))
    setup_routes(app)
    app.cleanup_ctx.append(bigtable_context)
    return app
