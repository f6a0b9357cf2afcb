"""Every command, in every state of the stack and with bad arguments, ends in one line or succeeds.

The contract (see :mod:`streamsim.runtime.cli`): a command either succeeds, or prints
one line ``streamsim <command>: <what went wrong>`` on stderr and exits non-zero
(2 for bad arguments or input, 1 otherwise), and it does so within seconds: a
backend that cannot be reached is found out before any RPC waits on it.

The first half checks the pieces in this process (the last-resort handler, the
backend check, the supervisor, publish's handling of bad files). The second half
(``slow``) runs each command as a real subprocess with no emulator host and no
credentials in its environment, in these states: no stack at all, a ``stack.json``
naming emulators on dead loopback ports, half a stack, a corrupt ``stack.json``,
and a table of bad arguments.

"One line" precisely: stderr, minus the lines of the logging format
(``2026-01-01 10:00:00,123 WARNING name: ...``), has exactly one line when the
exit status is not 0 (none is required on success), no ``Traceback`` anywhere,
and at most :data:`MAX_LOG_LINES` logging lines: a failing command must not spew.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import dataclasses
import gzip
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest

from streaming import cli as streaming_cli
from streaming import publish, runner
from streamsim.app.cli import main as streamsim_main
from streamsim.runtime import cli, outage
from streamsim.runtime.settings import Settings
from streamsim.sources.formats import read_records

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) \S+: ")
MAX_LOG_LINES = 3
#: A hang check, not a speed assertion: every case below ends in about 2-5 s.
TIMEOUT_SECONDS = 30


def message_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not LOG_LINE.match(line)]


def log_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if LOG_LINE.match(line)]


def dead_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the last resort in run_parsed ----------------------------------------------


def _run(exc: BaseException, *flags: str) -> int:
    parser = cli.Parser(prog="streamsim probe", parents=[cli.connection_parser()])

    def command(_args):
        raise exc

    parser.set_defaults(run=command, command_name="streamsim probe")
    return cli.run_parsed(parser.parse_args(list(flags)))


def _rpc_error():
    import grpc

    class Unavailable(grpc.RpcError):
        def code(self):
            return grpc.StatusCode.UNAVAILABLE

        def details(self):
            return "failed to connect to all addresses"

    return Unavailable()


def _default_credentials_error():
    from google.auth.exceptions import DefaultCredentialsError

    return DefaultCredentialsError("Your default credentials were not found. To set up ...\nsee https://...")


def _api_error():
    from google.api_core.exceptions import ServiceUnavailable

    return ServiceUnavailable("connection refused")


@pytest.mark.parametrize(
    "make, expected",
    [
        (_default_credentials_error, "no emulator host is set and no Google Cloud credentials were found"),
        (_rpc_error, "a backend call failed: UNAVAILABLE failed to connect to all addresses"),
        (_api_error, "a backend call failed: 503 connection refused"),
        (lambda: NotADirectoryError(20, "Not a directory", "README.md/stack.json"), "Not a directory: 'README.md/"),
        (lambda: EOFError("Compressed file ended before the end-of-stream marker was reached"), "corrupt or trunc"),
        (lambda: gzip.BadGzipFile("Not a gzipped file (b'ab')"), "corrupt or truncated (Not a gzipped file"),
        (lambda: zlib.error("Error -3 while decompressing data"), "corrupt or truncated (Error -3"),
        (lambda: "\udcff".encode(), "cannot be encoded as utf-8"),
        (lambda: ValueError("first line\nsecond line"), "streamsim probe: first line"),
        (lambda: TypeError("'NoneType' object is not subscriptable"), "unexpected TypeError: 'NoneType'"),
    ],
)
def test_an_unhandled_exception_is_one_line_and_exit_1(make, expected, capsys):
    try:
        exc = make()
    except Exception as raised:  # noqa: BLE001 - the lambdas that raise build their exception so
        exc = raised
    assert _run(exc) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(message_lines(err)) == 1 and err.startswith("streamsim probe: "), err
    assert expected in err


def test_verbose_shows_the_traceback_above_the_line(capsys):
    assert _run(KeyError("x"), "-v") == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().splitlines()[-1].startswith("streamsim probe: unexpected KeyError")


def test_interrupts_are_130_and_a_closed_pipe_is_quiet(capsys):
    assert _run(KeyboardInterrupt()) == 130
    assert capsys.readouterr().err == "interrupted\n"
    assert _run(BrokenPipeError(32, "Broken pipe")) == 1
    assert capsys.readouterr().err == ""


def test_argparse_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        streamsim_main(["publish", "f.csv", "--limit", "abc"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("streamsim publish: error: argument --limit: invalid int")


# --- backend_error --------------------------------------------------------------


def test_backend_error_names_the_dead_emulator_of_each_backend():
    bigtable, pubsub = f"127.0.0.1:{dead_port()}", f"127.0.0.1:{dead_port()}"
    settings = Settings(bigtable_host=bigtable, pubsub_host=pubsub)
    assert "Bigtable emulator at " + bigtable in cli.backend_error(settings)
    assert "Pub/Sub emulator at " + pubsub in cli.backend_error(settings, bigtable=False, pubsub=True)
    assert cli.backend_error(settings, bigtable=False) is None


def test_backend_error_without_emulators_needs_credentials(monkeypatch, tmp_path):
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    real = cli.cloud_credentials_problem
    real.cache_clear()
    try:
        problem = cli.backend_error(Settings(), pubsub=True)
        assert problem.startswith("no Bigtable emulator host is set and no Google Cloud credentials were found")
        assert "streamsim up" in problem and "STREAMSIM_BIGTABLE_HOST" in problem
        monkeypatch.setattr(cli, "cloud_credentials_problem", lambda: None)
        assert cli.backend_error(Settings(), pubsub=True) is None
    finally:
        real.cache_clear()


# --- the supervisor -------------------------------------------------------------


class _FailingChild:
    started = 0
    code = 1

    def __init__(self, command, env=None):
        type(self).started += 1
        self.pid = 4242

    def wait(self):
        return self.code

    def poll(self):
        return self.code


@pytest.fixture
def failing_child(monkeypatch):
    monkeypatch.setattr(runner.subprocess, "Popen", _FailingChild)
    monkeypatch.setattr(runner, "retry_delay", lambda failures: 0)
    monkeypatch.setattr(outage, "retry_delay", lambda failures: 0)
    _FailingChild.started, _FailingChild.code = 0, 1
    return _FailingChild


def test_the_supervisor_waits_out_an_outage_of_any_length_without_restarting_into_it(failing_child, caplog):
    # Twenty checks find the backend gone (today's supervisor gave up after five), then it is back.
    answers = iter(["the Bigtable emulator at 127.0.0.1:1 is not reachable"] * 20 + [None] * 2)
    assert runner.supervise(["--idle-exit", "1"], max_restarts=2, check=lambda: next(answers)) == 1
    # The first run, then one per answered check until the third crash: the outage counted none.
    assert failing_child.started == 3
    assert "not starting the pipeline: the Bigtable emulator" in caplog.text
    assert "pipeline start succeeded again after 20 failures" in caplog.text
    assert "died 3 times in a row while its backends answered; giving up" in caplog.text


def test_the_supervisor_stops_at_once_when_the_pipeline_refuses_its_configuration(failing_child, caplog):
    failing_child.code = 2
    assert runner.supervise([], check=lambda: None) == 2
    assert failing_child.started == 1 and "refused its configuration" in caplog.text


# --- publish: bad files, with a stand-in for Pub/Sub ----------------------------


class _FakePublisher:
    sent: list[bytes] = []

    def __init__(self, settings, *, topic=None):
        self.published = 0

    def publish(self, events, **attributes):
        for data in events:
            _FakePublisher.sent.append(data)
            self.published += 1
        return len(events)

    def flush(self):
        return self.published

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


@pytest.fixture
def fake_pubsub(monkeypatch, tmp_path):
    _FakePublisher.sent = []
    monkeypatch.setattr(publish, "EventPublisher", _FakePublisher)
    monkeypatch.setattr(streaming_cli, "backend_error", lambda settings, **_: None)
    monkeypatch.chdir(tmp_path)
    return _FakePublisher.sent


def _publish(*args) -> int:
    return streamsim_main(["publish", *args, "--state-dir", "state", "--no-progress"])


TAOBAO = "timestamp,user,item,behavior\n"


def test_publish_of_a_header_only_file_publishes_nothing_and_says_so(fake_pubsub, capsys):
    Path("header.csv").write_text(TAOBAO)
    assert _publish("header.csv") == 0
    out = capsys.readouterr().out
    assert "published 0 events" in out and "header.csv has a header and no data lines" in out


def test_publish_skips_a_huge_line_counts_it_and_publishes_the_rest(fake_pubsub, capsys):
    with open("huge.csv", "w") as f:
        f.write(TAOBAO + "1511539200,1,2,pv\n" + "9" * 5_000_000 + "\n1511539201,1,3,buy\n")
    assert _publish("huge.csv") == 0
    out = capsys.readouterr().out
    assert "published 2 events" in out and "rejected 1" in out
    assert "too_large: 1 (e.g. line 1: the line is longer than 8192 characters" in out
    assert len(fake_pubsub) == 2


def test_publish_with_a_limit_stops_before_an_endless_line(fake_pubsub):
    class Endless(io.RawIOBase):
        read_bytes = 0

        def readable(self):
            return True

        def readinto(self, buffer):
            head = b"" if self.read_bytes else b'{"user":"u","item":"i","type":"browse","ts":1}\n'
            chunk = (head + b"x" * len(buffer))[: len(buffer)]
            buffer[: len(chunk)] = chunk
            self.read_bytes += len(chunk)
            return len(chunk)

    source = Endless()
    summary = publish.publish_records(Settings(), read_records(source, "jsonl"), limit=2)
    assert (summary.published, dict(summary.rejected)) == (1, {"too_large": 1})
    assert source.read_bytes < 256 * 1024


def test_publish_of_a_truncated_gzip_publishes_what_it_read_then_one_line(fake_pubsub, capsys):
    whole = gzip.compress((TAOBAO + "".join(f"{1511539200 + n},{n},2,pv\n" for n in range(5000))).encode())
    Path("truncated.csv.gz").write_bytes(whole[: len(whole) // 2])
    assert _publish("truncated.csv.gz") == 2
    captured = capsys.readouterr()
    assert len(fake_pubsub) > 100 and f"published {len(fake_pubsub)} events" in captured.out
    assert message_lines(captured.err) == [captured.err.strip()]
    assert captured.err.startswith("streamsim publish: truncated.csv.gz is corrupt or truncated after line")


@pytest.mark.parametrize(
    "args, expected",
    [
        (["empty.csv"], "empty.csv is empty"),
        (["empty.csv", "--format", "taobao"], "empty.csv is empty"),
        (["ok.csv", "--limit", "-5"], "limit must be 0 or more"),
        (["ok.csv", "--rate", "nan"], "rate must be a positive number"),
        (["ok.csv", "--rate", "inf"], "rate must be a positive number"),
        (["ok.csv", "--rate", "-1"], "rate must be a positive number"),
        (["wrong.csv"], "wrong.csv: cannot tell the format from the first line 'a,b,c'; pass --format"),
        (["wrong.csv", "--format", "taobao"], "wrong.csv is not taobao: its first line 'a,b,c' is neither"),
        (["fake.gz"], "fake.gz is not a readable gzip file"),
    ],
)
def test_publish_refuses_bad_input_with_one_line_and_status_2(fake_pubsub, capsys, args, expected):
    Path("empty.csv").write_text("")
    Path("ok.csv").write_text(TAOBAO + "1511539200,1,2,pv\n")
    Path("wrong.csv").write_text("a,b,c\n1,2,3\n")
    Path("fake.gz").write_bytes(b"\x1f\x8bnot deflate at all")
    assert _publish(*args) == 2
    err = capsys.readouterr().err
    assert message_lines(err) == [err.strip()] and expected in err, err
    assert "pass --format" not in err or "--format" not in args
    assert fake_pubsub == []


def test_inspect_refuses_ids_the_contract_refuses(capsys):
    for kind, bad, expected in [
        ("user", "\udced\udca0\udc80", "lone surrogate"),
        ("item", "\udcff", "lone surrogate"),
        ("user", "", "must be a non-empty string"),
        ("item", "x" * 200, "200 characters long"),
        ("similar", "a\x00b", "control characters"),
    ]:
        assert streamsim_main(["inspect", kind, bad, "--bigtable-host", "127.0.0.1:1"]) == 2
        err = capsys.readouterr().err
        assert message_lines(err) == [err.strip()] and expected in err, err


# --- every command as a subprocess, in every state ------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    state: str
    args: tuple
    #: The exit status, or the statuses allowed (where another engineer's fix decides).
    rc: int | frozenset = 1
    contains: str = ""
    env: tuple = ()
    timeout: float = TIMEOUT_SECONDS
    #: An address-space limit for the child, where a regression would eat memory.
    memory_limit: int | None = None


# States: none = no stack.json; no-dir = a state directory below a file; dead = both emulators recorded on dead ports;
# half-bigtable-up / half-pubsub-up = one recorded emulator accepts connections, the
# other is dead; corrupt / wrong-shape = stack.json that is not a stack record.
BACKEND_COMMANDS = [
    ("publish", "ok.csv"),
    ("stream", "--max-seconds", "5"),
    ("refresh",),
    ("rollback",),
    ("inspect", "user", "u1"),
    ("inspect", "item", "i1"),
    ("inspect", "similar", "i1"),
    ("forget", "u1"),
    ("forget", "--status", "u1"),
    ("backfill-norms",),
    ("report",),
]
ANY_FAILURE = frozenset({1, 2})
GIB = 1 << 30
NO_CREDENTIALS = "no Google Cloud credentials were found"
NOT_REACHABLE = "is not reachable"

CASES = [
    # (a) no stack at all: the clients would go to Google Cloud, with no credentials.
    Case("none", ("status",), 1, "no Bigtable emulator is set up"),
    Case("none", ("status", "--json"), 1),
    Case("none", ("env",), 0),
    *[Case("none", args, 1, NO_CREDENTIALS) for args in BACKEND_COMMANDS],
    Case("none", ("serve", "--port", "{free_port}"), 1, "credentials"),
    Case("none", ("evaluate", "--train", "train.csv", "--test", "test.csv", "--out", "report", "--json"), 0),
    # (b) stack.json left behind, both emulators dead.
    Case("dead", ("status",), 1, NOT_REACHABLE),
    Case("dead", ("env",), 0),
    *[Case("dead", args, 1, NOT_REACHABLE) for args in BACKEND_COMMANDS],
    Case(
        "dead",
        ("serve", "--port", "{free_port}"),
        1,
        NOT_REACHABLE,
        timeout=10,
    ),
    # Half a stack: each command checks the backend it needs, first.
    Case("half-bigtable-up", ("publish", "ok.csv"), 1, "Pub/Sub emulator at"),
    Case("half-bigtable-up", ("stream", "--max-seconds", "5"), 1, "Pub/Sub emulator at"),
    Case("half-pubsub-up", ("stream", "--max-seconds", "5"), 1, "Bigtable emulator at"),
    Case("half-pubsub-up", ("inspect", "user", "u1"), 1, "Bigtable emulator at"),
    Case("half-pubsub-up", ("refresh",), 1, "Bigtable emulator at"),
    # A corrupt or wrong-shape stack.json: one line, whoever words it.
    *[
        Case(state, args, ANY_FAILURE)
        for state in ("corrupt", "wrong-shape")
        for args in (("status",), ("env",), ("publish", "ok.csv"), ("inspect", "user", "u1"), ("rollback",))
    ],
    # (c) bad arguments and bad input, with no stack (section 6 of the reliability probe, and more).
    Case("none", ("publish", "nope.csv"), 2, "No such file or directory: 'nope.csv'"),
    Case("none", ("publish", "adir"), 2, "Is a directory"),
    Case("none", ("publish", "empty.csv"), 2, "empty.csv is empty"),
    Case("none", ("publish", "empty.csv", "--format", "taobao"), 2, "empty.csv is empty"),
    Case("none", ("publish", "header.csv"), 1, NO_CREDENTIALS),  # readable: then the backend is needed
    Case("none", ("publish", "binary.bin"), 2, "cannot tell the format"),
    Case("none", ("publish", "binary.bin", "--format", "taobao"), 2, "is not taobao"),
    Case("none", ("publish", "wrong.csv"), 2, "pass --format"),
    Case("none", ("publish", "wrong.csv", "--format", "taobao"), 2, "neither a taobao header nor a taobao row"),
    Case("none", ("publish", "fake.gz"), 2, "fake.gz is not a readable gzip file"),
    Case("none", ("publish", "/dev/zero", "--limit", "10"), 2, "longer than 8192 characters", memory_limit=GIB),
    Case("none", ("publish", "/dev/zero", "--limit", "10", "--format", "jsonl"), 2, "longer than", memory_limit=GIB),
    Case("none", ("publish", "ok.csv", "--limit", "-5"), 2, "limit"),
    Case("none", ("publish", "ok.csv", "--limit", "abc"), 2, "invalid int value"),
    *[Case("none", ("publish", "ok.csv", "--rate", r), 2, "rate") for r in ("nan", "inf", "0", "-1")],
    Case("none", ("publish",), 2, "required"),
    Case("none", ("catalog", "nope.csv"), 2, "No such file or directory: 'nope.csv'"),
    Case("none", ("catalog", "adir"), 2, "Is a directory"),
    Case("none", ("catalog", "empty.csv"), 2, "the catalogue file is empty"),
    Case("none", ("catalog", "ok.csv"), 2, "needs an item and a category column"),
    Case("none", ("catalog", "wrong.csv"), 1, NO_CREDENTIALS),  # readable: then the backend is needed
    Case("dead", ("catalog", "wrong.csv"), 1, NOT_REACHABLE),
    Case("none", ("stream", "--max-seconds", "nan"), 2, "--max-seconds"),
    Case("none", ("stream", "--idle-exit", "-1"), 2, "--idle-exit"),
    Case("none", ("stream", "--drain-exit", "0"), 2, "--drain-exit"),
    Case("none", ("stream", "--max-restarts", "-1"), 2, "--max-restarts"),
    # refresh and serve check their own parameters (tests/batch, tests/serving); a few here
    # show those checks come before any backend is needed.
    Case("none", ("refresh", "--threshold", "nan"), 2, "threshold"),
    Case("none", ("refresh", "--every", "abc"), 2, "--every"),
    Case("none", ("refresh", "--dataproc", "c"), 2, "--region"),
    Case("none", ("refresh", "--min-similarity", "2"), ANY_FAILURE),  # F7: rejected (2) once batch checks it
    Case("none", ("serve", "--port", "99999"), 2, "not a TCP port"),
    Case("none", ("serve", "--weights", "garbage"), 2),
    Case("none", ("serve",), 2, env=(("STREAMSIM_SERVE_PORT", "abc"),)),
    Case("none", ("serve",), 2, env=(("STREAMSIM_WEIGHTS", "browse=x"),)),
    Case("none", ("serve", "--host", "no.such.host.invalid", "--port", "{free_port}"), ANY_FAILURE),
    Case("none", ("serve", "--host", "999.1.1.1", "--port", "{free_port}"), ANY_FAILURE),
    Case("none", ("serve", "--port", "{busy_port}"), ANY_FAILURE),
    Case("none", ("inspect", "user", b"\xed\xa0\x80"), 2, "lone surrogate"),
    Case("none", ("inspect", "item", b"\xff"), 2, "lone surrogate"),
    Case("none", ("inspect", "user", ""), 2, "non-empty"),
    Case("none", ("inspect", "item", "x" * 200), 2, "200 characters"),
    Case("none", ("inspect", "similar", "x", "--n", "0"), 2, "--n"),
    Case("none", ("inspect", "nobody", "x"), 2, "invalid choice"),
    Case("none", ("forget", ""), 2, "non-empty"),
    Case("none", ("forget",), 2, "required"),
    Case("none", ("serve", "--config", "nope-a.json", "--config", "nope-b.json"), 2, "no such file"),
    Case("none", ("serve", "--split", "50", "--config", "one.json"), 2, "--split needs two --config files"),
    Case("none", ("serve", "--rules", "bad-rules.json"), 2, "rules file bad-rules.json: boost[0].factor: must be"),
    Case("none", ("serve", "--rules", "nope-rules.json"), 2, "rules file nope-rules.json: No such file"),
    Case("none", ("serve",), 2, "pin[0].route", env=(("STREAMSIM_SERVE_RULES", "bad-route.json"),)),
    Case("none", ("evaluate", "--train", "nope.csv", "--test", "test.csv"), 2, "nope.csv"),
    Case("none", ("evaluate", "--train", "empty.csv", "--test", "test.csv"), 2, "empty.csv is empty"),
    Case("none", ("evaluate", "--train", "fake.gz", "--test", "test.csv"), 2, "fake.gz"),
    Case("none", ("evaluate", "--train", "train.csv", "--test", "nope.csv"), 2, "nope.csv"),
    Case("none", ("evaluate", "--train", "train.csv", "--test", "binary.bin"), 2),
    Case("none", ("evaluate", "--train", "train.csv", "--test", "test.csv", "--top-k", "0"), 2, "--top-k"),
    Case("none", ("evaluate", "--sessions", "train.csv"), 2, "--test-pairs"),
    Case("none", ("evaluate", "--train", "train.csv", "--split-by-time", "2"), 2, "--split-by-time"),
    Case("none", ("tune", "--train", "train.csv", "--out", "tuned.json"), 2, "too few to tell the candidates apart"),
    Case("none", ("tune", "--train", "nope.csv", "--out", "tuned.json"), 2, "nope.csv"),
    Case("none", ("tune", "--train", "train.csv", "--out", "adir"), 2, "is a directory"),
    Case("none", ("tune", "--sessions", "test.csv", "--out", "tuned.json"), 2, "no validation pairs"),
    Case("none", ("tune", "--out", "tuned.json"), 2, "exactly one of"),
    Case("none", ("status", "--state-dir", "a-file"), ANY_FAILURE, "not a directory"),
    Case("none", ("status", "--state-dir", "a-file/below"), ANY_FAILURE, "a-file"),
    Case("none", ("env",), ANY_FAILURE, "not a directory", env=(("STREAMSIM_STATE_DIR", "a-file"),)),
    Case("none", ("frobnicate",), 2, "invalid choice"),
    Case("none", (), 2, "required"),
    # demo checks its arguments before it starts anything (it legitimately starts a stack otherwise);
    # its state directory is unusable, so that a demo that did not check could not start one either.
    Case("no-dir", ("demo", "--port", "{free_port}"), 1, "not a directory"),
    Case("no-dir", ("demo", "--limit", "-5"), 2, "--limit"),
    Case("no-dir", ("demo", "--port", "99999"), 2, "not a TCP port"),
    Case("no-dir", ("demo", "--port", "{busy_port}"), 2, "cannot be used"),
    Case("no-dir", ("demo", "--threshold", "2"), 2, "threshold"),
    Case("no-dir", ("demo", "--refresh-every", "0"), 2, "--refresh-every"),
    Case("no-dir", ("demo", "--format", "bogus"), 2, "invalid choice"),
    Case("no-dir", ("demo", "--data", "nope.csv"), 2, "nope.csv"),
    Case("no-dir", ("demo", "--data", "empty.csv"), 2, "empty.csv is empty"),
    Case("no-dir", ("demo", "--data", "wrong.csv", "--format", "taobao"), 2, "is not taobao"),
]


def _case_id(case: Case) -> str:
    shown = " ".join(a.decode("latin-1") if isinstance(a, bytes) else a for a in case.args)[:60]
    return f"{case.state}: {shown or '(no command)'}" + "".join(f" {k}={v}" for k, v in case.env)


def _accepting_listener() -> tuple[socket.socket, int]:
    """A port that accepts TCP connections (and closes them): an 'alive' emulator to a probe."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)

    def accept():
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            connection.close()

    threading.Thread(target=accept, daemon=True).start()
    return server, server.getsockname()[1]


