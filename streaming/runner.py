"""Running the fold: one pipeline process, and a supervisor that restarts it.

:func:`run_pipeline` runs the pipeline in this process. On the local runner
it stops by itself when asked (``idle_exit``: nothing pulled for that long
and everything pulled written; ``drain_exit``: for that long nothing pulled
was published that long ago, i.e. the backlog is drained even if a live
stream still trickles in, which a run on a schedule leaves to the next run;
``max_seconds``) or on SIGTERM/SIGINT: it
stops pulling, waits until every pulled message is folded or dead-lettered
(the local runner acked them at pull time), and exits 0. A failed pipeline
exits 1. On Dataflow it submits the job and returns (or waits with
``--wait``).

:func:`supervise` runs ``python -m streaming --no-supervise ...`` as a child
and restarts it when it dies, on the outage schedule of
:mod:`streamsim.runtime.outage` (2, 4, ... 60 s), for as long as it takes: while
the backends are unreachable it starts nothing and waits, however long they are
away, and resumes when they are back (the subscription kept what arrived
meanwhile). It stops only when the child refuses its configuration (exit 2),
or after ``max_restarts`` crashes in a row while the backends answer, if given.
SIGTERM/SIGINT are forwarded so the child drains before the supervisor exits.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from streamsim.runtime.cli import USAGE
from streamsim.runtime.clients import export_emulator_env
from streamsim.runtime.outage import Outage, retry_delay
from streamsim.runtime.settings import Settings

log = logging.getLogger(__name__)

#: How long a stop may wait for pulled messages to be written.
DRAIN_TIMEOUT_SECONDS = 60
_POLL_SECONDS = 0.1
#: A pipeline that ran this long before dying is not crash-looping.
HEALTHY_RUN_SECONDS = 300


def pipeline_options(beam_args: list[str]):
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    options = PipelineOptions(beam_args)
    standard = options.view_as(StandardOptions)
    standard.streaming = True  # Pub/Sub is unbounded: force it, whatever the flags say
    if not standard.runner or standard.runner in ("DirectRunner", "SwitchingDirectRunner"):
        # DirectRunner tries Prism first, whose download fails offline.
        standard.runner = "BundleBasedDirectRunner"
    return options


def is_local(options) -> bool:
    from apache_beam.options.pipeline_options import StandardOptions

    return options.view_as(StandardOptions).runner == "BundleBasedDirectRunner"


def run_pipeline(
    settings: Settings,
    beam_args: list[str],
    *,
    idle_exit: float | None = None,
    drain_exit: float | None = None,
    max_seconds: float | None = None,
    wait: bool = False,
) -> int:
    import apache_beam as beam

    from schemas import Weights
    from streaming import direct_pubsub, pipeline

    export_emulator_env(settings)
    options = pipeline_options(beam_args)
    fold_options = options.view_as(pipeline.FoldOptions)
    weights = Weights.parse(fold_options.weights) if fold_options.weights else Weights.from_env()
    local = is_local(options)
    if local:
        direct_pubsub.install()
        direct_pubsub.GATE.backlog_age = drain_exit
    p = beam.Pipeline(options=options)
    pipeline.build(p, settings, weights, local=local, shards=fold_options.fold_shards)
    result = p.run()
    if not local:
        log.info("submitted %s", getattr(result, "job_id", lambda: "")())
        if wait:
            result.wait_until_finish()
        return 0

    gate = direct_pubsub.GATE
    failure: list[BaseException] = []

    def watch():
        try:
            result.wait_until_finish()
        except BaseException as exc:  # noqa: BLE001 - reported by the main loop
            failure.append(exc)

    threading.Thread(target=watch, name="pipeline-watch", daemon=True).start()
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    started = time.monotonic()
    reason = None
    try:
        while reason is None:
            time.sleep(_POLL_SECONDS)
            if failure:
                log.error("pipeline failed: %s", failure[0])
                return 1
            if stop.is_set():
                reason = "signal"
            elif max_seconds is not None and time.monotonic() - started >= max_seconds:
                reason = "max-seconds"
            elif idle_exit is not None and gate.idle_seconds() >= idle_exit and gate.in_flight == 0:
                reason = "idle"
            elif drain_exit is not None and gate.caught_up_seconds() >= drain_exit:
                reason = "drained"
        log.info("stopping (%s): draining %d pulled messages", reason, gate.in_flight)
        gate.close()
        deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
        while gate.in_flight > 0 and not failure and time.monotonic() < deadline:
            time.sleep(_POLL_SECONDS)
        if gate.in_flight > 0:
            log.error("%d pulled messages were not written before the stop", gate.in_flight)
            return 1
        # The local runner's streaming metrics only showed a first bundle's
        # counters; the gate's own tallies are exact for this process.
        log.info("stopped: %d messages pulled and written; %s", gate.settled, dict(gate.counts))
        return 1 if failure else 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        try:
            result.cancel()
        except Exception:  # noqa: BLE001 - best effort: the process exits next
            log.debug("cancel failed", exc_info=True)


def supervise(
    child_argv: list[str],
    *,
    max_restarts: int | None = None,
    env: dict | None = None,
    check: Callable[[], str | None] | None = None,
    outage: Outage | None = None,
) -> int:
    """Run ``python -m streaming --no-supervise <child_argv>`` until it exits cleanly.

    ``check`` (e.g. :func:`streamsim.runtime.cli.backend_error`) is asked before
    each restart: while it names a problem (the emulators are down) no pipeline
    is started, since it could only crash again, and the wait does not count
    against ``max_restarts`` (None: no limit), which bounds crashes in a row of a
    pipeline whose backends answer. ``outage`` keeps those waits (the command serves it as metrics).
    """
    stopping = threading.Event()
    child: list[subprocess.Popen] = []

    def forward(signum, _frame):
        stopping.set()
        if child and child[0].poll() is None:
            child[0].send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    outage, restarts, code = outage or Outage("pipeline start"), 0, 0
    try:
        while True:
            problem = check() if check is not None and restarts else None
            if problem:
                if stopping.wait(outage.failed(f"not starting the pipeline: {problem}")):
                    return code
                continue
            outage.recovered()
            command = [sys.executable, "-m", "streaming", "--no-supervise", *child_argv]
            child[:] = [subprocess.Popen(command, env={**os.environ, **(env or {})})]
            log.info("pipeline started (pid %d)", child[0].pid)
            started = time.monotonic()
            code = child[0].wait()
            if code == 0 or stopping.is_set():
                return code
            if code == USAGE:
                log.error("the pipeline refused its configuration (exit %d): a restart cannot fix that", code)
                return code
            # A child that ran a while before dying starts a fresh count.
            restarts = 1 if time.monotonic() - started > HEALTHY_RUN_SECONDS else restarts + 1
            if max_restarts is not None and restarts > max_restarts:
                log.error("pipeline died %d times in a row while its backends answered; giving up", restarts)
                return code
            delay = retry_delay(restarts)
            log.warning("pipeline exited with %s (%d in a row); restarting in %.0f s", code, restarts, delay)
            if stopping.wait(delay):
                return code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
