"""``streamsim demo``: the whole loop on one machine, on real or synthetic data.

Emulators up -> streaming fold running -> clickstream replayed through Pub/Sub
-> the continuous refresh started once it is folded (its first pass is full) ->
the API serving -> the held-back tail of the stream replayed -> the refresh pass
that takes it in (incremental or full, as its cost model chooses) -> a report;
the continuous refresh keeps passing until Ctrl-C. Every process it starts is its
own process group and is stopped on the way out (the refresh after the pass in
flight); the emulators too, if the demo started them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from urllib.parse import quote

from schemas import EventError, layout, parse_event
from schemas.rows import decode_item
from streamsim.app import demo_ab, localstack
from streamsim.runtime.bigtable import filters, open_tables
from streamsim.runtime.clients import subscriber_client
from streamsim.runtime.processes import Background
from streamsim.runtime.settings import Settings

log = logging.getLogger(__name__)

#: Share of the stream held back and replayed after the first refresh, so the
#: incremental path has new events to show.
HOLD_BACK = 0.1
#: Give up waiting for the fold after this long without progress.
FOLD_STALL_SECONDS = 60
#: Give up waiting for a refresh pass after this long.
PASS_TIMEOUT_SECONDS = 1800
#: How long the continuous refresh may take to finish its pass in flight when stopped.
REFRESH_STOP_SECONDS = 300


@dataclasses.dataclass
class DemoOptions:
    data: str | None = None
    format: str = "auto"
    limit: int | None = None
    synthetic_events: int = 50_000
    port: int = 8080
    #: Least seconds between the starts of two passes of the continuous refresh.
    refresh_every: float = 30.0
    threshold: float = 0.1
    exit_after_report: bool = False
    #: Serve two arms and attribute the held-back tail to their answers (``streamsim.app.demo_ab``).
    ab: bool = False


class Demo:
    def __init__(self, settings: Settings, options: DemoOptions, say=print):
        self.settings = settings
        self.options = options
        self.say = say
        self.workdir = settings.state_dir / "demo"
        self.processes: dict[str, Background] = {}
        self.started_stack = False

    # --- the steps ------------------------------------------------------------
    def run(self) -> dict:
        self.say("1/6 starting the emulators")
        self.started_stack = not localstack.status(self.settings)["bigtable"]["reachable"]
        state = localstack.up(self.settings)
        self.settings = dataclasses.replace(
            self.settings, bigtable_host=state["bigtable"]["host"], pubsub_host=state["pubsub"]["host"]
        )
        self.say("2/6 starting the streaming fold")
        self._start("stream", ["stream"])
        messages, source = self._messages()
        cut = int(len(messages) * (1 - HOLD_BACK))
        self.say(f"3/6 replaying {cut:,} of {len(messages):,} messages from {source}")
        expected = self._publish(messages[:cut], "publish")
        self._wait_folded(expected)
        self.say("4/6 continuous refresh started; its first pass is full")
        self._start("refresh", self._refresh_args())
        first = self._taken_in()
        self.say(f"5/6 serving on http://127.0.0.1:{self.options.port}")
        arms = demo_ab.serve_flags(self.workdir / "arms") if self.options.ab else []
        self._start("serve", ["serve", "--port", str(self.options.port), *arms])
        self._wait_ready()
        examples = self._examples(messages[:cut])
        before = {u: self._get(f"/recommendations?user={u}&n=5") for u in examples["fresh_users"]}
        tail, tagged = messages[cut:], None
        if self.options.ab:
            tail, tagged = demo_ab.tag_tail(tail, self._get)
            self.say(f"  A/B: {tagged:,} events of the tail follow an answer that showed their item")
        self.say(f"6/6 replaying the last {len(tail):,} messages; the next refresh pass takes them in")
        expected += self._publish(tail, "publish tail")
        self._wait_folded(expected)
        second = self._taken_in()
        changed = self._changed_recommendation(before)
        report = self._report(first, second, examples, changed)
        if tagged is not None:
            report["ab"] = self._ab(tagged)
        return report

    def _ab(self, tagged: int) -> dict:
        """``streamsim report``'s table for this server (answers from its /metrics)."""
        from streaming.state import scan_attributed
        from streamsim.app.report_command import answers_served, build

        with urllib.request.urlopen(self._url("/metrics"), timeout=10) as response:
            served = answers_served(response.read().decode("utf-8"))
        return {"tagged": tagged, "rows": build(served, scan_attributed(self.settings))}

    def loop(self) -> None:
        """Report each pass of the continuous refresh until interrupted."""
        seen = len(self._passes())
        while True:
            time.sleep(1.0)
            if not self.processes["refresh"].alive():
                raise RuntimeError(f"the continuous refresh exited; see {self.workdir / 'refresh.log'}")
            passes = self._passes()
            for stats in passes[seen:]:
                self._say_pass(stats)
            seen = len(passes)

    def stop(self) -> None:
        for name, process in reversed(list(self.processes.items())):
            if process.stop(timeout=REFRESH_STOP_SECONDS if name == "refresh" else 10.0):
                self.say(f"stopped {name}")
        if self.started_stack:
            for line in localstack.down(self.settings):
                self.say(f"stopped {line}")

    # --- helpers --------------------------------------------------------------
    def _command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "streamsim", *args, *self.settings.to_argv()]

    def _start(self, name: str, args: list[str]) -> None:
        self.processes[name] = Background.start(self._command(*args), self.workdir / f"{name}.log")

    def _messages(self) -> tuple[list[bytes], str]:
        if self.options.data:
            from streamsim.sources.formats import read_records

            records = read_records(Path(self.options.data), self.options.format)
            limit = self.options.limit
            messages = [r.data for i, r in zip(range(limit or sys.maxsize), records) if r.data is not None]
            return messages, self.options.data
        from streamsim.sources.synthetic import ClickstreamShape, clickstream

        shape = ClickstreamShape(events=self.options.limit or self.options.synthetic_events)
        return list(clickstream(shape)), f"the synthetic clickstream (seed {shape.seed})"

    def _publish(self, messages: list[bytes], desc: str) -> int:
        """Publish; returns how many are valid events (what the fold should count)."""
        from tqdm import tqdm

        from streaming.publish import EventPublisher

        valid = 0
        with EventPublisher(self.settings) as publisher, tqdm(total=len(messages), unit="ev", desc=desc) as bar:
            for start in range(0, len(messages), 1000):
                chunk = messages[start : start + 1000]
                publisher.publish(chunk)
                valid += sum(1 for m in chunk if _is_event(m))
                bar.update(len(chunk))
            publisher.flush()
        return valid

    def _wait_folded(self, expected: int) -> None:
        from tqdm import tqdm

        last, last_change = -1, time.monotonic()
        with tqdm(total=expected, unit="ev", desc="folded") as bar:
            while True:
                began = time.monotonic()
                folded = folded_events(self.settings)
                # The count is a scan of every user: poll rarely enough that it
                # takes at most a fifth of the time the fold has.
                pause = max(2.0, 4 * (time.monotonic() - began))
                bar.update(folded - bar.n)
                if folded >= expected:
                    return
                if folded != last:
                    last, last_change = folded, time.monotonic()
                elif time.monotonic() - last_change > FOLD_STALL_SECONDS:
                    raise RuntimeError(
                        f"the fold stalled at {folded:,} of {expected:,} events; see {self.workdir / 'stream.log'}"
                    )
                if not self.processes["stream"].alive():
                    raise RuntimeError(f"the streaming fold exited; see {self.workdir / 'stream.log'}")
                time.sleep(pause)

    def _refresh_args(self) -> list[str]:
        return [
            "refresh",
            "--continuous",
            "--json",
            "--min-interval",
            f"{self.options.refresh_every:g}s",
            "--threshold",
            str(self.options.threshold),
        ]

    def _passes(self) -> list[dict]:
        """The continuous refresh's passes so far (its JSON lines in its log)."""
        path = self.workdir / "refresh.log"
        if not path.exists():
            return []
        lines = path.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{") and line.endswith("}")]

    def _taken_in(self) -> dict:
        """The published pass that holds everything folded so far.

        Once no item is marked dirty and the newest pass logged is the generation the pointer
        names: a mark is cleared only after a generation holding its change is published.
        """
        from batch.generations import Generations
        from batch.source import read_marks

        deadline = time.monotonic() + PASS_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            passes = [stats for stats in self._passes() if stats.get("flipped")]
            if (
                passes
                and not read_marks(self.settings)
                and passes[-1]["generation"] == Generations(self.settings).current()
            ):
                self._say_pass(passes[-1])
                return passes[-1]
            if not self.processes["refresh"].alive():
                raise RuntimeError(f"the continuous refresh exited; see {self.workdir / 'refresh.log'}")
            time.sleep(1.0)
        raise RuntimeError(f"no refresh pass published in {PASS_TIMEOUT_SECONDS} s; see {self.workdir / 'refresh.log'}")

    def _say_pass(self, stats: dict) -> None:
        self.say(
            f"  generation {stats.get('generation')}: {stats.get('mode')} ({stats.get('reason')}), "
            f"{stats.get('items_recomputed')} items recomputed in {stats.get('wall_seconds')} s"
        )

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, urllib.error.HTTPError):
                if urllib.request.urlopen(self._url("/readyz"), timeout=2).status == 200:
                    return
            if not self.processes["serve"].alive():
                break
            time.sleep(0.5)
        raise RuntimeError(f"the server did not become ready; see {self.workdir / 'serve.log'}")

    def _url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.options.port}{path}"

    def _get(self, path: str) -> dict:
        with urllib.request.urlopen(self._url(path), timeout=10) as response:
            return json.loads(response.read())

    def _examples(self, messages: list[bytes]) -> dict:
        """Ids to try: the busiest user, the most popular item and its runner-up."""
        users, items = Counter(), Counter()
        for message in messages:
            with contextlib.suppress(EventError):
                event = parse_event(message)
                users[event.user] += 1
                items[event.item] += 1
        (top_item, _), (second_item, _) = items.most_common(2)
        return {
            "user": users.most_common(1)[0][0],
            "item": top_item,
            "session": [top_item, second_item],
            "fresh_users": [u for u, _ in users.most_common(20)],
        }

    def _changed_recommendation(self, before: dict) -> dict | None:
        for user, old in before.items():
            new = self._get(f"/recommendations?user={user}&n=5")
            if [r["item"] for r in old.get("items", [])] != [r["item"] for r in new.get("items", [])]:
                return {"user": user, "before": old, "after": new}
        return None

    def _report(self, first: dict, second: dict, examples: dict, changed: dict | None) -> dict:
        base = f"http://127.0.0.1:{self.options.port}"
        user, item = quote(examples["user"], safe=""), quote(examples["item"], safe="")
        paths = [
            f"/recommendations?user={user}&n=10",
            f"/items/{item}/similar?n=10",
            f"/recommendations?browsed={examples['session'][0]}&basket={examples['session'][1]}&n=10",
        ]
        scenarios = [
            f"/items/{item}/bought-together?n=10",
            f"/users/{user}/recent?n=10",
            f"/users/{user}/buy-again?n=10",
            "/trending?window=24h&n=10",  # empty when the events are dated long ago, as a file's are
        ]
        # Each suggested line is tried here first, so the report only offers what works.
        answered = [len(self._get(path).get("items", [])) for path in paths]
        for path in scenarios:
            count = len(self._get(path).get("items", []))
            if count:
                paths.append(path)
                answered.append(count)
        return {
            "events_folded": folded_events(self.settings),
            "dead_lettered": dead_lettered(self.settings),
            "items": second.get("items"),
            "generation": second.get("generation"),
            "first_refresh": first,
            "refresh_after_tail": second,
            "similarity_spot_check": second.get("spot_check") or first.get("spot_check"),
            "serving_url": base,
            "try": [f"curl '{base}{path}'" for path in paths],
            "try_answered": answered,
            "changed_recommendation": changed,
        }


