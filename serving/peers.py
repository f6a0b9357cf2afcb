"""One scrape of ``/metrics`` describes every worker of ``streamsim serve --workers N``.

The workers share the port (``SO_REUSEPORT``), so a scrape reaches one of them at random,
and its counters alone would jump from scrape to scrape. Each worker therefore also
serves on a Unix socket of its own, ``<directory>/<index>.sock`` in a directory only the
server's user can enter (the parent makes it with ``mkdtemp``, mode 0700). The worker a
scrape reaches reads every other worker's own series over those sockets (a ``/metrics``
that arrives on a Unix socket is answered with that worker's series alone) and answers
them all, each labelled ``worker="<index>"``. A worker started again after a crash keeps
its index, so its series carry on, its counters restarting from 0 as ``rate()`` expects
of a restarted process; ``sum without (worker) (...)`` gives the server's totals. A
worker that does not answer within :data:`PEER_TIMEOUT_SECONDS` (busy, or restarting) is
left out of that scrape; ``streamsim_serving_workers_scraped`` says how many answered.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger(__name__)

#: How long a scrape waits for another worker's series.
PEER_TIMEOUT_SECONDS = 2.0
LABEL = "worker"


@dataclasses.dataclass(frozen=True)
class Peers:
    """This worker's place among the workers: the shared directory and its index."""

    directory: str
    index: int

    def socket(self, index: int | None = None) -> str:
        return str(Path(self.directory) / f"{self.index if index is None else index}.sock")

    def others(self) -> list[tuple[str, str]]:
        """(worker index, socket path) of the other workers listening now."""
        own = Path(self.socket()).name
        return [(path.stem, str(path)) for path in sorted(Path(self.directory).glob("*.sock")) if path.name != own]

    @staticmethod
    def from_peer(request: web.BaseRequest) -> bool:
        """True if ``request`` came over a worker's Unix socket (a peer's scrape): answer it alone."""
        return isinstance(request.transport.get_extra_info("sockname") if request.transport else None, str)

    async def gather(self, own: bytes) -> bytes:
        """``own`` series and every other worker's, each labelled with its worker (module docstring)."""
        answers = await asyncio.gather(*(_scrape(path) for _, path in self.others()))
        texts = [(str(self.index), own.decode())]
        texts += [(index, text) for (index, _), text in zip(self.others(), answers) if text is not None]
        return generate_latest(_Merged(texts))


async def _scrape(path: str) -> str | None:
    try:
        timeout = aiohttp.ClientTimeout(total=PEER_TIMEOUT_SECONDS)
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=path), timeout=timeout) as session:
            async with session.get("http://worker/metrics") as response:
                return await response.text() if response.status == 200 else None
    except (OSError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
        log.debug("worker at %s did not answer a scrape: %s", path, exc)
        return None


class _Merged(CollectorRegistry):
    """The families of several workers' expositions, samples labelled by worker."""

    def __init__(self, texts: list[tuple[str, str]]):
        super().__init__(auto_describe=False)
        self._texts = texts

    def collect(self):
        merged: dict[str, Metric] = {}
        for worker, text in self._texts:
            for family in text_string_to_metric_families(text):
                into = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type))
                for sample in family.samples:
                    into.samples.append(sample._replace(labels={**sample.labels, LABEL: worker}))
        yield from merged.values()
        yield GaugeMetricFamily(
            "streamsim_serving_workers_scraped", "Workers whose series this scrape holds", value=len(self._texts)
        )
