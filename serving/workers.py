"""``streamsim serve --workers N``: N serving processes on one port, one parent that drains them.

Each worker is a whole server of its own (:func:`serving.server.serve`): its own event
loop, Bigtable channel, neighbour cache, generation watcher and catalogue follower, so
nothing is shared and no lock is taken on the request path. They listen on the same
address with ``SO_REUSEPORT``, and the kernel spreads new connections over them.

The parent binds the address first (with ``SO_REUSEPORT`` too, never listening, so it
receives no connections): an address it cannot have is one error before any worker
starts, port 0 becomes one concrete port for all, and no process without
``SO_REUSEPORT`` can take the port while the workers run. Workers are started with
``spawn`` (gRPC does not survive a fork). SIGTERM or SIGINT to the parent is passed to
every worker, and each lets its in-flight requests finish, as a single server does.
A worker that dies on its own is started again, and listens only once it is ready
(its generation and whole catalogue loaded): until then the others take every connection.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable

from serving.config import ServingConfig
from serving.peers import Peers
from serving.server import CannotListen, listen_problem, run

log = logging.getLogger(__name__)

#: Seconds a worker has to bind before the parent gives up on it (imports included).
START_SECONDS = 60.0
#: Pause before a worker that died on its own is started again.
RESTART_PAUSE_SECONDS = 1.0


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _reserve(config: ServingConfig) -> socket.socket:
    """Bind (not listen) the address with SO_REUSEPORT; CannotListen if it cannot be had."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(config.host, config.port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise CannotListen(listen_problem(config, exc)) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise CannotListen(listen_problem(config, exc)) from None
    return sock


def _worker(config: ServingConfig, ready, verbose_level: int, peers: Peers, ready_first: bool) -> None:
    logging.basicConfig(level=verbose_level, format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    try:
        run(
            config,
            on_listening=lambda: ready.send(("listening", os.getpid())),
            reuse_port=True,
            peers=peers,
            ready_first=ready_first,
        )
    except CannotListen as exc:
        ready.send(("error", str(exc)))
        raise SystemExit(1) from None


def run_workers(config: ServingConfig, workers: int, *, on_listening: Callable[[], None] | None = None) -> None:
    """Serve with ``workers`` processes until SIGINT/SIGTERM; :class:`CannotListen` as :func:`run`."""
    reserved = _reserve(config)
    config = _with_port(config, reserved.getsockname()[1])
    context = multiprocessing.get_context("spawn")
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True
        for process in processes:
            if process.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)

    # Each worker's own socket, for /metrics to cover them all (serving.peers); 0700, ours alone.
    peers_directory = tempfile.mkdtemp(prefix="streamsim-serve-")

    def start(index: int, ready_first: bool = False):
        receive, send = context.Pipe(duplex=False)
        process = context.Process(
            target=_worker,
            args=(config, send, logging.getLogger().level, Peers(peers_directory, index), ready_first),
            name="streamsim-serve-worker",
        )
        process.start()
        send.close()
        return process, receive

    processes: list = []
    previous = {number: signal.signal(number, stop) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        pipes = []
        for index in range(workers):
            process, receive = start(index)
            processes.append(process)
            pipes.append(receive)
        _await_listening(processes, pipes, lambda: stopping)
        if on_listening is not None and not stopping:
            on_listening()
        while not stopping:
            for index, process in enumerate(processes):
                if not process.is_alive() and not stopping:
                    log.warning(
                        "worker %d (pid %d) exited with %s: starting another", index, process.pid, process.exitcode
                    )
                    time.sleep(RESTART_PAUSE_SECONDS)
                    pipes[index].close()
                    # Beside workers that serve: it listens once ready (serving.server.serve).
                    processes[index], pipes[index] = start(index, ready_first=True)
            multiprocessing.connection.wait([p.sentinel for p in processes], timeout=1.0)
    except BaseException:
        stop()
        raise
    finally:
        for process in processes:
            process.join()
        for number, handler in previous.items():
            signal.signal(number, handler)
        reserved.close()
        shutil.rmtree(peers_directory, ignore_errors=True)


def _await_listening(processes, pipes, stopping: Callable[[], bool]) -> None:
    """Until every worker listens (or a signal stops them); CannotListen if one cannot."""
    deadline = time.monotonic() + START_SECONDS
    waiting = dict(zip(pipes, processes))
    while waiting and not stopping():
        left = deadline - time.monotonic()
        if left <= 0:
            raise CannotListen("the serving workers did not start listening in time")
        for pipe in multiprocessing.connection.wait(list(waiting), timeout=min(left, 1.0)):
            try:
                kind, detail = pipe.recv()
            except EOFError:
                if stopping():
                    return
                raise CannotListen("a serving worker exited before it listened (see its log above)") from None
            if kind == "error":
                raise CannotListen(detail)
            del waiting[pipe]


def _with_port(config: ServingConfig, port: int) -> ServingConfig:
    import dataclasses

    return dataclasses.replace(config, port=port)