def _stack_json(bigtable_port: int, pubsub_port: int) -> str:
    # pids that are not running (and a start time no process has): nothing to manage.
    emulator = {"pid": 2**22 - 7, "started": 1, "log": "/dev/null"}
    return json.dumps(
        {
            "project": "cli-errors",
            "instance": "cli-errors",
            "prefix": "cli-",
            "bigtable": {**emulator, "host": f"127.0.0.1:{bigtable_port}"},
            "pubsub": {**emulator, "host": f"127.0.0.1:{pubsub_port}"},
        }
    )


def _child_env(home: Path) -> dict:
    drop = {"BIGTABLE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("STREAMSIM_")}
    env.pop("XDG_STATE_HOME", None)
    env["HOME"] = str(home)  # no ~/.config/gcloud credentials to find
    return env


def _write_inputs(work: Path) -> None:
    (work / "ok.csv").write_text(TAOBAO + "1511539200,1,2,pv\n")
    (work / "header.csv").write_text(TAOBAO)
    (work / "empty.csv").write_text("")
    (work / "wrong.csv").write_text("a,b,c\n1,2,3\n")
    (work / "binary.bin").write_bytes(bytes((n * 7919 + 13) % 251 for n in range(4096)))
    (work / "fake.gz").write_bytes(b"\x1f\x8bgarbage garbage garbage")
    (work / "adir").mkdir()
    (work / "a-file").write_text("not a directory\n")
    rows = [("1", "10", "buy"), ("1", "11", "buy"), ("2", "10", "cart"), ("2", "11", "cart"), ("3", "10", "fav")]
    (work / "train.csv").write_text(
        TAOBAO + "".join(f"{1511539200 + n},{u},{i},{b}\n" for n, (u, i, b) in enumerate(rows))
    )
    (work / "test.csv").write_text("user,item\n3,11\n")
    (work / "bad-rules.json").write_text('{"boost": [{"category": "shoes", "factor": 0}]}')
    (work / "bad-route.json").write_text('{"pin": [{"route": "home", "item": "x", "position": 1}]}')


#: ``python -m streamsim`` under an address-space limit (preexec_fn is unsafe with threads).
_LIMITED = (
    "import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit})); "
    "sys.argv[0] = 'streamsim'; runpy.run_module('streamsim', run_name='__main__', alter_sys=True)"
)

Result = collections.namedtuple("Result", "returncode stdout stderr seconds timed_out left_behind")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Every case run once, four at a time (each is mostly interpreter start-up)."""
    root = tmp_path_factory.mktemp("cli-errors")
    work, home = root / "work", root / "home"
    work.mkdir()
    home.mkdir()
    _write_inputs(work)
    listeners = []
    state_dirs = {}
    state_dirs["no-dir"] = work / "a-file" / "below"
    for state in ("none", "dead", "half-bigtable-up", "half-pubsub-up", "corrupt", "wrong-shape"):
        state_dir = root / f"state-{state}"
        state_dirs[state] = state_dir
        if state == "none":
            continue  # not even the directory
        state_dir.mkdir()
        if state in ("dead", "half-bigtable-up", "half-pubsub-up"):
            ports = [dead_port(), dead_port()]
            if state.startswith("half-"):
                listener, port = _accepting_listener()
                listeners.append(listener)
                ports[0 if state == "half-bigtable-up" else 1] = port
            text = _stack_json(*ports)
        else:
            text = "{not json" if state == "corrupt" else '{"bigtable": "127.0.0.1:1", "pubsub": [1, 2]}'
        (state_dir / "stack.json").write_text(text)
    busy, busy_port = _accepting_listener()
    listeners.append(busy)
    base_env = _child_env(home)

    def run(case: Case) -> Result:
        values = {"free_port": str(dead_port()), "busy_port": str(busy_port)}
        args = [a.format(**values) if isinstance(a, str) else a for a in case.args]
        env = {**base_env, "STREAMSIM_STATE_DIR": str(state_dirs[case.state]), **dict(case.env)}
        started = time.monotonic()
        # Its own process group: a command that hangs is killed with every process it started
        # (`stream` runs its pipeline as a child).
        command = [sys.executable, "-m", "streamsim", *args]
        if case.memory_limit:
            command = [sys.executable, "-c", _LIMITED.format(limit=case.memory_limit), *args]
        process = subprocess.Popen(
            command,
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = process.communicate(timeout=case.timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            out, err = process.communicate()
            timed_out = True
        seconds = time.monotonic() - started
        left_behind = False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 0)  # raises if no process of its group is left
            left_behind = not timed_out
            os.killpg(process.pid, signal.SIGKILL)
        returncode = None if timed_out else process.returncode
        decoded = out.decode(errors="replace"), err.decode(errors="replace")
        return Result(returncode, *decoded, seconds, timed_out, left_behind)

    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            done = dict(zip(CASES, pool.map(run, CASES)))
        if os.environ.get("CLI_ERRORS_DURATIONS"):
            for case, result in sorted(done.items(), key=lambda kv: -kv[1].seconds):
                print(f"{result.seconds:5.1f}s rc={result.returncode} {_case_id(case)}", file=sys.stderr)
        yield done
    finally:
        for listener in listeners:
            listener.close()
        # No case may start a stack (demo checks its arguments first); if one did, stop exactly it.
        if (state_dirs["none"] / "stack.json").exists():
            from streamsim.app import localstack

            localstack.down(Settings(state_dir=state_dirs["none"]))
            pytest.fail("a command started a stack")


@pytest.mark.slow
@pytest.mark.parametrize(
    "case",
    [pytest.param(c, id=_case_id(c)) for c in CASES],
)
def test_each_command_ends_in_one_line_or_succeeds(results, case):
    result = results[case]
    shown = (
        f"rc={result.returncode} in {result.seconds:.1f}s\n"
        f"stdout:\n{result.stdout[-2000:]}\nstderr:\n{result.stderr[-3000:]}"
    )
    assert not result.timed_out, f"still running after {case.timeout:g}s (a hang)\n{shown}"
    assert not result.left_behind, f"processes of its group were still running after it exited\n{shown}"
    assert "Traceback" not in result.stderr, shown
    expected = case.rc if isinstance(case.rc, frozenset) else {case.rc}
    assert result.returncode in expected, shown
    lines = message_lines(result.stderr)
    if result.returncode != 0:
        assert len(lines) == 1, shown
        assert lines[0].startswith("streamsim"), shown
        assert case.contains in lines[0], shown
    assert len(log_lines(result.stderr)) <= MAX_LOG_LINES, shown
    if case.args[:2] == ("status", "--json"):
        assert {"bigtable", "pubsub", "missing"} <= json.loads(result.stdout).keys()


def test_the_case_table_covers_every_command():
    from streamsim.app.cli import build_parser

    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    covered = {case.args[0] for case in CASES if case.args}
    # up and down start and stop processes: tests/app/test_localstack.py runs them.
    assert set(subparsers.choices) - covered == {"up", "down"}
