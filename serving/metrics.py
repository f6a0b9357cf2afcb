"""Prometheus metrics of one app (its own registry, so tests can run several apps).

- ``streamsim_serving_requests_total{route,method,status}`` (route ``malformed``: a message
  aiohttp's parser could not read; ``unmatched``: no route)
- ``streamsim_serving_client_disconnects_total{route,method}``: clients gone before their answer
- ``streamsim_serving_request_seconds{route}`` (histogram)
- ``streamsim_serving_cache_{hits,misses}_total``, ``..._cache_hit_ratio``, ``..._cache_rows``
- ``streamsim_serving_generation``, ``..._generation_age_seconds``
- ``streamsim_serving_freshness_lag_seconds``: from the oldest change not in the served
  generation (when it was published; ingest time) to now
- ``streamsim_serving_generation_polls_total``, ``..._generation_poll_failures_total``
- ``streamsim_serving_generation_losses_total``: generations that vanished from the store while served
- ``streamsim_serving_filter_requests_total{filter}``: answers filtered by ``category``,
  ``same_category``, and ``available`` (the catalogue hid some item when they were scored)
- ``streamsim_serving_catalog_items``, ``..._catalog_hidden_items``, ``..._catalog_loads_total``,
  ``..._catalog_changes_total``, ``..._catalog_poll_failures_total``
- ``streamsim_serving_history_reads_total``, ``..._history_read_calls_total``: user histories
  read and the ReadRows calls they shared
- ``streamsim_serving_cache_absent_ids``: ids cached as having no similarity row
- ``streamsim_serving_worker{pid}``: 1, naming the worker process
- ``streamsim_serving_answers_total{arm,route}``: answers given an attribution token
  (``route``: ``schemas.attribution.ROUTES``)
- ``streamsim_serving_rules_loads_total``, ``..._rules_load_failures_total``: the merchandising
  rules file read again after a change, and changed files refused (the rules in force kept)

With ``--workers N``, every series also carries ``worker="<index>"``, all workers in each
scrape (:mod:`serving.peers`).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from serving.generation import GenerationWatcher
from serving.neighbours import NeighbourCache

PREFIX = "streamsim_serving"
#: Latency buckets around the targets (p99 <= 10 ms) and the 1 s 503 bound.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class _StateCollector:
    """Reads cache and generation state at scrape time (no per-request cost)."""

    def __init__(self, cache: NeighbourCache, watcher: Callable[[], GenerationWatcher | None]):
        self._cache = cache
        self._watcher = watcher

    def collect(self):
        cache = self._cache
        yield CounterMetricFamily(f"{PREFIX}_cache_hits", "Similarity rows found in the cache", value=cache.hits)
        yield CounterMetricFamily(f"{PREFIX}_cache_misses", "Similarity rows read from Bigtable", value=cache.misses)
        yield GaugeMetricFamily(
            f"{PREFIX}_cache_hit_ratio", "hits / (hits + misses) since start", value=cache.hit_ratio()
        )
        yield GaugeMetricFamily(f"{PREFIX}_cache_rows", "Similarity rows cached", value=len(cache))
        watcher = self._watcher()
        generation = watcher.current if watcher else None
        if generation is not None:
            yield GaugeMetricFamily(f"{PREFIX}_generation", "Generation served (epoch ms)", value=generation.number)
            yield GaugeMetricFamily(
                f"{PREFIX}_generation_age_seconds",
                "Seconds since the served generation's pass started",
                value=generation.age_seconds(),
            )
            lag = generation.lag_seconds()
            if lag is not None:
                yield GaugeMetricFamily(
                    f"{PREFIX}_freshness_lag_seconds",
                    "Seconds from the oldest change not in the served generation (as of its publication) to now",
                    value=lag,
                )
        if watcher is not None:
            yield CounterMetricFamily(f"{PREFIX}_generation_polls", "Pointer polls", value=watcher.polls)
            yield CounterMetricFamily(
                f"{PREFIX}_generation_poll_failures", "Pointer polls that failed", value=watcher.poll_failures
            )
            yield CounterMetricFamily(
                f"{PREFIX}_generation_losses",
                "Served generations that vanished from the store",
                value=watcher.losses,
            )


class _FilterCollector:
    """The catalogue filters, the catalogue and the coalesced history reads, at scrape time."""

    def __init__(self, cache: NeighbourCache, parts: Callable[[], tuple]):
        self._cache = cache
        self._parts = parts

    def collect(self):
        worker = GaugeMetricFamily(f"{PREFIX}_worker", "This serving process (one per worker)", labels=["pid"])
        worker.add_metric([str(os.getpid())], 1)
        yield worker
        yield GaugeMetricFamily(f"{PREFIX}_cache_absent_ids", "Ids cached as having no row", value=self._cache.absent)
        recommender, follower, histories = self._parts()
        if recommender is not None:
            requests = CounterMetricFamily(
                f"{PREFIX}_filter_requests", "Requests that asked for a catalogue filter", labels=["filter"]
            )
            for name, count in recommender.filtered.items():
                requests.add_metric([name], count)
            yield requests
        if follower is not None:
            catalogue = follower.catalogue
            yield GaugeMetricFamily(f"{PREFIX}_catalog_items", "Items in the catalogue", value=len(catalogue))
            yield GaugeMetricFamily(f"{PREFIX}_catalog_hidden_items", "Items hidden", value=len(catalogue.hidden))
            yield CounterMetricFamily(f"{PREFIX}_catalog_loads", "Whole catalogue reads", value=catalogue.loads)
            yield CounterMetricFamily(
                f"{PREFIX}_catalog_changes", "Catalogue changes applied", value=catalogue.changes_applied
            )
            yield CounterMetricFamily(
                f"{PREFIX}_catalog_poll_failures", "Catalogue polls that failed", value=follower.poll_failures
            )
        if histories is not None:
            yield CounterMetricFamily(f"{PREFIX}_history_reads", "User histories read", value=histories.reads)
            yield CounterMetricFamily(
                f"{PREFIX}_history_read_calls", "ReadRows calls the history reads shared", value=histories.calls
            )


class _RulesCollector:
    def __init__(self, rules):
        self._rules = rules

    def collect(self):
        rules = self._rules
        yield CounterMetricFamily(f"{PREFIX}_rules_loads", "Rules file changes read and in force", value=rules.loads)
        yield CounterMetricFamily(
            f"{PREFIX}_rules_load_failures",
            "Rules file changes refused (the rules in force kept)",
            value=rules.failures,
        )


class ServingMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(
        self,
        cache: NeighbourCache,
        watcher: Callable[[], GenerationWatcher | None],
        parts: Callable[[], tuple] = lambda: (None, None, None),
    ):
        self.registry = CollectorRegistry()
        self._requests = Counter(
            f"{PREFIX}_requests", "HTTP requests answered", ["route", "method", "status"], registry=self.registry
        )
        self._latency = Histogram(
            f"{PREFIX}_request_seconds",
            "Time to answer, by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        # Not among the requests: they were never answered, and are no error of ours.
        self._disconnects = Counter(
            f"{PREFIX}_client_disconnects",
            "Clients that went away before their answer (e.g. in the middle of the body)",
            ["route", "method"],
            registry=self.registry,
        )
        self._answers = Counter(
            f"{PREFIX}_answers", "Answers served with an attribution token", ["arm", "route"], registry=self.registry
        )
        self.registry.register(_StateCollector(cache, watcher))
        self.registry.register(_FilterCollector(cache, parts))
        # labels() takes a lock and builds a key each time; keep the children.
        self._children: dict[tuple, tuple] = {}

    def follow_rules(self, rules) -> None:
        """Report a :class:`serving.rules.RulesFile` (None: no rules file, no series)."""
        if rules is not None:
            self.registry.register(_RulesCollector(rules))

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self._requests.labels(route, method, str(status)),
                self._latency.labels(route),
            )
        children[0].inc()
        children[1].observe(seconds)

    def answered(self, arm: str, route: str) -> None:
        self._answers.labels(arm, route).inc()

    def disconnected(self, route: str, method: str) -> None:
        self._disconnects.labels(route, method).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
