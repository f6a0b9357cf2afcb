"""``streamsim report``: per arm, the answers served and the events attributed to them.

It sits in the app layer because it joins what two components count: serving's
``streamsim_serving_answers_total{arm,route}`` (scraped from each ``--metrics`` URL) and the
stream's attributed events (``streaming.state.scan_attributed``, exactly once per event).
A rate is attributed events per answer served; its 95% interval treats the count as Poisson
(r ± 1.96·√k / answers), since one answer can bring several events.
"""

from __future__ import annotations

import json
import math
import re
import sys
import urllib.error
import urllib.request

from streamsim.runtime.cli import backend_error, settings_from_args

TYPES = ("browse", "basket", "purchase")
_ANSWERS = re.compile(r"^streamsim_serving_answers_total\{([^}]*)\}\s+([0-9.eE+-]+)\s*$", re.M)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def register(subparsers, parent) -> None:
    report = subparsers.add_parser(
        "report", parents=[parent], help="per arm: answers served, attributed events and their rates"
    )
    report.add_argument(
        "--metrics",
        action="append",
        default=[],
        metavar="URL",
        help="a serving /metrics URL to count answers from (repeat for each server)",
    )
    report.add_argument("--json", action="store_true", help="print JSON")
    report.set_defaults(run=run_report)


def answers_served(text: str) -> dict[str, int]:
    """Answers per arm from one Prometheus text exposition."""
    served: dict[str, int] = {}
    for labels, value in _ANSWERS.findall(text):
        arm = dict(_LABEL.findall(labels)).get("arm", "")
        served[arm] = served.get(arm, 0) + int(float(value))
    return served


def rate(events: int, answers: int) -> dict:
    """Events per answer with a 95% interval (Poisson counts; None without answers)."""
    if answers <= 0:
        return {"rate": None, "low": None, "high": None}
    r, half = events / answers, 1.96 * math.sqrt(events) / answers
    return {"rate": r, "low": max(0.0, r - half), "high": r + half}


def build(served: dict[str, int], attributed: dict[tuple[str, str, str], int]) -> list[dict]:
    arms = sorted(served.keys() | {arm for arm, _, _ in attributed})
    rows = []
    for arm in arms:
        counts = {t: sum(n for (a, _, kind), n in attributed.items() if a == arm and kind == t) for t in TYPES}
        answers = served.get(arm, 0)
        rows.append({"arm": arm, "answers": answers, **counts, "rates": {t: rate(counts[t], answers) for t in TYPES}})
    return rows


def _cell(r: dict) -> str:
    if r["rate"] is None:
        return "-"
    return f"{100 * r['rate']:.1f} [{100 * r['low']:.1f}, {100 * r['high']:.1f}]"


def render(rows: list[dict]) -> str:
    head = ["arm", "answers", *TYPES, *(f"{t}s per 100 answers [95% CI]" for t in TYPES)]
    body = [
        [row["arm"], str(row["answers"]), *(str(row[t]) for t in TYPES), *(_cell(row["rates"][t]) for t in TYPES)]
        for row in rows
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def run_report(args) -> int:
    what = "streamsim report"
    settings = settings_from_args(args)
    problem = backend_error(settings)
    if problem:
        print(f"{what}: {problem}", file=sys.stderr)
        return 1
    served: dict[str, int] = {}
    for url in args.metrics:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode("utf-8")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            print(f"{what}: cannot read {url}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
            return 1
        for arm, n in answers_served(text).items():
            served[arm] = served.get(arm, 0) + n
    from streaming.state import scan_attributed

    rows = build(served, scan_attributed(settings))
    print(json.dumps(rows, indent=2) if args.json else render(rows))
    return 0