def _is_event(message: bytes) -> bool:
    try:
        parse_event(message)
        return True
    except EventError:
        return False


def folded_events(settings: Settings) -> int:
    """Σ over items of ``n:events``: the events the stream has folded (items are fewer than pairs)."""
    only_counts = filters.chain(filters.column(layout.ITEM_STATS, layout.EVENTS), filters.newest())
    return sum(decode_item(row).events for _, row in open_tables(settings).items.read_rows(row_filter=only_counts))


def dead_lettered(settings: Settings) -> int:
    """Messages waiting on the dead-letter subscription (pulled, not acknowledged)."""
    subscriber = subscriber_client(settings)
    path = subscriber.subscription_path(settings.project, settings.pubsub.dead_letter_subscription)
    seen = set()
    while True:
        response = subscriber.pull(request={"subscription": path, "max_messages": 1000}, timeout=5)
        fresh = {m.message.message_id for m in response.received_messages} - seen
        if not fresh:
            return len(seen)
        seen |= fresh


def format_report(report: dict) -> str:
    spot = report.get("similarity_spot_check") or {}
    after_tail = report["refresh_after_tail"]
    lines = [
        "",
        "streamsim demo report",
        f"  events folded        {report['events_folded']:,}",
        f"  dead-lettered        {report['dead_lettered']:,}  (kept on the dead-letter subscription)",
        f"  items                {report['items']}",
        f"  generation           {report['generation']}",
        f"  refresh of the tail  {after_tail.get('mode')}: {after_tail.get('items_recomputed')} items recomputed "
        f"in {after_tail.get('wall_seconds')} s",
        f"  similarity check     {json.dumps(spot)}",
        f"  serving              {report['serving_url']}",
        "",
        "try:",
        *(f"  {line}    # {count} items" for line, count in zip(report["try"], report["try_answered"])),
    ]
    if report.get("ab"):
        from streamsim.app.report_command import render

        lines += [
            "",
            f"A/B (streamsim report): {report['ab']['tagged']:,} tail events followed an answer that showed their item",
            *("  " + line for line in render(report["ab"]["rows"]).splitlines()),
        ]
    if report["changed_recommendation"]:
        changed = report["changed_recommendation"]
        lines += [
            "",
            f"user {changed['user']}'s top 5 after the new events:",
            "  before: " + ", ".join(r["item"] for r in changed["before"].get("items", [])),
            "  after:  " + ", ".join(r["item"] for r in changed["after"].get("items", [])),
        ]
    return "\n".join(lines)
